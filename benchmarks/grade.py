"""Grading one task vs running the same tests with plain pytest on the host (target: <= 1.3x).

    .venv/bin/python benchmarks/grade.py [--task jpvanhal__inflection-1] [--repeats 5]

"grade" = `grade_run(task, gold patch)`: fresh sandbox (copy of the cached workspace), apply the
patch, restore test files, apply test_patch, run the tests, parse. "host pytest" = the same test
command with the prepared venv's python in a host copy of the workspace with both patches already
applied (no sandbox, no git work). Needs `swe-rl tasks prepare bundled` first. Writes
benchmarks/results/grade.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from swe_rl.paths import cache_dir
from swe_rl.rewards.grading import command_for_tests, grade_run
from swe_rl.sandbox.environments import environment_for, workspace_key
from swe_rl.tasks.loaders import load_tasks


def host_pytest(task, repeats: int) -> list[float]:
    env = environment_for(task, cache_dir())
    template = cache_dir() / "workspaces" / workspace_key(task)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "repo"
        shutil.copytree(template, ws, symlinks=True)
        for patch in (task.patch, task.test_patch):
            subprocess.run(["git", "apply", "-"], input=patch, text=True, cwd=ws, check=True)
        # `python -m pytest` so the host copy (not the sandbox path /repo the editable install names) is imported
        cmd = command_for_tests(task).replace("pytest", f"{env.venv}/bin/python -m pytest", 1)
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = subprocess.run(cmd, shell=True, cwd=ws, capture_output=True, text=True,
                               env={"PATH": f"{env.venv}/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
            times.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise SystemExit(f"host pytest failed ({r.returncode}):\n{r.stdout[-2000:]}")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="jpvanhal__inflection-1")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    task = next(t for t in load_tasks("bundled") if t.instance_id == a.task)
    grade_times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        run = grade_run(task, task.patch)
        grade_times.append(time.perf_counter() - t0)
        assert run.grade.resolved, run.grade.reason
    host = host_pytest(task, a.repeats)
    g, h = statistics.median(grade_times), statistics.median(host)
    result = {"task": task.instance_id, "repeats": a.repeats, "tests": len(task.FAIL_TO_PASS) + len(task.PASS_TO_PASS),
              "grade_median_s": round(g, 3), "host_pytest_median_s": round(h, 3), "ratio": round(g / h, 2),
              "grade_s": [round(x, 3) for x in grade_times], "host_pytest_s": [round(x, 3) for x in host]}
    table = Table(title=f"grading {task.instance_id} (median of {a.repeats})")
    for col in ("grade (s)", "host pytest (s)", "ratio", "target"):
        table.add_column(col, justify="right")
    table.add_row(f"{g:.3f}", f"{h:.3f}", f"{g / h:.2f}x", "<= 1.3x")
    Console().print(table)
    out = Path(__file__).parent / "results" / "grade.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
