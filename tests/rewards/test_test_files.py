"""Which paths grading restores, and how paths and directives are read from diffs."""

from __future__ import annotations

import pytest

from swe_rl.rewards.test_files import (command_paths, patch_paths, protection_reason, shadow_candidate,
                                       swebench_directives, unsafe_paths)

DIFF = ("diff --git a/tests/test_x.py b/tests/test_x.py\n--- a/tests/test_x.py\n+++ b/tests/test_x.py\n"
        "diff --git a/data/x.json b/data/x.json\n--- /dev/null\n+++ b/data/x.json\n")


@pytest.mark.parametrize("path, reason", [
    ("tests/test_x.py", "test directory"), ("pkg/tests/helpers.py", "test directory"),
    ("testing/util.py", "test directory"), ("django/test/utils.py", None),  # library code, not tests
    ("pkg/test_io.py", "test file"), ("pkg/io_test.py", "test file"), ("sub/conftest.py", "test file"),
    ("setup.cfg", "test configuration"), ("sub/pytest.ini", "test configuration"),
    ("pyproject.toml", "test configuration"), ("tox.ini", "test configuration"),
    ("sitecustomize.py", "interpreter hook"), ("src/x.pth", "compiled file, cache or .pth"),
    ("pkg/__pycache__/m.cpython-311.pyc", "compiled file, cache or .pth"),
    ("src/pkg.egg-info/entry_points.txt", "package metadata (entry points)"),
    ("pkg/core.py", None), ("README.md", None),
])
def test_protection_reason(path, reason):
    assert protection_reason(path) == reason


def test_test_patch_and_command_files_are_protected():
    assert protection_reason("data/x.json", test_patch_files=frozenset({"data/x.json"})) == "touched by test_patch"
    assert command_paths("./tests/runtests.py --settings=x -v 2") == {"tests/runtests.py"}
    assert protection_reason("bin/test", command_files=command_paths("bin/test -C --verbose")) == "run by the test command"


def test_paths_and_directives_from_diffs():
    assert patch_paths(DIFF) == ["tests/test_x.py", "data/x.json"]
    assert swebench_directives(DIFF) == ["tests/test_x.py"]
    assert swebench_directives(DIFF, django=True) == ["test_x"]
    assert unsafe_paths("--- a/../x\n+++ b/../x\n") == ["../x"]
    assert unsafe_paths("diff --git a/.git/config b/.git/config\n") == [".git/config"]


def test_shadow_candidate():
    assert shadow_candidate("pytest.py") == ("pytest", ".")
    assert shadow_candidate("src/json/__init__.py") == ("json", "src")
    assert shadow_candidate("README.md") is None
