"""The learning proof's RL step with room after the edit: 8 turns instead of 6, judged on RL's own pool.

    nice -n 2 .venv/bin/python benchmarks/learning_proof_room_rl.py   # after benchmarks/learning_proof.py

On the 6-turn scaffold RL taught the policy to search for the line it had just fixed instead of
submitting (`learning_proof.py --calibrate rl-pool`): a check that a fix in 5 turns leaves no turn to
act on. Here RL runs from the same RFT model with 8 turns, and the RFT and RL models are compared on
RL's pool with 8 turns (training side: the held-out set is not evaluated). Writes
benchmarks/results/learning_proof_room_rl.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import learning_proof as lp

TURNS = 8


def main() -> None:
    out = lp.ROOT / "runs" / "learning_proof"
    pool, rft_model = out / "tasks" / "rl_pool.jsonl", lp.stage_model(out, "rft")
    agent = replace(lp.AGENT, max_turns=TURNS)
    t0 = time.monotonic()
    rl_model = lp.rl(out, pool, rft_model, name=f"rl_turns{TURNS}", stages=tuple(replace(s, max_turns=TURNS) for s in lp.RL_STAGES))
    record: dict = {"turns": TURNS, "rl_s": round(time.monotonic() - t0, 1)}
    for name, model in (("rft", rft_model), ("rl", rl_model)):
        t0 = time.monotonic()
        record[name] = lp.evaluate(out, f"pool_{name}_turns{TURNS}", model, pool, runs=2, agent=agent)
        record[f"eval_{name}_s"] = round(time.monotonic() - t0, 1)
    (lp.ROOT / "benchmarks" / "results" / "learning_proof_room_rl.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v["pass_at_1"] | {"exits": v["exit_reasons"]} if isinstance(v, dict) else v for k, v in record.items()}, indent=1))


if __name__ == "__main__":
    main()
