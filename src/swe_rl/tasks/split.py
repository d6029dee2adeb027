"""Train / held-out splits of a task set: `swe-rl tasks split FILE --by repo|function|seed`.

By repository, whole repositories go to one side (no repository on both sides), chosen in a
seeded order until the held-out side holds the wanted fraction of tasks; by function, each mutated
function of synthesized tasks (repository + function) is held out when a seeded hash of its name
falls below the fraction, so synthesizing more tasks never moves a function across the split; by
seed, tasks are shuffled and cut. Held-out tasks are never to be used for training or pool filtering.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Literal

from swe_rl.tasks.schema import task_to_record
from swe_rl.types import Task


def function_key(task: Task) -> str:
    """`repo:function` of a synthesized task (tasks/synthesize.py records the mutated function)."""
    function = (task.extra.get("synthesis") or {}).get("function")
    if not function:
        raise ValueError(f"task {task.instance_id}: --by function needs synthesized tasks (no extra.synthesis.function)")
    return f"{task.repo}:{function}"


def split_tasks(tasks: list[Task], *, by: Literal["repo", "function", "seed"], heldout_fraction: float,
                seed: int = 0) -> tuple[list[Task], list[Task]]:
    """(train, heldout), each in the input order."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    rng = random.Random(seed)
    want = max(1, round(heldout_fraction * len(tasks)))
    if by == "seed":
        ids = [t.instance_id for t in tasks]
        rng.shuffle(ids)
        held = set(ids[:want])
    elif by == "repo":
        repos = sorted({t.repo for t in tasks})
        if len(repos) < 2:
            raise ValueError(f"--by repo needs tasks from at least 2 repositories, got {repos}")
        rng.shuffle(repos)
        sizes = {r: sum(t.repo == r for t in tasks) for r in repos}
        held_repos: set[str] = set()
        count = 0
        for r in repos[:-1]:  # at least one repository stays in training
            if count >= want:
                break
            held_repos.add(r)
            count += sizes[r]
        held = {t.instance_id for t in tasks if t.repo in held_repos}
    elif by == "function":
        def unit(key: str) -> float:  # a uniform number in [0, 1) per (seed, function)
            return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:12], 16) / 16**12

        held = {t.instance_id for t in tasks if unit(function_key(t)) < heldout_fraction}
        if not held or len(held) == len(tasks):
            raise ValueError(f"--by function: every one of the {len({function_key(t) for t in tasks})} functions fell on "
                             "one side; try another seed or more tasks")
    else:
        raise ValueError(f"unknown split {by!r} (expected 'repo', 'function' or 'seed')")
    return [t for t in tasks if t.instance_id not in held], [t for t in tasks if t.instance_id in held]


def write_tasks(tasks: list[Task], path: Path) -> None:
    """A tasks file; a local repo_url under the file's directory is written relative to it (as the loader
    reads it), so the directory can be moved or copied without its tasks pointing back at the old place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    with path.open("w", encoding="utf-8") as f:
        for t in tasks:
            record = task_to_record(t)
            url = record.get("repo_url", "")
            if Path(url).is_absolute() and Path(url).is_relative_to(base):
                record["repo_url"] = str(Path(url).relative_to(base))
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def split_cli(file: str, *, by: Literal["repo", "function", "seed"], heldout_fraction: float, out_train: Path, out_heldout: Path,
              seed: int = 0) -> int:
    from rich.console import Console

    from swe_rl.tasks.loaders import load_tasks

    train, held = split_tasks(load_tasks(file), by=by, heldout_fraction=heldout_fraction, seed=seed)
    write_tasks(train, out_train)
    write_tasks(held, out_heldout)
    repos = lambda ts: len({t.repo for t in ts})  # noqa: E731
    Console(stderr=True).print(f"train: {len(train)} tasks from {repos(train)} repositories -> {out_train}\n"
                               f"held-out: {len(held)} tasks from {repos(held)} repositories -> {out_heldout}",
                               highlight=False)
    return 0
