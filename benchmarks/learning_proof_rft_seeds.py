"""The learning proof's RFT training again on the same kept samples with other data orders: how much of RFT's result is its own noise.

    nice -n 2 .venv/bin/python benchmarks/learning_proof_rft_seeds.py [--seeds 1 2] [--set batch_size=4] [--no-eval]
        [--average] [--on heldout|rl-pool]
        # after benchmarks/learning_proof.py; --set: SFT knobs of every model trained here (a variant, not a replicate)

The proof's RFT trains its warm start on the samples its collection kept, in the order SFT seed 0 draws.
Each seed here trains the same examples in another order (a replicate; with --set, of that variant), from
the same warm start. Two measures: how far apart the trained weights are (each model's update from the warm
start, and the cosine between updates by module: 1 = the same direction, 0 = unrelated), and, unless
--no-eval, held-out pass@1 on the proof's evaluation (a replicate's spread, not a knob to choose).
--average adds the mean of all these models' weights (the proof's and each seed's: a "soup" over data orders,
whose shared direction adds up while each order's own path averages out). --on rl-pool evaluates every model,
the proof's RFT and the warm start included, on RL's own tasks instead (training side, none of them sampled by RFT): where a
variant such as the soup may be chosen, which the held-out set never is.
Writes benchmarks/results/learning_proof_rft_seeds.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import learning_proof as lp


def module_group(name: str) -> str:
    """`model.layers.3.mlp.up_proj.weight` -> `mlp.up_proj`; embeddings and the final norm by name."""
    parts = name.split(".")
    return ".".join(parts[3:-1]) if parts[1:2] == ["layers"] else ".".join(parts[1:-1])


def updates(warm: Path, models: dict[str, Path]) -> dict:
    """Each model's weight update from the warm start: its norm, and the cosine between every two, by module group."""
    from safetensors.torch import load_file

    base = load_file(str(warm / "model.safetensors"))
    deltas = {name: {k: (v.float() - base[k].float()).flatten() for k, v in load_file(str(m / "model.safetensors")).items()}
              for name, m in models.items()}
    names, groups = list(models), sorted({module_group(k) for k in base})
    # every tensor's dot product, once per pair of models (a model with itself included): the sums below read them
    dots = {(a, b): {k: float(deltas[a][k] @ deltas[b][k]) for k in base} for i, a in enumerate(names) for b in names[i:]}

    def total(a: str, b: str, group: str | None) -> float:
        return sum(v for k, v in dots[a, b].items() if group is None or module_group(k) == group)

    result: dict = {"norm": {n: round(total(n, n, None) ** 0.5, 4) for n in names}, "cosine": {}}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            by_group = {g: total(a, b, g) / max((total(a, a, g) * total(b, b, g)) ** 0.5, 1e-30) for g in [None, *groups]}
            result["cosine"][f"{a} vs {b}"] = {("all" if g is None else g): round(c, 3) for g, c in by_group.items()}
    return result


def average(models: list[Path], out: Path) -> Path:
    """A model whose every weight is the mean of `models`' (same architecture); the rest copied from the first."""
    import shutil

    from safetensors.torch import load_file, save_file

    if (out / "model.safetensors").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(models[0], tmp, ignore=shutil.ignore_patterns("model.safetensors"))
    first = load_file(str(models[0] / "model.safetensors"))
    total = {k: v.double() for k, v in first.items()}
    for m in models[1:]:
        for k, v in load_file(str(m / "model.safetensors")).items():
            total[k] += v.double()
    save_file({k: (v / len(models)).to(first[k].dtype).contiguous() for k, v in total.items()}, str(tmp / "model.safetensors"),
              metadata={"format": "pt"})
    tmp.rename(out)  # whole or absent: a crash mid-write leaves only the .tmp directory
    return out


def main() -> None:
    from swe_rl.config import load_config
    from swe_rl.recipes.rft import RFTConfig, train
    from swe_rl.training.sft import SFTConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--set", action="append", default=[], help="SFT knob of the models trained here, key=value (RFT_SFT's otherwise)")
    ap.add_argument("--no-eval", action="store_true", help="weights only: no evaluation")
    ap.add_argument("--average", action="store_true", help="also the mean of the proof's and the seeds' weights (rft_soup)")
    ap.add_argument("--on", choices=("heldout", "rl-pool"), default="heldout",
                    help="evaluate on the proof's held-out tasks (5 runs), or on RL's own tasks (training side, 3 runs)")
    args = ap.parse_args()
    out = lp.ROOT / "runs" / "learning_proof"
    warm, rft_model = lp.stage_model(out, "warm"), lp.stage_model(out, "rft")
    eval_tasks, runs = (out / "tasks" / "heldout.jsonl", lp.EVAL_RUNS) if args.on == "heldout" else (out / "tasks" / "rl_pool.jsonl", 3)
    proof = json.loads((lp.ROOT / "benchmarks" / "results" / "learning_proof.json").read_text())
    if proof.get("rft", {}).get("model") != str(rft_model):
        raise SystemExit(f"benchmarks/results/learning_proof.json is not the record of the proof in {out}: run the proof first")
    variant, keys = load_config(SFTConfig, None, args.set), [s.split("=", 1)[0] for s in args.set]  # typos and types checked
    if "seed" in keys:
        raise SystemExit("--set seed=...: the seed is what --seeds varies")
    overrides = {k: getattr(variant, k) for k in keys}
    tag = "_".join(s.replace("=", "") for s in args.set)
    prefix = f"rft{'_' + tag if tag else ''}"
    models, record = {"seed0 (the proof's)": rft_model}, {"set": args.set, "on": args.on, "proof_rft": proof["rft"]["pass_at_1"]}
    for seed in args.seeds:
        sft = replace(lp.RFT_SFT, **overrides, seed=seed)
        cfg = RFTConfig(run_dir=str(out / f"{prefix}_seed{seed}"), model=str(warm), sft=sft)
        t0 = time.monotonic()
        models[f"{prefix}_seed{seed}"] = Path(train(cfg, out / "rft" / "build" / "examples.jsonl"))
        record[f"{prefix}_seed{seed}"] = {"sft": {k: getattr(sft, k) for k in ("lr", "epochs", "batch_size", "seed")},
                                          "train_s": round(time.monotonic() - t0, 1)}
    if args.average:
        soup, ingredients = f"{prefix}_soup_seeds0_{'_'.join(map(str, args.seeds))}", list(models.values())
        models[soup] = average(ingredients, out / soup / "model")
        record[soup] = {"models": [str(m) for m in ingredients]}
    evaluated = models | ({"warm start": warm} if args.on == "rl-pool" else {})  # held-out, the proof has the warm start's
    for name, model in evaluated.items():
        if args.no_eval or (args.on == "heldout" and model == rft_model):  # the proof evaluated its own
            continue
        t0 = time.monotonic()
        label = name if args.on == "heldout" else f"pool_{name.split()[0]}"
        record.setdefault(name, {}).update(lp.evaluate(out, label, model, eval_tasks, runs=runs) | {"eval_s": round(time.monotonic() - t0, 1)})
    record["updates"] = updates(warm, models)
    suffix = f"_{tag}" if tag else ""
    suffix += "_rl_pool" if args.on == "rl-pool" else ""
    (lp.ROOT / "benchmarks" / "results" / f"learning_proof_rft_seeds{suffix}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v.get("pass_at_1", v) if isinstance(v, dict) else v for k, v in record.items()}, indent=1))


if __name__ == "__main__":
    main()
