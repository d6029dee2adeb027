"""How full the rollout engine's generation batches are: a replay of recorded episodes through its lock-step schedule.

    python benchmarks/batch_occupancy.py TRAJECTORIES.jsonl [--tasks TASKS.jsonl] [--slots 8 16]

The engine (rollouts/engine.collect) keeps up to `max_active` episodes open and generates every open
episode's next turn in one call, which lasts until the call's longest completion ends. This replays a
trajectories file's recorded completion lengths (the runs of `loss_mask`) through that schedule, the
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


def completion_lengths(loss_mask: list[int]) -> list[int]:
    """The lengths of the sampled spans (one per turn) of a trajectory's loss mask."""
    lengths, run = [], 0
    for bit in loss_mask:
        if bit:
            run += 1
        elif run:
            lengths.append(run)
            run = 0
    return lengths + [run] if run else lengths


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
    records = [json.loads(line) for line in args.trajectories.read_text().splitlines() if line.strip()]
    ids = ([json.loads(line)["instance_id"] for line in args.tasks.read_text().splitlines() if line.strip()] if args.tasks
           else [r["instance_id"] for r in sorted(records, key=lambda r: r["sample_index"])])
    order = {iid: k for k, iid in enumerate(dict.fromkeys(ids))}
    records.sort(key=lambda r: (order[r["instance_id"]], r["sample_index"]))
    episodes = [completion_lengths(r["loss_mask"]) for r in records]
    print(f"{len(episodes)} episodes, {sum(map(len, episodes))} turns")
    for slots in args.slots:
        print(json.dumps(replay(episodes, slots)))


if __name__ == "__main__":
    main()
