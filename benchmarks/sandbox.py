"""Local sandbox speed: a command through the persistent shell, and sandbox create+close on a 50 MB repo.

Run (as root, bubblewrap installed):  .venv/bin/python benchmarks/sandbox.py [--runs 200] [--repeats 10] [--dir /dev/shm]
Prints a table and writes benchmarks/results/sandbox.json (--out). --dir puts the repository on another
file system: chown and deleting an owned workspace are disk-bound. Targets (issue 3): `true` median <= 20 ms
and <= 5x plain subprocess.run(["true"]); create+close of a 50 MB repository <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from swe_rl.sandbox.local import LocalSandbox

RESULTS = Path(__file__).parent / "results" / "sandbox.json"
WORDS = "def class return self import from if else for while in not and or None True False value items".split()


def make_repo(root: Path, target_mb: int = 50) -> tuple[int, int]:
    """A git repository of Python-like sources totalling about `target_mb` (working tree + .git)."""
    rng = random.Random(0)
    root.mkdir(parents=True)
    n = 0
    written = 0
    while written < target_mb * (1 << 20) * 0.7:  # .git (compressed objects) adds the rest
        d = root / f"pkg{n // 100}"
        d.mkdir(exist_ok=True)
        lines = (" ".join(rng.choice(WORDS) + str(rng.randrange(10**6)) for _ in range(8)) for _ in range(400))
        text = "\n".join(lines) + "\n"
        (d / f"mod{n}.py").write_text(text)
        written += len(text)
        n += 1
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-C", str(root)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "bench"], check=True)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return n, size


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--repo-mb", type=int, default=50)
    ap.add_argument("--dir", default=None, help="where the repository and episode copies live (e.g. /dev/shm); default $TMPDIR")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows: dict[str, dict[str, float]] = {}

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        ws = tmp / "ws"
        ws.mkdir()
        plain = timed(lambda: subprocess.run(["true"]), args.runs)
        with LocalSandbox(ws) as sb:
            sb.run("true")
            boxed = timed(lambda: sb.run("true"), args.runs)
        for name, xs in (("subprocess.run(['true'])", plain), ("LocalSandbox.run('true')", boxed)):
            rows[name] = {"median_ms": statistics.median(xs) * 1e3, "p90_ms": pct(xs, 0.9) * 1e3}
        ratio = statistics.median(boxed) / statistics.median(plain)

        repo = tmp / "repo"
        files, size = make_repo(repo, args.repo_mb)

        def borrowed() -> None:  # the sandbox on the repo itself: chown to the sandbox uid and back
            with LocalSandbox(repo) as sb:
                sb.run("true")

        copy_s, owned_s = [], []
        for _ in range(args.repeats):  # a per-episode copy the sandbox owns and deletes on close
            episode = tmp / "episode"
            t = time.perf_counter()
            subprocess.run(["cp", "-a", "--reflink=auto", str(repo), str(episode)], check=True)
            t1 = time.perf_counter()
            with LocalSandbox(episode, owns_workspace=True) as sb:
                sb.run("true")
            copy_s.append(t1 - t)
            owned_s.append(time.perf_counter() - t1)
        for name, xs in (("create+true+close (borrowed repo)", timed(borrowed, args.repeats)),
                         ("create+true+close (owned copy, rm on close)", owned_s),
                         ("  (not the sandbox's: cp -a of the repo)", copy_s)):
            rows[name] = {"median_ms": statistics.median(xs) * 1e3, "p90_ms": pct(xs, 0.9) * 1e3}

    print(f"{'measurement':45s} {'median ms':>10s} {'p90 ms':>10s}")
    for name, r in rows.items():
        print(f"{name:45s} {r['median_ms']:10.2f} {r['p90_ms']:10.2f}")
    print(f"sandbox/plain ratio (medians): {ratio:.2f}   repo: {files} files, {size / 2**20:.1f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": platform.node(), "cpu_count": os.cpu_count(), "runs": args.runs,
        "repeats": args.repeats, "dir": args.dir or tempfile.gettempdir(), "repo_files": files, "repo_mb": size / 2**20, "ratio_true": ratio, "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
