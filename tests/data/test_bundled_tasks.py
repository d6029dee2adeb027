"""The shipped bundled task set (src/swe_rl/data/tasks): records, bundles, patches.

Real git on the real bundles; one task is also run with real pytest. The full
verification of every task is done by scripts/build_bundled_tasks.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swe_rl.paths import BUNDLED_TASKS

TASKS_DIR = BUNDLED_TASKS.parent
RECORDS = [json.loads(line) for line in BUNDLED_TASKS.read_text().splitlines()]
FIELDS = {
    "instance_id", "repo", "base_commit", "environment_setup_commit", "problem_statement", "patch",
    "test_patch", "FAIL_TO_PASS", "PASS_TO_PASS", "version", "created_at", "repo_url", "install_config",
    "license",
}


def git(cwd: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, input=input, text=True, check=True,
                          capture_output=True).stdout


@pytest.fixture(scope="module")
def clones(tmp_path_factory) -> dict[str, Path]:
    """One clone of each bundle, keyed by repo_url."""
    out = {}
    for url in sorted({r["repo_url"] for r in RECORDS}):
        dest = tmp_path_factory.mktemp("clone") / "repo"
        subprocess.run(["git", "clone", "-q", str(TASKS_DIR / url), str(dest)], check=True)
        out[url] = dest
    return out


def test_task_set_shape():
    assert len(RECORDS) >= 12
    assert len({r["repo"] for r in RECORDS}) >= 3
    assert len({r["instance_id"] for r in RECORDS}) == len(RECORDS)
    for r in RECORDS:
        assert FIELDS <= r.keys(), (r["instance_id"], FIELDS - r.keys())
        assert r["FAIL_TO_PASS"] and r["PASS_TO_PASS"], r["instance_id"]
        assert not set(r["FAIL_TO_PASS"]) & set(r["PASS_TO_PASS"]), r["instance_id"]
        assert not Path(r["repo_url"]).is_absolute()
        assert (TASKS_DIR / "LICENSES" / (Path(r["repo_url"]).stem + ".txt")).is_file()
        assert "```python" in r["problem_statement"]


@pytest.mark.parametrize("record", RECORDS, ids=[r["instance_id"] for r in RECORDS])
def test_patches_apply_to_a_parentless_base(record, clones, tmp_path):
    repo = clones[record["repo_url"]]
    # no parent: the pristine release (the fix) must not be one `git diff HEAD~1` away
    assert git(repo, "rev-list", "--parents", "-n1", record["base_commit"]).split() == [record["base_commit"]]
    git(repo, "cat-file", "-e", record["environment_setup_commit"] + "^{commit}")
    git(repo, "checkout", "-q", "-f", record["base_commit"])
    git(repo, "apply", "--check", "-", input=record["test_patch"])
    git(repo, "apply", "--check", "-", input=record["patch"])
    patched = {line[6:] for line in record["patch"].splitlines() if line.startswith("+++ b/")}
    test_files = {line[6:] for line in record["test_patch"].splitlines() if line.startswith("+++ b/")}
    assert patched and test_files and not patched & test_files
    assert all("test" in f for f in test_files) and not any("test" in f for f in patched)


def test_one_task_fails_then_passes_with_real_pytest(clones):
    """inflection is pure Python with a flat layout, so the host's pytest can run it in place."""
    record = next(r for r in RECORDS if r["instance_id"] == "jpvanhal__inflection-1")
    repo = clones[record["repo_url"]]
    git(repo, "checkout", "-q", "-f", record["base_commit"])
    git(repo, "apply", "-", input=record["test_patch"])

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               *record["FAIL_TO_PASS"], *record["PASS_TO_PASS"]],
                              cwd=repo, capture_output=True, text=True)

    buggy = run()
    assert f"{len(record['FAIL_TO_PASS'])} failed, {len(record['PASS_TO_PASS'])} passed" in buggy.stdout
    git(repo, "apply", "-", input=record["patch"])
    fixed = run()
    assert fixed.returncode == 0, fixed.stdout[-2000:]
    git(repo, "checkout", "-q", "-f", record["base_commit"])
