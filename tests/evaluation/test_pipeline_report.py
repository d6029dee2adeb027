"""The whole-run report: rows from real evaluation reports (report.py on graded trajectories), RL curves, markdown."""

from __future__ import annotations

import json
from pathlib import Path

from swe_rl.evaluation.pipeline_report import plot_rl_curves, table_cells, write_pipeline_report
from swe_rl.evaluation.report import write_report
from swe_rl.rollouts.store import append_trajectory
from swe_rl.types import Grade, Trajectory, Turn


def _traj(task: str, run: int, resolved: bool, turns: int, model: str) -> Trajectory:
    grade = Grade(instance_id=task, status="resolved" if resolved else "unresolved", patch_applied=True)
    # The first turn of every episode is a format error: half of all turns.
    steps = [Turn(response="r", command=None if i == 0 else "ls", observation="o",
                  format_error="cannot extract command" if i == 0 else None, completion_tokens=10) for i in range(turns)]
    return Trajectory(instance_id=task, sample_index=run, messages=[], token_ids=[], loss_mask=[], sampler_logprobs=[],
                      turns=steps, exit_reason="submitted", patch="", grade=grade, model=model)


def _eval_dir(tmp: Path, name: str, outcomes: dict[str, list[bool]]) -> dict:
    out = tmp / name
    trajs = [_traj(task, r, ok, 2, name) for task, runs in outcomes.items() for r, ok in enumerate(runs)]
    write_report(trajs, out, model=name, plots=False)
    for t in trajs:
        append_trajectory(out / "trajectories.jsonl", t)
    return {"row": name, "model": name, "eval_dir": str(out), "same_as": "", "note": ""}


def test_rows_come_from_each_evaluations_metrics_and_reused_rows_say_so(tmp_path):
    base = _eval_dir(tmp_path, "base", {"a": [False, False], "b": [False, False]})
    rft = _eval_dir(tmp_path, "rft", {"a": [True, False], "b": [True, True]})
    stage1 = {**rft, "row": "RL stage 1", "same_as": "rft", "note": "unchanged: every advantage was 0"}
    rl = [{"iteration": 1, "stage": 1, "reward_mean": -0.5, "resolve_rate": 0.25, "turns_mean": 3, "tokens_mean": 900, "pool_size": 4},
          {"iteration": 2, "stage": 2, "reward_mean": 0.1, "resolve_rate": 0.5, "turns_mean": 2.5, "tokens_mean": 800,
           "logprob_gap_mean": 1e-6, "pool_size": 2}]
    (tmp_path / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rl))
    report = write_pipeline_report(tmp_path, [base, rft, stage1], rl_metrics=tmp_path / "rl.jsonl", train_ids=["x", "y"],
                                   heldout_ids=["a", "b"], wall_s=12.0,
                                   step_walls={"eval_base": 10.0, "rft": 5.0})
    rows = {r["row"]: r for r in report["rows"]}
    assert rows["base"]["pass_at_1"] == {"mean": 0.0, "sem": 0.0} and rows["base"]["pass_at_k"] == 0.0
    # rft: run 0 resolves 2/2, run 1 resolves 1/2 -> pass@1 0.75 ± 0.25 over runs, pass@2 = 1.0
    assert rows["rft"]["pass_at_1"] == {"mean": 0.75, "sem": 0.25} and rows["rft"]["pass_at_k"] == 1.0
    assert rows["rft"]["format_error_rate"] == 0.5 and rows["rft"]["mean_turns"] == 2.0
    assert table_cells(rows["RL stage 1"], 2) == ("RL stage 1", "75.0% ± 25.0%", "100.0%", "50.0%", "2.00", "20",
                                                  "unchanged: every advantage was 0 (= rft evaluation)")
    md = (tmp_path / "report.md").read_text()
    assert "| rft | 75.0% ± 25.0% | 100.0% | 50.0% | 2.00 | 20 |  |" in md and "| pass@2 |" in md
    assert "![rl_logprob_gap_mean](rl_logprob_gap_mean.png)" in md and "![pass_at_1](pass_at_1.png)" in md
    assert "| rft | 5 |" in md and "| total | 15 |" in md
    assert json.loads((tmp_path / "report.json").read_text())["heldout_ids"] == ["a", "b"]
    viewer = (tmp_path / "viewer.html").read_text()
    assert viewer.count('"task":"a"') == 4  # base and rft: 2 runs each; the reused row adds none


def test_rl_curves_skip_metrics_that_were_never_logged(tmp_path):
    rows = [{"iteration": 1, "stage": 1, "reward_mean": -1.0}, {"iteration": 2, "stage": 1, "reward_mean": 0.0}]
    assert [p.name for p in plot_rl_curves(rows, tmp_path)] == ["rl_reward_mean.png"]
