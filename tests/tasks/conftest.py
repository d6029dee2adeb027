"""A small real repository with a pytest suite, and tasks synthesized from it (shared by tests/tasks)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from swe_rl.tasks.synthesize import synthesize

CODE = '''\
"""A tiny calculator."""


def add(a, b):
    return a + b


def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def is_even(n):
    return n % 2 == 0


def mean(values):
    if not values:
        raise ValueError("empty")
    return sum(values) / len(values)


def untested(x):
    return x * 3
'''
TESTS = '''\
import pytest

from calc.core import add, clamp, is_even, mean


def test_add():
    assert add(2, 3) == 5


def test_clamp():
    assert clamp(5, 0, 10) == 5
    assert clamp(-1, 0, 10) == 0
    assert clamp(11, 0, 10) == 10


def test_is_even():
    assert is_even(4)
    assert not is_even(3)


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_mean_empty():
    with pytest.raises(ValueError):
        mean([])
'''
N = 4


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """A small package with a pytest suite and N tasks synthesized from it (seed 3)."""
    root = tmp_path_factory.mktemp("synth")
    src = root / "calc"
    (src / "calc").mkdir(parents=True)
    (src / "tests").mkdir()
    (src / "calc" / "__init__.py").write_text("")
    (src / "calc" / "core.py").write_text(CODE)
    (src / "tests" / "test_core.py").write_text(TESTS)
    git(src, "init", "-q", "--initial-branch=main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "calc")
    cache, out = root / "cache", root / "out" / "tasks.jsonl"
    report = synthesize(str(src), N, out, seed=3, cache=cache, progress=False)
    return {"root": root, "src": src, "cache": cache, "out": out, "report": report}


def explorable_tasks(synth: dict, window: int, keep=lambda task, plan: True) -> list:
    """`synth`'s tasks scripted:explore can plan from a `window`-line viewer (and `keep` accepts), one per issue text.

    A scripted policy finds its script by the issue text, so a second task with the same text is left out.
    """
    from swe_rl.agent.demonstration import definition_hits, explore_plan, synthesized_function
    from swe_rl.tasks.loaders import load_tasks

    tasks = []
    for t in load_tasks(synth["out"]):
        try:
            plan = explore_plan(t, definition_hits(t, synthesized_function(t)), window)
        except ValueError:
            continue
        if all(t.problem_statement != kept.problem_statement for kept in tasks) and keep(t, plan):
            tasks.append(t)
    return tasks


