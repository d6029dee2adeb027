"""A tiny real task (a git repository with a bug, its fix and the tests that reveal it) for grading tests.

Sandboxes are real `LocalSandbox`es (bubblewrap) over a fresh clone of the base commit, with the
test runner's own virtualenv (which has pytest) mounted read-only at /venv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from swe_rl.types import InstallConfig, Task

FILES = {
    "calc/__init__.py": "",
    "calc/ops.py": "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n",
    "conftest.py": "",
    "tests/test_ops.py": "from calc.ops import add\n\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n",
    "tests/test_sub.py": "from calc.ops import sub\n\n\ndef test_sub():\n    assert sub(5, 3) == 2\n",
}
GOLD = {"calc/ops.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"}
TEST_PATCH = {"tests/test_ops.py": FILES["tests/test_ops.py"] + "\n\ndef test_add():\n    assert add(2, 3) == 5\n"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


class TinyRepo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "base"
        self.base.mkdir()
        git(self.base, "init", "-q")
        self._write(self.base, FILES)
        git(self.base, "add", "-A")
        git(self.base, "commit", "-qm", "base")
        self.commit = git(self.base, "rev-parse", "HEAD").strip()
        self._n = 0

    @staticmethod
    def _write(where: Path, files: dict[str, str | None]) -> None:
        for path, content in files.items():
            p = where / path
            if content is None:
                p.unlink()
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(content)

    def clone(self) -> Path:
        self._n += 1
        dest = self.root / f"ws{self._n}"
        git(self.root, "clone", "-q", str(self.base), str(dest))
        return dest

    def diff(self, files: dict[str, str | None]) -> str:
        """A real `git diff` of the base with `files` written (None deletes)."""
        ws = self.clone()
        self._write(ws, files)
        git(ws, "add", "-A")
        return git(ws, "diff", "--cached", "--binary", "HEAD")

    def task(self, **overrides) -> Task:
        fields = dict(
            instance_id="tiny__calc-1", repo="tiny/calc", base_commit=self.commit,
            problem_statement="add() subtracts", patch=self.diff(GOLD), test_patch=self.diff(TEST_PATCH),
            FAIL_TO_PASS=("tests/test_ops.py::test_add",),
            PASS_TO_PASS=("tests/test_ops.py::test_add_zero", "tests/test_sub.py::test_sub"),
            install_config=InstallConfig(test_cmd="python -m pytest -rA -p no:cacheprovider"),
        )
        fields.update(overrides)
        return Task(**fields)

    def sandbox(self):
        from swe_rl.sandbox.local import LocalSandbox

        return LocalSandbox(self.clone(), venv=Path(sys.prefix), owns_workspace=True)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyRepo:
    return TinyRepo(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def grade_tiny(tiny) -> Callable:
    """grade_run on the tiny task in a fresh real sandbox."""
    from swe_rl.rewards.grading import grade_run

    def run(patch: str, task: Task | None = None, **kw):
        return grade_run(task or tiny.task(), patch, sandbox=tiny.sandbox(), **kw)

    return run
