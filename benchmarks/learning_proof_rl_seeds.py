"""The learning proof's RL step again from the same RFT model with other seeds: how much of RL's result is its own noise.

    nice -n 2 .venv/bin/python benchmarks/learning_proof_rl_seeds.py [--seeds 1 2]   # after benchmarks/learning_proof.py

The proof's RL runs with seed 0. The seed picks RL's problems and its sampling, so each seed is the same
configuration trained again (a replicate, not another knob), evaluated on the same held-out set as the
proof. Writes benchmarks/results/learning_proof_rl_seeds.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import learning_proof as lp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    out = lp.ROOT / "runs" / "learning_proof"
    rft_model, held = lp.stage_model(out, "rft"), out / "tasks" / "heldout.jsonl"
    proof = json.loads((lp.ROOT / "benchmarks" / "results" / "learning_proof.json").read_text())
    if proof.get("rft", {}).get("model") != str(rft_model):
        raise SystemExit(f"benchmarks/results/learning_proof.json is not the record of the proof in {out}: run the proof first")
    record: dict = {}
    for seed in args.seeds:
        t0 = time.monotonic()
        model = lp.rl(out, lp.rl_pool(out, out / "tasks" / "rl_pool.jsonl", out / "tasks" / "train.jsonl"), rft_model, name=f"rl_seed{seed}", seed=seed)
        rl_s = time.monotonic() - t0
        t0 = time.monotonic()
        result = lp.evaluate(out, f"rl_seed{seed}", model, held)
        record[f"seed{seed}"] = result | {"rl_s": round(rl_s, 1), "eval_s": round(time.monotonic() - t0, 1)}
    means = [proof["rl"]["pass_at_1"]["mean"]] + [r["pass_at_1"]["mean"] for r in record.values()]
    record["rl_over_seeds"] = {"seeds": [0, *args.seeds], "means": means, "mean": statistics.mean(means),
                               "sem": statistics.stdev(means) / len(means) ** 0.5, "rft": proof["rft"]["pass_at_1"]}
    (lp.ROOT / "benchmarks" / "results" / "learning_proof_rl_seeds.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v.get("pass_at_1", v) for k, v in record.items()}, indent=1))


if __name__ == "__main__":
    main()
