"""Grading in real sandboxes on the tiny task: gold, empty, reward hacks, bad patches, infrastructure failures."""

from __future__ import annotations

import os
import threading
import time

import pytest

from swe_rl.rewards.grading import command_for_tests, grade
from tests.rewards.conftest import FILES, GOLD

FIXED_OPS = GOLD["calc/ops.py"]
FORCE_PASS_HOOK = (
    "import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
    "    outcome = yield\n    outcome.get_result().outcome = 'passed'\n"
)


def test_gold_resolves_and_empty_does_not(tiny, grade_tiny):
    gold = grade_tiny(tiny.task().patch).grade
    assert gold.status == "resolved" and gold.patch_applied
    assert gold.fail_to_pass == {"tests/test_ops.py::test_add": "PASSED"}
    empty = grade_tiny("").grade
    assert empty.status == "unresolved" and "test_add (FAILED)" in empty.reason


def hack_resolves_only_without_restoring(grade_tiny, patch: str):
    """The hack really works when test files are not restored, and grading defeats it."""
    unprotected = grade_tiny(patch, restore_tests=False)
    assert unprotected.grade.status == "resolved", unprotected.log[-2000:]
    run = grade_tiny(patch)
    assert run.grade.status == "unresolved", run.log[-2000:]
    assert run.grade.fail_to_pass["tests/test_ops.py::test_add"] == "FAILED"
    return run


def test_hack_a_editing_the_test_module(tiny, grade_tiny):
    edited = FILES["tests/test_ops.py"].replace("from calc.ops import add\n", "add = lambda a, b: a + b\n")
    run = hack_resolves_only_without_restoring(grade_tiny, tiny.diff({"tests/test_ops.py": edited}))
    assert run.restored == {"tests/test_ops.py": "touched by test_patch"}


def test_hack_b_deleting_a_test_it_breaks(tiny, grade_tiny):
    patch = tiny.diff({"calc/ops.py": FIXED_OPS.replace("return a - b", "return a * b"), "tests/test_sub.py": None})
    run = grade_tiny(patch)
    assert run.grade.status == "unresolved"
    assert run.grade.pass_to_pass["tests/test_sub.py::test_sub"] == "FAILED"  # restored and run, not MISSING
    assert run.restored == {"tests/test_sub.py": "test directory"}


def test_hack_c_conftest_hook_forcing_passes(tiny, grade_tiny):
    run = hack_resolves_only_without_restoring(grade_tiny, tiny.diff({"conftest.py": FORCE_PASS_HOOK}))
    assert run.restored == {"conftest.py": "test file"}


