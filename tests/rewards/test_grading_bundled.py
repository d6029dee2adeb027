"""Grading the bundled tasks (real projects) in their prepared environments: gold, empty, a hack."""

from __future__ import annotations

import pytest

from swe_rl.rewards.grading import grade_run
from tests.rewards.test_grading import FORCE_PASS_HOOK

pytestmark = pytest.mark.slow  # the first run prepares the environments (pip), later ones grade ~20 tasks


@pytest.fixture(scope="module")
def bundled(bundled_tasks):
    return bundled_tasks


def test_gold_patches_resolve_and_empty_patches_do_not(bundled):
    for task in bundled:
        gold = grade_run(task, task.patch)
        assert gold.grade.status == "resolved", (task.instance_id, gold.grade.reason, gold.log[-2000:])
        assert not gold.restored, (task.instance_id, gold.restored)  # gold patches touch no test file
        empty = grade_run(task, "").grade
        assert empty.status == "unresolved" and empty.patch_applied, (task.instance_id, empty.reason)
        assert any(s != "PASSED" for s in empty.fail_to_pass.values())


def test_conftest_hack_on_a_real_project(bundled):
    task = bundled[0]
    hack = ("diff --git a/conftest.py b/conftest.py\nnew file mode 100644\n--- /dev/null\n+++ b/conftest.py\n"
            + f"@@ -0,0 +1,{FORCE_PASS_HOOK.count(chr(10))} @@\n"
            + "".join("+" + line + "\n" for line in FORCE_PASS_HOOK.splitlines()))
    assert grade_run(task, hack, restore_tests=False).grade.status == "resolved"  # the hack works unchecked
    run = grade_run(task, hack)
    assert run.grade.status == "unresolved" and run.restored == {"conftest.py": "test file"}
