"""Throughput of `swe-rl tasks synthesize`: validated tasks per hour (issue 8 target: >= 60 on 2 cores).

    .venv/bin/python benchmarks/synthesize.py [--source pypi:inflection==0.5.1] [--n 20] [--jobs 2]

Runs synthesis into a fresh directory (environment build and sdist download are timed apart,
as `setup`), then `validate_task` on every produced task (gold resolves, empty does not).
Writes benchmarks/results/synthesize.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from swe_rl.paths import cache_dir
from swe_rl.rewards.validate import validate_task
from swe_rl.tasks.loaders import load_tasks
from swe_rl.tasks.synthesize import setup, synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="pypi:inflection==0.5.1")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cache = cache_dir()
    with tempfile.TemporaryDirectory(prefix="swe-rl-synth-bench-") as tmp:
        out = Path(tmp) / "tasks.jsonl"
        t0 = time.monotonic()
        setup(args.source, out.parent / "repos", cache)
        t_setup = time.monotonic() - t0
        t0 = time.monotonic()
        report = synthesize(args.source, args.n, out, seed=args.seed, jobs=args.jobs, cache=cache)
        t_synth = time.monotonic() - t0
        t0 = time.monotonic()
        valid = sum(validate_task(t, cache=cache).valid for t in load_tasks(out))
        t_valid = time.monotonic() - t0
    rows = {
        "source": args.source, "jobs": args.jobs, "tasks": report.accepted, "valid": valid,
        "candidates_tried": report.tried, "rejected": report.rejected,
        "setup_s": round(t_setup, 1), "synthesis_s": round(t_synth, 1), "validation_s": round(t_valid, 1),
        "tasks_per_hour": round(report.accepted / t_synth * 3600, 1),
        "validated_tasks_per_hour_incl_validation": round(valid / (t_synth + t_valid) * 3600, 1),
    }
    table = Table(title=f"synthesize {args.source} (n={args.n}, jobs={args.jobs})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in rows.items():
        table.add_row(k, json.dumps(v) if isinstance(v, dict) else str(v))
    Console().print(table)
    dest = Path(__file__).parent / "results" / "synthesize.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
