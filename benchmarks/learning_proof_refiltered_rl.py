"""The learning proof's RL step on a re-filtered pool: training tasks the RFT samples solved sometimes.

    nice -n 2 .venv/bin/python benchmarks/learning_proof_refiltered_rl.py   # after benchmarks/learning_proof.py

The paper's stage-2 rule (drop tasks solved >= 2/3 of the time and tasks never solved) applied to the
RFT collection's samples (warm-start model, G = 2), then 1 RL iteration over those tasks from the RFT
model (6 problems x G = 4), and the same held-out evaluation. Writes
benchmarks/results/learning_proof_refiltered_rl.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import learning_proof as lp

from swe_rl.recipes.rl import RLConfig
from swe_rl.training.curriculum import record_solves, refilter_pool
from swe_rl.rollouts.store import iter_trajectories


def main() -> None:
    out = lp.ROOT / "runs" / "learning_proof"
    solves: dict[str, list[int]] = {}  # instance id -> [resolved, attempts]
    record_solves(solves, iter_trajectories(out / "rft" / "collect" / "trajectories.jsonl"))
    pool = tuple(refilter_pool(sorted(solves), solves, solved_at=RLConfig.drop_solved_at, drop_never=RLConfig.drop_never_solved))
    stage = replace(lp.RL_STAGE, iterations=1, problems_per_iteration=len(pool), batch_size=8)
    t0 = time.monotonic()
    model = lp.rl(out, out / "tasks" / "train.jsonl", lp.stage_model(out, "rft"), name="rl_filtered", stages=(stage,),
                  instances=pool, max_draws=1, lr=1e-5, reward="paper")
    rl_s = time.monotonic() - t0
    t0 = time.monotonic()
    result = lp.evaluate(out, "rl_filtered", model, out / "tasks" / "heldout.jsonl", lp.EVAL_RUNS)
    record = {"pool": pool, "rl_s": round(rl_s, 1), "eval_s": round(time.monotonic() - t0, 1), "rl_filtered": result}
    (lp.ROOT / "benchmarks" / "results" / "learning_proof_refiltered_rl.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
