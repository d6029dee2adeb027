import json

import matplotlib.image
import pytest

from swe_rl.evaluation.report import compute_metrics, render_markdown, summarize, write_report
from tests.evaluation.conftest import trajectory

PATCH = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"


def three_runs() -> list:
    """Tasks A (3/3 resolved), B (run 1 only), C (never), D (a sandbox error in run 0: dropped)."""
    ts = []
    for r in range(3):
        ts.append(trajectory("A", r, True, tokens=(10, 20), patch=PATCH))
        ts.append(trajectory("B", r, r == 1, tokens=(5, 5, 5), format_errors=1, patch=PATCH))
        ts.append(trajectory("C", r, False, tokens=(100,), exit_reason="turn_limit"))
    ts.append(trajectory("D", 0, None, tokens=(), exit_reason="sandbox_error", error="sandbox died"))
    for r in (1, 2):  # D's other runs finished, but a group with an infra failure never counts
        ts.append(trajectory("D", r, True, tokens=(7, 7, 7, 7), format_errors=1))
    return ts


def test_metrics_match_hand_computed_values() -> None:
    m = compute_metrics(three_runs(), dropped_tasks=["E"], model="m")
    assert (m["num_tasks"], m["num_runs"], m["num_episodes"], m["num_scored_episodes"]) == (3, 3, 12, 9)
    # Per-run resolve rates 1/3, 2/3, 1/3: mean 4/9; SEM = sqrt(((1/9)^2 + (2/9)^2 + (1/9)^2) / 2 / 3) = 1/9.
    assert m["run_resolve_rates"] == pytest.approx({"0": 1 / 3, "1": 2 / 3, "2": 1 / 3})
    assert m["pass_at_1"]["mean"] == pytest.approx(4 / 9)
    assert m["pass_at_1"]["sem"] == pytest.approx(1 / 9)
    # B (n=3, c=1): pass@2 = 1 - C(2,2)/C(3,2) = 2/3, so pass@2 = (1 + 2/3 + 0) / 3; pass@3 = (1 + 1 + 0) / 3.
    assert m["pass_at_k"] == pytest.approx({"1": 4 / 9, "2": 5 / 9, "3": 2 / 3})
    assert m["per_task"] == {
        "A": {"resolved": 3, "runs": 3, "solve_rate": 1.0},
        "B": {"resolved": 1, "runs": 3, "solve_rate": pytest.approx(1 / 3)},
        "C": {"resolved": 0, "runs": 3, "solve_rate": 0.0},
    }
    # Exit reasons count every episode given; the rest only the 9 scored ones.
    assert m["exit_reasons"] == {"sandbox_error": 1, "submitted": 8, "turn_limit": 3}
    assert (m["turns_total"], m["format_error_turns"]) == (18, 3)
    assert m["format_error_rate"] == pytest.approx(1 / 6)
    assert m["mean_turns"] == pytest.approx(2.0)
    assert m["completion_tokens"]["total"] == 3 * (30 + 15 + 100)
    assert m["completion_tokens"]["mean_per_episode"] == pytest.approx(435 / 9)
    assert m["completion_tokens"]["max_per_episode"] == 100
    assert m["dropped"] == {"tasks": ["D", "E"], "count": 2, "infra_failed_episodes": 1}


def test_an_error_grade_drops_the_task_like_a_sandbox_error() -> None:
    ts = [trajectory("A", 0, True), trajectory("B", 0, None, grade_status="error")]
    m = compute_metrics(ts)
    assert m["per_task"].keys() == {"A"} and m["pass_at_1"] == {"mean": 1.0, "sem": 0.0}
    assert m["dropped"]["tasks"] == ["B"]


@pytest.mark.parametrize(
    "ts,match",
    [
        ([trajectory("A", 0, True), trajectory("A", 1, True), trajectory("B", 0, False)], r"task B: no trajectory for run\(s\) \[1\]"),
        ([trajectory("A", 0, True), trajectory("A", 0, False)], "task A run 0: two trajectories"),
        ([trajectory("A", 0, None)], "task A run 0: trajectory is not graded"),
    ],
)
def test_inconsistent_runs_are_errors_that_name_the_task(ts: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(ts)


def test_nothing_scored_still_reports() -> None:
    m = compute_metrics([trajectory("A", 0, None, tokens=(), exit_reason="sandbox_error")])
    assert m["pass_at_1"] is None and m["pass_at_k"] == {} and m["num_tasks"] == 0
    assert summarize(m)["pass@1 (mean ± SEM over 0 runs)"] == "n/a (no scored task)"


def test_summary_rows() -> None:
    s = summarize(compute_metrics(three_runs(), dropped_tasks=["E"]))
    assert s["pass@1 (mean ± SEM over 3 runs)"] == "44.4% ± 11.1%"
    assert s["pass@3"] == "66.7%"
    assert s["format-error rate (turns)"] == "16.7% (3 / 18)"
    assert s["dropped tasks (infrastructure)"] == "2 (1 failed episodes)"
    assert s["exit reasons"] == "sandbox_error 1, submitted 8, turn_limit 3"


def test_write_report_files(tmp_path) -> None:
    metrics = write_report(three_runs(), tmp_path, dropped_tasks={"E"}, model="smollm2-135m")
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    md = (tmp_path / "report.md").read_text()
    assert "| pass@1 (mean ± SEM over 3 runs) | 44.4% ± 11.1% |" in md
    assert "| 2 | 55.6% |" in md  # pass@2 row
    assert "| B | 1 / 3 | 33.3% |" in md
    assert "| sandbox_error | 1 | 8.3% |" in md
    assert "- D\n- E" in md
    for name in ("pass_at_k", "solve_rates", "turns", "tokens"):
        png = tmp_path / f"{name}.png"
        assert f"![{name}]({name}.png)" in md
        pixels = matplotlib.image.imread(png)
        assert pixels.shape[0] > 200 and pixels.std() > 0.05, f"{png} looks blank"


def test_markdown_cells_cannot_break_the_table() -> None:
    m = compute_metrics([trajectory("evil|task\n<b>", 0, True)])
    md = render_markdown(m)
    assert "| evil\\|task &lt;b> | 1 / 1 | 100.0% |" in md
