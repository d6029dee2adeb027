"""Did RL's updates move the policy the way its advantages asked, on the trajectories it trained on?

    nice -n 2 .venv/bin/python benchmarks/rl_direction.py [--run runs/learning_proof]

For every trajectory of a mixed group in the proof's RL iterations (advantages from 1[resolved], the proof's
reward): its mean action-token log p under the RFT model and under RL's last checkpoint. A correct update
raises it for positive advantages and lowers it for negative ones. Writes benchmarks/results/rl_direction.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

import learning_proof as lp


def mean_action_logprob(model, token_ids: list[int], loss_mask: list[int]) -> float:
    from swe_rl.policy.logprobs import token_logprobs

    action = [lp for lp, m in zip(token_logprobs(model, token_ids)[1:], loss_mask[1:]) if m]
    return statistics.mean(action)


def main() -> None:
    from transformers import AutoModelForCausalLM

    from swe_rl.recipes.rl import group_advantages
    from swe_rl.rollouts.store import episode_order, read_trajectories

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=lp.ROOT / "runs" / "learning_proof")
    args = ap.parse_args()
    rows = []
    for it_dir in sorted((args.run / "rl").glob("iter_*")):
        trajs = sorted(read_trajectories(sorted(it_dir.glob("traj*.jsonl"))), key=episode_order)
        for t in trajs:
            t.reward = float(t.grade is not None and t.grade.resolved)
        rows += [(it_dir.name, t, a) for t, a in zip(trajs, group_advantages(trajs, "group_norm")) if a != 0]
    models = {"rft": lp.stage_model(args.run, "rft"), "rl": lp.stage_model(args.run, "rl")}
    logp: dict[str, list[float]] = {}
    torch.set_num_threads(2)
    for name, path in models.items():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        seen: dict[tuple[int, ...], float] = {}  # a policy this sharp repeats whole trajectories
        for _, t, _ in rows:
            if (key := tuple(t.token_ids)) not in seen:
                seen[key] = mean_action_logprob(model, t.token_ids, t.loss_mask)
        logp[name] = [seen[tuple(t.token_ids)] for _, t, _ in rows]
    summary: dict = {"models": {k: str(v) for k, v in models.items()}, "iterations": {}}
    for it in sorted({r[0] for r in rows}):
        for sign, keep in (("positive", lambda a: a > 0), ("negative", lambda a: a < 0)):
            idx = [i for i, (name, _, a) in enumerate(rows) if name == it and keep(a)]
            before, after = [logp["rft"][i] for i in idx], [logp["rl"][i] for i in idx]
            summary["iterations"].setdefault(it, {})[sign] = {
                "trajectories": len(idx), "distinct": len({tuple(rows[i][1].token_ids) for i in idx}),
                "problems": sorted({rows[i][1].instance_id for i in idx}),
                "mean_logp_rft": round(statistics.mean(before), 4), "mean_logp_rl": round(statistics.mean(after), 4)}
    out = lp.ROOT / "benchmarks" / "results" / "rl_direction.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print("| iteration | advantage | trajectories (distinct) | mean action-token log p: RFT -> RL |\n|---|---|---|---|")
    for it, signs in summary["iterations"].items():
        for sign, s in signs.items():
            print(f"| {it} | {sign} | {s['trajectories']} ({s['distinct']}) | {s['mean_logp_rft']:.4f} -> {s['mean_logp_rl']:.4f} |")


if __name__ == "__main__":
    main()
