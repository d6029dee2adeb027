"""How full the rollout engine's generation batches are: a replay of recorded episodes through its lock-step schedule.

    .venv/bin/python benchmarks/batch_occupancy.py TRAJECTORIES.jsonl [--tasks TASKS.jsonl] [--slots 8 16]

The engine (rollouts/engine.collect) keeps up to `max_active` episodes open and generates every open
episode's next turn in one call, which lasts until the call's longest completion ends. This replays a
trajectories file's recorded completion lengths (each turn's `completion_tokens`) through that schedule, the
episodes started in the engine's job order (task by task in the order of `--tasks`, else of their
first sample in the file; sample by sample), and prints the decode steps
and the mean rows per step for each slot count. A replay of lengths, not a timing: what a step costs at
each batch size is the hardware's, and sampling with another batch would draw other completions.
"""

from __future__ import annotations

import argparse
import json
from collections import deque
from pathlib import Path

from swe_rl.rollouts.store import read_trajectories
from swe_rl.tasks.loaders import load_tasks


def replay(episodes: list[list[int]], slots: int) -> dict:
    pending, active = deque(deque(e) for e in episodes if e), []
    calls = steps = tokens = 0
    while pending or active:
        while pending and len(active) < slots:
            active.append(pending.popleft())
        lengths = [e.popleft() for e in active]
        calls, steps, tokens = calls + 1, steps + max(lengths), tokens + sum(lengths)
        active = [e for e in active if e]  # an episode whose last turn was generated has ended
    return {"slots": slots, "calls": calls, "decode_steps": steps, "tokens": tokens, "rows_per_step": round(tokens / steps, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trajectories", type=Path)
    ap.add_argument("--tasks", type=Path, help="the tasks file the episodes were collected from (their order)")
    ap.add_argument("--slots", type=int, nargs="+", default=[8, 16])
    args = ap.parse_args()
    trajs = read_trajectories(args.trajectories)
    ids = ([t.instance_id for t in load_tasks(args.tasks)] if args.tasks
           else [t.instance_id for t in sorted(trajs, key=lambda t: t.sample_index)])
    order = {iid: k for k, iid in enumerate(dict.fromkeys(ids))}
    trajs.sort(key=lambda t: (order[t.instance_id], t.sample_index))
    episodes = [[turn.completion_tokens for turn in t.turns] for t in trajs]
    print(f"{len(episodes)} episodes, {sum(map(len, episodes))} turns")
    for slots in args.slots:
        print(json.dumps(replay(episodes, slots)))


if __name__ == "__main__":
    main()
