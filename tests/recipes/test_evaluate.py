"""`swe-rl eval` end to end on the bundled tasks: real sandboxes, real grading, real (tiny) model."""

from __future__ import annotations

import json

import pytest

from swe_rl.cli import main
from swe_rl.evaluation.report import completion_tokens
from swe_rl.rewards.predictions import load_predictions
from swe_rl.rollouts.store import read_trajectories

pytestmark = pytest.mark.slow  # episodes and grading in real sandboxes


def eval_cli(bundled_tasks, out, model, runs, *extra):
    argv = ["eval", "--tasks", "bundled", "--model", model, "--runs", str(runs), "--out", str(out), "--quiet"]
    for task in bundled_tasks[:2]:
        argv += ["--instance", task.instance_id]
    return main(argv + list(extra))


def test_scripted_gold_eval_writes_a_perfect_report_and_resumes(bundled_tasks, tmp_path, capsys):
    tasks = bundled_tasks[:2]
    out = tmp_path / "eval"
    assert eval_cli(bundled_tasks, out, "scripted:gold", 2) == 0
    printed = capsys.readouterr().out
    assert "pass@1 (mean ± SEM over 2 runs)" in printed and "100.0% ± 0.0%" in printed

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pass_at_1"] == {"mean": 1.0, "sem": 0.0}
    assert metrics["pass_at_k"] == {"1": 1.0, "2": 1.0}
    assert metrics["exit_reasons"] == {"submitted": 4} and metrics["num_tasks"] == 2
    trajectories = read_trajectories(out / "trajectories.jsonl")
    assert metrics["mean_turns"] == sum(t.num_turns for t in trajectories) / 4 > 0
    assert metrics["completion_tokens"]["total"] == sum(completion_tokens(t) for t in trajectories) > 0
    report = (out / "report.md").read_text()
    assert "| pass@1 (mean ± SEM over 2 runs) | 100.0% ± 0.0% |" in report
    assert all(f"| {t.instance_id} | 2 / 2 | 100.0% |" in report for t in tasks)
    for name in ("pass_at_k", "solve_rates", "turns", "tokens"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name}.png)" in report
    for run in (0, 1):  # one SWE-bench predictions file per run, holding the gold patches the script applied
        preds = load_predictions(out / f"run{run}" / "preds.jsonl")
        assert {p["instance_id"]: p["model_patch"] for p in preds} == {t.instance_id: t.patch for t in tasks}
        assert {p["model_name_or_path"] for p in preds} == {"scripted"}
    viewer = (out / "viewer.html").read_text()
    assert all(t.instance_id in viewer for t in tasks)

    # A killed run leaves finished episodes and a torn last line: --resume redoes only the rest.
    lines = (out / "trajectories.jsonl").read_text().splitlines(keepends=True)
    (out / "trajectories.jsonl").write_text("".join(lines[:2]) + lines[2][:50])
    with pytest.raises(SystemExit, match="--resume"):
        eval_cli(bundled_tasks, out, "scripted:gold", 2)
    assert eval_cli(bundled_tasks, out, "scripted:gold", 2, "--resume") == 0
    resumed = read_trajectories(out / "trajectories.jsonl")
    assert [t.to_dict() for t in resumed[:2]] == [t.to_dict() for t in trajectories[:2]]  # kept, not redone
    assert sorted((t.instance_id, t.sample_index) for t in resumed) == sorted((t.instance_id, r) for t in tasks for r in (0, 1))
    assert json.loads((out / "metrics.json").read_text())["pass_at_1"] == {"mean": 1.0, "sem": 0.0}

    # --resume with more runs adds run 2 and keeps runs 0 and 1.
    assert eval_cli(bundled_tasks, out, "scripted:gold", 3, "--resume") == 0
    assert json.loads((out / "metrics.json").read_text())["pass_at_k"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert len(read_trajectories(out / "trajectories.jsonl")) == 6
    assert (out / "run2" / "preds.jsonl").exists()


def test_tiny_model_eval_reports_what_its_trajectories_hold(bundled_tasks, tmp_path):
    out = tmp_path / "eval"
    assert eval_cli(bundled_tasks, out, "tiny", 2, "--max-turns", "2", "--max-new-tokens", "24", "--device", "cpu") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    trajectories = read_trajectories(out / "trajectories.jsonl")
    assert len(trajectories) == 4 and all(t.grade is not None for t in trajectories)
    # An untrained 2-layer model cannot fix a bug in 2 turns of 24 tokens.
    assert metrics["pass_at_1"] == {"mean": 0.0, "sem": 0.0} and metrics["pass_at_k"] == {"1": 0.0, "2": 0.0}
    assert sum(metrics["exit_reasons"].values()) == 4
    assert metrics["exit_reasons"] == {r: sum(t.exit_reason == r for t in trajectories) for r in metrics["exit_reasons"]}
    tokens = [completion_tokens(t) for t in trajectories]
    assert 0 < metrics["completion_tokens"]["total"] == sum(tokens) <= 4 * 2 * 24
    assert metrics["mean_turns"] == sum(t.num_turns for t in trajectories) / 4 <= 2
    assert "| pass@1 (mean ± SEM over 2 runs) | 0.0% ± 0.0% |" in (out / "report.md").read_text()
    for run in (0, 1):
        preds = load_predictions(out / f"run{run}" / "preds.jsonl")
        by_id = {t.instance_id: t.patch for t in trajectories if t.sample_index == run}
        assert {p["instance_id"]: p["model_patch"] for p in preds} == by_id
