"""Starting an episode's sandbox on a large repository: copy of the cached workspace + sandbox start.

    .venv/bin/python benchmarks/task_sandbox.py [--mb 50] [--files 2500] [--repeats 10]

Builds a synthetic repository of --mb megabytes in --files files (one commit), prepares its
environment (a bare venv) and workspace template in a temporary cache, then times, per repeat:
`cp -a` of the template alone (into `scratch_dir`, /dev/shm where it has room), `task_sandbox()` (copy + chown to the sandbox uid + bubblewrap
start), the first command, and `close()` (kill + remove). Target: task_sandbox < 300 ms at 50 MB.
Writes benchmarks/results/task_sandbox.json. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from swe_rl.sandbox.environments import prepare_environment, prepare_workspace, scratch_dir, task_sandbox
from swe_rl.types import Task


def make_repo(root: Path, mb: int, files: int) -> str:
    rng = random.Random(0)
    words = [f"name{i}" for i in range(5000)]
    per_file = mb * (1 << 20) // files
    for i in range(files):
        path = root / f"pkg{i % 50}" / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines, size = [], 0
        while size < per_file:  # source-like text: realistic compression in the git pack
            line = f"def {rng.choice(words)}_{i}(x):\n    return x + {rng.choice(words)!r}  # {rng.random()}\n"
            lines.append(line)
            size += len(line)
        path.write_text("".join(lines))
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin"}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "big"]):
        subprocess.run(["git", *cmd], cwd=root, env=env, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--files", type=int, default=2500)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "task_sandbox.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="swe-rl-bench-") as tmp:
        root, cache = Path(tmp) / "big", Path(tmp) / "cache"
        root.mkdir()
        commit = make_repo(root, a.mb, a.files)
        task = Task(instance_id="bench__big-1", repo="bench/big", base_commit=commit, problem_statement="-",
                    FAIL_TO_PASS=("t",), repo_url=str(root))
        prepare_environment(task, cache)
        template = prepare_workspace(task, cache)
        size = sum(p.stat().st_size for p in template.rglob("*") if p.is_file())
        timings: dict[str, list[float]] = {"cp -a template": [], "task_sandbox()": [], "first command": [], "close()": []}
        for _ in range(a.repeats):
            dest = Path(tempfile.mkdtemp(dir=scratch_dir(cache)))
            t0 = time.perf_counter()
            subprocess.run(["cp", "-a", "--reflink=auto", f"{template}/.", str(dest)], check=True)
            timings["cp -a template"].append(time.perf_counter() - t0)
            shutil.rmtree(dest)
            t0 = time.perf_counter()
            sb = task_sandbox(task, cache)
            t1 = time.perf_counter()
            sb.run("git status --short | head -1")
            t2 = time.perf_counter()
            sb.close()
            t3 = time.perf_counter()
            timings["task_sandbox()"].append(t1 - t0)
            timings["first command"].append(t2 - t1)
            timings["close()"].append(t3 - t2)
    table = Table(title=f"workspace of {size / (1 << 20):.1f} MB in {a.files} files (+ .git), {a.repeats} repeats")
    for col in ("step", "median ms", "min ms", "max ms"):
        table.add_column(col)
    result = {"workspace_bytes": size, "files": a.files, "repeats": a.repeats, "steps": {}}
    for step, xs in timings.items():
        ms = [x * 1000 for x in xs]
        result["steps"][step] = {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}
        table.add_row(step, f"{statistics.median(ms):.0f}", f"{min(ms):.0f}", f"{max(ms):.0f}")
    Console().print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
