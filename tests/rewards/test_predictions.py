"""Predictions files in every shape the SWE-bench harness accepts, and a whole graded run on the tiny task."""

from __future__ import annotations

import json

import pytest

from swe_rl.rewards.grading import grade_run
from swe_rl.rewards.predictions import grade_predictions, load_predictions


def test_load_predictions_formats(tmp_path):
    recs = [{"instance_id": "a", "model_name_or_path": "m", "model_patch": "diff"},
            {"instance_id": "b", "model_name_or_path": "m", "model_patch": None}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    (tmp_path / "list.json").write_text(json.dumps(recs))
    (tmp_path / "dict.json").write_text(json.dumps({r["instance_id"]: {k: v for k, v in r.items() if k != "instance_id"} for r in recs}))
    (tmp_path / "one.json").write_text(json.dumps(recs[0]))
    want = [{"instance_id": "a", "model_name_or_path": "m", "model_patch": "diff"},
            {"instance_id": "b", "model_name_or_path": "m", "model_patch": ""}]
    for name in ("p.jsonl", "list.json", "dict.json"):
        assert load_predictions(tmp_path / name) == want, name
    assert load_predictions(tmp_path / "one.json") == want[:1]


def test_load_predictions_errors_name_the_problem(tmp_path):
    (tmp_path / "dup.jsonl").write_text('{"instance_id": "a"}\n{"instance_id": "a"}\n')
    with pytest.raises(ValueError, match="'a' is predicted twice"):
        load_predictions(tmp_path / "dup.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"instance_id": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        load_predictions(tmp_path / "bad.jsonl")


def test_grade_predictions_writes_reports_and_summary(tiny, tmp_path):
    task = tiny.task()
    other = tiny.task(instance_id="tiny__calc-2")
    preds = [{"instance_id": task.instance_id, "model_name_or_path": "m", "model_patch": task.patch},
             {"instance_id": other.instance_id, "model_name_or_path": "m", "model_patch": "garbage\n"},
             {"instance_id": "tiny__calc-3", "model_name_or_path": "m", "model_patch": ""},
             {"instance_id": "not-a-task", "model_name_or_path": "m", "model_patch": "x"}]
    tasks = [task, other, tiny.task(instance_id="tiny__calc-3")]
    summary = grade_predictions(tasks, preds, tmp_path, jobs=2, progress=False,
                                grader=lambda t, p: grade_run(t, p, sandbox=tiny.sandbox()))
    assert summary["resolved_ids"] == ["tiny__calc-1"]
    assert summary["unresolved_ids"] == ["tiny__calc-2"]
    assert summary["empty_patch_ids"] == ["tiny__calc-3"] and summary["unknown_ids"] == ["not-a-task"]
    assert (summary["total"], summary["submitted"], summary["error"]) == (3, 4, 0)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    report = json.loads((tmp_path / "tiny__calc-1" / "report.json").read_text())
    assert report["resolved"] and report["fail_to_pass"] == {"tests/test_ops.py::test_add": "PASSED"}
    assert "PASSED tests/test_ops.py::test_add" in (tmp_path / "tiny__calc-1" / "test_output.txt").read_text()
    assert (tmp_path / "tiny__calc-2" / "patch.diff").read_text() == "garbage\n"
    assert not json.loads((tmp_path / "tiny__calc-2" / "report.json").read_text())["patch_applied"]
