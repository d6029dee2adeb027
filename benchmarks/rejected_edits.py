"""What the learning proof's models do after the tools refuse an edit (a syntax error; the file is unchanged).

    .venv/bin/python benchmarks/rejected_edits.py [--run runs/learning_proof] [--out benchmarks/results/rejected_edits.json]

For each directory of trajectories in the run (the held-out evaluations `eval_*`, and on the training side
the RFT samples `rft/collect` and RL's draws `rl*/iter_*`): episodes, those with a refused edit, the command
that came next (by its first word), and how many of those episodes were resolved. A model cloned from
demonstrations that never meet a refusal submits the unchanged file; `scripted:explore-recover` shows a retry.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import learning_proof as lp

from swe_rl.rollouts.store import read_trajectories
from swe_rl.training.sft_data import rejected_edit


def after_rejected_edits(paths: list[Path]) -> dict:
    episodes, rejected, resolved, next_command = 0, 0, 0, Counter()
    for traj in read_trajectories(paths):
        episodes += 1
        hits = [i for i, turn in enumerate(traj.turns) if rejected_edit(turn)]
        if not hits:
            continue
        rejected += 1
        resolved += bool(traj.grade and traj.grade.resolved)
        for i in hits:
            if i + 1 == len(traj.turns):
                next_command["(episode ended)"] += 1
            else:  # a format-error turn has no command
                command = traj.turns[i + 1].command
                next_command[command.split()[0] if command else "(format error)"] += 1
    return {"episodes": episodes, "with_rejected_edit": rejected, "resolved_of_those": resolved,
            "next_command": dict(next_command.most_common())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=lp.ROOT / "runs" / "learning_proof")
    ap.add_argument("--out", type=Path, default=lp.ROOT / "benchmarks" / "results" / "rejected_edits.json")
    args = ap.parse_args()
    groups = {d.name: [d / "trajectories.jsonl"] for d in sorted(args.run.glob("eval_*")) if (d / "trajectories.jsonl").exists()}
    if (args.run / "rft" / "collect" / "trajectories.jsonl").exists():
        groups["rft/collect"] = [args.run / "rft" / "collect" / "trajectories.jsonl"]
    for rl_dir in sorted(d for d in args.run.glob("rl*") if d.is_dir()):
        if draws := sorted(rl_dir.glob("iter_*/traj*.jsonl")):
            groups[f"{rl_dir.name}/iter_*"] = draws
    if not groups:
        raise SystemExit(f"{args.run}: no trajectories (run benchmarks/learning_proof.py first)")
    record = {name: after_rejected_edits(paths) for name, paths in groups.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    width = max(map(len, record))
    for name, r in record.items():
        print(f"{name:<{width}}  {r['with_rejected_edit']:>3} of {r['episodes']:>3} rejected, "
              f"{r['resolved_of_those']:>2} resolved; next: {r['next_command']}")


if __name__ == "__main__":
    main()
