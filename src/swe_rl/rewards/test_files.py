"""Which repository paths a graded patch may not change: test code, test configuration, interpreter hooks.

Grading (grading.py) restores every such path to the task's base state before it applies
`test_patch`, so an agent cannot edit, delete, deselect or rig the tests that grade it.
Pure functions over paths and diff text; the sandbox side lives in grading.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

# Directories holding tests. `tests/` anywhere; `test/` and `testing/` only at the root,
# because nested ones are often library code (django/test/, numpy/testing/).
TEST_DIRS_ANYWHERE = frozenset({"tests"})
TEST_DIRS_AT_ROOT = frozenset({"test", "testing"})
TEST_FILE = re.compile(r"^(test_.*\.py|.*_test\.py|tests\.py|conftest\.py)$")
# Files pytest, tox, nose or coverage read their settings from, at any depth: pytest looks
# for its configuration from the test arguments upward, so a nested pytest.ini counts.
TEST_CONFIG_FILES = frozenset(
    {"pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml", "tox.ini", "setup.cfg", "pyproject.toml",
     ".coveragerc", "noxfile.py", ".gitattributes"}
)
# Imported by the interpreter before or beside any test, whatever the test command is.
INTERPRETER_HOOK_FILES = frozenset({"sitecustomize.py", "usercustomize.py"})
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache"})
# Distribution metadata on sys.path registers entry points: a `pytest11` one is a plugin pytest autoloads.
METADATA_SUFFIXES = (".egg-info", ".dist-info", ".egg-link")
COMPILED_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd", ".pth")

# Files SWE-bench never runs as tests even when test_patch touches them.
NON_TEST_EXTS = (".json", ".png", "csv", ".txt", ".md", ".jpg", ".jpeg", ".pkl", ".yml", ".yaml", ".toml")

_DIFF_GIT = re.compile(r"^diff --git a/(.*) b/(.*)$", re.M)
_HEADER = re.compile(r"^(?:---|\+\+\+) (?:[ab]/)?([^\t\n]*)", re.M)
_RENAME = re.compile(r"^(?:rename|copy) (?:from|to) (.*)$", re.M)


def patch_paths(patch: str) -> list[str]:
    """Every path a diff names (both sides of renames, `---`/`+++` headers of plain diffs), in order."""
    found: list[str] = []
    for a, b in _DIFF_GIT.findall(patch):
        found += [a, b]
    found += _RENAME.findall(patch)
    found += [p for p in _HEADER.findall(patch) if p != "/dev/null"]
    return list(dict.fromkeys(p.strip() for p in found if p.strip()))


def unsafe_paths(patch: str) -> list[str]:
    """Paths that would write outside the repository or into `.git` (git apply refuses them; patch(1) may not)."""
    bad = []
    for path in patch_paths(patch):
        parts = PurePosixPath(path).parts
        if path.startswith("/") or ".." in parts or ".git" in parts:
            bad.append(path)
    return bad


def paths_in_test_patch(test_patch: str) -> list[str]:
    """Paths created or modified by the task's `test_patch`, the `b/` side as SWE-bench reads it."""
    return list(dict.fromkeys(b for _, b in _DIFF_GIT.findall(test_patch)))


def swebench_directives(test_patch: str, *, django: bool = False) -> list[str]:
    """SWE-bench's test directives: the test_patch's files minus data files; Django wants module labels."""
    files = [f for f in paths_in_test_patch(test_patch) if not f.endswith(NON_TEST_EXTS)]
    if not django:
        return files
    labels = []
    for f in files:
        f = f.removesuffix(".py").removeprefix("tests/")
        labels.append(f.replace("/", "."))
    return labels


def command_paths(test_cmd: str) -> frozenset[str]:
    """Repository files the test command itself runs (`./tests/runtests.py`, `bin/test`)."""
    try:
        tokens = shlex.split(test_cmd)
    except ValueError:
        tokens = test_cmd.split()
    paths = set()
    for tok in tokens:
        if tok.startswith("-") or tok.startswith("/") or "=" in tok:
            continue
        if "/" in tok or tok.endswith(".py"):
            paths.add(str(PurePosixPath(tok)))  # drops a leading "./"
    return frozenset(paths)


def protection_reason(path: str, *, test_patch_files: frozenset[str] = frozenset(),
                      command_files: frozenset[str] = frozenset()) -> str | None:
    """Why grading restores `path` to its base state, or None if the agent may change it."""
    p = PurePosixPath(path)
    parts, name = p.parts, p.name
    if path in test_patch_files:
        return "touched by test_patch"
    if path in command_files:
        return "run by the test command"
    if any(d in TEST_DIRS_ANYWHERE for d in parts[:-1]) or (len(parts) > 1 and parts[0] in TEST_DIRS_AT_ROOT):
        return "test directory"
    if TEST_FILE.match(name):
        return "test file"
    if name in TEST_CONFIG_FILES:
        return "test configuration"
    if name in INTERPRETER_HOOK_FILES:
        return "interpreter hook"
    if any(d.endswith(METADATA_SUFFIXES) for d in parts):
        return "package metadata (entry points)"
    if any(d in CACHE_DIRS for d in parts) or name.endswith(COMPILED_SUFFIXES):
        return "compiled file, cache or .pth"
    return None


def shadow_candidate(path: str) -> tuple[str, str] | None:
    """(module name, directory that would have to be on sys.path) for a new top-level-looking module.

    `a/json.py` -> ("json", "a"); `a/json/__init__.py` -> ("json", "a"). Grading reverts such a file
    when the directory is not a package and the name shadows a module the interpreter can import.
    """
    p = PurePosixPath(path)
    if p.name == "__init__.py":
        if len(p.parts) < 2:
            return None
        name, parent = p.parts[-2], str(p.parent.parent)
    elif p.suffix == ".py":
        name, parent = p.stem, str(p.parent)
    else:
        return None
    return (name, parent) if name.isidentifier() else None
