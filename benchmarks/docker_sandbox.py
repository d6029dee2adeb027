"""Local (bubblewrap) vs Docker sandbox: start, `run('true')` latency and grading one gold patch.

Needs a Docker daemon and an image holding the task's repository at /testbed with its test
dependencies installed (for the bundled task: Debian + a venv with pytest, the repository
copied in). Usage: .venv/bin/python benchmarks/docker_sandbox.py --image IMAGE [--task ID]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from swe_rl.paths import cache_dir
from swe_rl.rewards.grading import grade
from swe_rl.sandbox.docker import task_sandbox_for
from swe_rl.tasks.loaders import load_tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True, help="image with the task's environment at /testbed")
    ap.add_argument("--task", default="jpvanhal__inflection-1", help="bundled task id")
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--grades", type=int, default=3)
    args = ap.parse_args()
    task = next(t for t in load_tasks("bundled") if t.instance_id == args.task)
    task = replace(task, image_name=args.image)
    print(f"{'backend':8s} {'start ms':>9s} {'true ms (p50/p90)':>18s} {'grade s':>8s}")
    for backend in ("local", "docker"):
        starts, lat = [], []
        for _ in range(args.starts):
            t = time.perf_counter()
            sb = task_sandbox_for(backend)(task, cache_dir())
            starts.append(time.perf_counter() - t)
            for _ in range(args.runs):
                t = time.perf_counter()
                sb.run("true")
                lat.append(time.perf_counter() - t)
            sb.close()
        grades = []
        for _ in range(args.grades):
            t = time.perf_counter()
            g = grade(task, task.patch, backend=backend)
            grades.append(time.perf_counter() - t)
            if not g.resolved:
                raise SystemExit(f"{backend}: the gold patch did not resolve {task.instance_id}: {g.reason}")
        p90 = sorted(lat)[int(len(lat) * 0.9)]
        print(f"{backend:8s} {statistics.median(starts) * 1000:9.0f} {statistics.median(lat) * 1000:8.1f} / {p90 * 1000:7.1f} "
              f"{statistics.median(grades):8.2f}")


if __name__ == "__main__":
    main()
