"""The learning proof's held-out evaluations again with other sampling seeds: how much of a score is the evaluation's noise.

    nice -n 2 .venv/bin/python benchmarks/learning_proof_eval_seeds.py [--stages rft rl] [--seeds 1 2]   # after learning_proof.py

The proof evaluates every model once, 5 runs of each held-out task sampled with one seed, and its SEM is
the spread of those 5 runs. Evaluating the same model again with another seed is a replicate of the
measurement (no model is trained and no knob changes): the spread of a model's scores over seeds says
how far one evaluation can land from another. Writes benchmarks/results/learning_proof_eval_seeds.json
after each evaluation; a seed already in it is not evaluated again. A record of another proof's models (its
seed-1234 evaluations differ from the proof's record) stops the script rather than being pooled with this one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import learning_proof as lp

from swe_rl.evaluation.metrics import pass_at_1_over_runs
from swe_rl.tasks.loaders import load_tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="+", choices=("warm", "rft", "rl"), default=["rft", "rl"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    out = lp.ROOT / "runs" / "learning_proof"
    proof = json.loads((lp.ROOT / "benchmarks" / "results" / "learning_proof.json").read_text())
    proof_names = {"warm": "base", "rft": "rft", "rl": "rl"}  # the proof's name for each stage's evaluation
    results_file = lp.ROOT / "benchmarks" / "results" / "learning_proof_eval_seeds.json"
    record = json.loads(results_file.read_text()) if results_file.exists() else {}
    held_file = out / "tasks" / "heldout.jsonl"
    held = load_tasks(held_file)
    for stage in args.stages:
        model, first = lp.stage_model(out, stage), proof[proof_names[stage]]
        if first["model"] != str(model):
            raise SystemExit(f"benchmarks/results/learning_proof.json is not the record of the proof in {out}: run the proof first")
        runs = record.setdefault(stage, {f"seed{lp.EVAL_SEED}": summary(first)})
        if runs[f"seed{lp.EVAL_SEED}"] != summary(first):  # the same run directory, but another proof's models
            raise SystemExit(f"{results_file}: its {stage} model is not the proof's (its seed-{lp.EVAL_SEED} evaluation differs): "
                             "rename it, as the proof's old records were, and run again")
        for seed in [seed for seed in args.seeds if f"seed{seed}" not in runs]:  # the record keeps what was measured
            t0 = time.monotonic()
            result = lp.evaluate(out, eval_name(proof_names[stage], seed), model, held_file, seed=seed)
            runs[f"seed{seed}"] = summary(result) | {"eval_s": round(time.monotonic() - t0, 1)}
            results_file.write_text(json.dumps(record, indent=1) + "\n")  # kept after each evaluation
        seeds = [int(key[4:]) for key in runs if key.startswith("seed")]
        means = [runs[f"seed{seed}"]["mean"] for seed in seeds]
        # Every run of every seed as one evaluation (5 runs a seed): pass@1 +- SEM over all of them.
        resolved: dict[str, list[bool]] = {}
        for seed in seeds:
            for task, by_run in resolved_runs(out / eval_dir(proof_names[stage], seed, len(held))).items():
                resolved.setdefault(task, []).extend(by_run)
        mean, sem = pass_at_1_over_runs(resolved)
        runs["over_seeds"] = {"means": means, "pooled_runs": len(next(iter(resolved.values()))), "pass_at_1": mean, "sem": sem}
    results_file.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({stage: r["over_seeds"] for stage, r in record.items()}, indent=1))


def eval_name(proof_name: str, seed: int) -> str:
    # "evalseed": learning_proof_rl_seeds.py's evaluations are named rl_seed<N> (its RL seeds)
    return proof_name if seed == lp.EVAL_SEED else f"{proof_name}_evalseed{seed}"


def eval_dir(proof_name: str, seed: int, tasks: int) -> str:
    return f"eval_{eval_name(proof_name, seed)}_{tasks}x{lp.EVAL_RUNS}"  # as learning_proof.evaluate names it


def resolved_runs(directory: Path) -> dict[str, list[bool]]:
    """`{task: [resolved in run r]}` of one evaluation, scored as its report scores it (dropped tasks left out)."""
    from swe_rl.evaluation.report import resolved_by_task, scored_trajectories
    from swe_rl.rollouts.store import read_trajectories

    scored, _ = scored_trajectories(read_trajectories(directory / "trajectories.jsonl"))
    return resolved_by_task(scored)[0]


def summary(evaluation: dict) -> dict:
    return evaluation["pass_at_1"] | {key: evaluation[key] for key in ("tasks_by_resolved_runs", "exit_reasons")}


if __name__ == "__main__":
    main()
