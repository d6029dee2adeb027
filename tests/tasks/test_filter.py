"""The curation funnel on synthesized tasks plus planted bad ones: each lands in its own step."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from swe_rl.tasks.filter import filter_cli, funnel, patch_size
from swe_rl.tasks.loaders import load_tasks

pytestmark = pytest.mark.slow  # grades every task (uses the synthesized tasks of conftest.py)


def test_patch_size_counts_files_and_changed_lines():
    patch = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-a\n+b\n c\n" \
            "diff --git a/y.py b/y.py\n--- a/y.py\n+++ b/y.py\n@@ -1 +1,2 @@\n x\n+z\n"
    assert patch_size(patch) == (2, 3)


def test_funnel_drops_each_planted_problem_at_its_step(synth, tmp_path):
    *good, other = load_tasks(synth["out"])[:3]
    big = replace(good[0], instance_id="big", patch="".join(
        f"diff --git a/f{i}.py b/f{i}.py\n--- a/f{i}.py\n+++ b/f{i}.py\n@@ -1 +1 @@\n-a\n+b\n" for i in range(8)))
    dup = replace(good[1], instance_id="dup")
    env = replace(other, instance_id="env", install_config=replace(
        other.install_config, test_cmd=good[0].install_config.test_cmd + " -p no_such_plugin"))
    kept, steps = funnel([*good, big, dup, env], reruns=2, cache=synth["cache"])
    assert [t.instance_id for t in kept] == [t.instance_id for t in good]
    by_step = {s["step"]: s for s in steps}
    assert [s["kept"] for s in steps] == [5, 4, 3, 2, 2, 2]
    assert "too large" in by_step["patch <= 7 files, < 500 lines"]["dropped"]["big"]
    assert by_step["duplicates"]["dropped"] == {"dup": f"duplicate of {good[1].instance_id}"}
    assert "environment" in by_step["environment / import errors"]["dropped"]["env"]

    src = synth["out"].with_name("one.jsonl")  # beside the tasks: repo_url "repos/calc" is relative
    src.write_text(synth["out"].read_text().splitlines()[0] + "\n")
    assert filter_cli(str(src), out=tmp_path / "kept.jsonl", reruns=1, cache=synth["cache"]) == 0
    report = json.loads((tmp_path / "kept.funnel.json").read_text())
    assert report["steps"][-1]["kept"] == 1 and len(load_tasks(tmp_path / "kept.jsonl")) == 1