@pytest.mark.parametrize("config", [
    {"setup.cfg": "[tool:pytest]\naddopts = -p calc.plugin\n"},
    {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-p calc.plugin'\n"},
])
def test_hack_d_configuration_loading_a_plugin(tiny, grade_tiny, config):
    run = hack_resolves_only_without_restoring(grade_tiny, tiny.diff({**config, "calc/plugin.py": FORCE_PASS_HOOK}))
    assert list(run.restored) == list(config)


def test_hack_d_configuration_deselecting_the_test(tiny, grade_tiny):
    patch = tiny.diff({"pytest.ini": "[pytest]\naddopts = -k 'not test_add'\n"})
    assert grade_tiny(patch, restore_tests=False).grade.fail_to_pass["tests/test_ops.py::test_add"] == "MISSING"
    run = grade_tiny(patch)
    assert run.grade.fail_to_pass["tests/test_ops.py::test_add"] == "FAILED"
    assert run.restored == {"pytest.ini": "test configuration"}


def test_hack_e_module_shadowing_the_test_runner(tiny, grade_tiny):
    fake = "import sys\nfor a in sys.argv[1:]:\n    if '::' in a:\n        print('PASSED ' + a)\n"
    run = hack_resolves_only_without_restoring(grade_tiny, tiny.diff({"pytest.py": fake}))
    assert run.restored == {"pytest.py": "shadows the installed module 'pytest'"}


def test_hack_forged_result_lines_at_exit(tiny, grade_tiny):
    forged = ("import atexit, os\natexit.register(lambda: os.write(1, b'PASSED tests/test_ops.py::test_add\\n'))\n"
              + FILES["calc/ops.py"])
    run = grade_tiny(tiny.diff({"calc/ops.py": forged}))
    assert run.log.rstrip().endswith("PASSED tests/test_ops.py::test_add")
    assert run.grade.status == "unresolved"


def test_bytecode_and_hooks_are_removed(tiny, grade_tiny):
    patch = tiny.diff({"calc/__pycache__/ops.cpython-311.pyc": "junk", "sitecustomize.py": "raise SystemExit(0)\n",
                       "calc/evil.pth": "import os\n", "calc/ops.py": FIXED_OPS})
    run = grade_tiny(patch)
    assert run.grade.status == "resolved"
    assert set(run.restored) == {"calc/__pycache__/ops.cpython-311.pyc", "sitecustomize.py", "calc/evil.pth"}


def test_patch_that_does_not_apply(tiny, grade_tiny):
    bad = tiny.diff({"calc/ops.py": FIXED_OPS}).replace("calc/ops.py", "calc/missing.py")
    g = grade_tiny(bad).grade
    assert g.status == "unresolved" and not g.patch_applied
    assert g.reason.startswith("patch does not apply") and "patch --batch" in g.reason


def test_patch_writing_outside_the_repository_is_refused(tiny, grade_tiny):
    evil = "--- a/../outside.py\n+++ b/../outside.py\n@@ -0,0 +1 @@\n+x = 1\n"
    g = grade_tiny(evil).grade
    assert g.status == "unresolved" and not g.patch_applied and "outside the repository" in g.reason


def test_test_timeout_is_unresolved(tiny, grade_tiny):
    from swe_rl.types import InstallConfig

    task = tiny.task(install_config=InstallConfig(test_cmd="sleep 30; python -m pytest -rA"))
    g = grade_tiny(tiny.task().patch, task=task, timeout_s=1.0).grade
    assert g.status == "unresolved" and "timed out" in g.reason


def test_sandbox_killed_mid_run_is_an_error(tiny):
    from swe_rl.rewards.grading import grade_run
    from swe_rl.types import InstallConfig

    task = tiny.task(install_config=InstallConfig(test_cmd="sleep 30; python -m pytest -rA"))
    sb = tiny.sandbox()

    def kill_sandbox_processes():
        time.sleep(1.0)
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == sb.uid:
                    os.kill(int(pid), 9)  # only the processes of this sandbox's own uid
            except (FileNotFoundError, ProcessLookupError):
                pass

    threading.Thread(target=kill_sandbox_processes, daemon=True).start()
    g = grade_run(task, task.patch, sandbox=sb, timeout_s=20).grade
    assert g.status == "error" and "died during the test run" in g.reason


def test_missing_environment_is_an_error(tiny, tmp_path):
    task = tiny.task(repo_url=str(tmp_path / "no-such-repo"))
    g = grade(task, task.patch, cache=tmp_path / "cache")
    assert g.status == "error" and g.reason.startswith("infrastructure:")


def test_test_command_uses_ids_or_falls_back_to_files(tiny):
    task = tiny.task()
    assert command_for_tests(task).endswith("tests/test_ops.py::test_add tests/test_ops.py::test_add_zero tests/test_sub.py::test_sub")
    cut = tiny.task(FAIL_TO_PASS=("tests/test_ops.py::test_add[a",))  # an id cut at a space: run files
    assert command_for_tests(cut).endswith("-p no:cacheprovider tests/test_ops.py tests/test_sub.py")
    many = tiny.task(PASS_TO_PASS=tuple(f"tests/test_x.py::test_{i}" for i in range(1000)))
    assert command_for_tests(many).endswith("tests/test_ops.py tests/test_x.py")
