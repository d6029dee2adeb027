"""The evaluation report: finished trajectories of K runs -> metrics.json, report.md and PNG plots.

Runs are told apart by `Trajectory.sample_index`. A task with an infrastructure failure (a
sandbox error or an "error" grade) in any run, or dropped by the rollout engine, is left out of
every score and counted instead (DESIGN.md: infra failure is never a 0). The numbers come from
metrics.py; plots.py draws them; `summarize` gives the headline rows the CLI prints.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from swe_rl.evaluation.metrics import mean_and_sem, mean_pass_at_k, pass_at_1_over_runs
from swe_rl.rollouts.engine import is_infra_failure
from swe_rl.types import Trajectory


def completion_tokens(t: Trajectory) -> int:
    """Tokens the policy sampled in this episode (all turns)."""
    return sum(turn.completion_tokens for turn in t.turns)


def scored_trajectories(trajectories: Sequence[Trajectory], dropped_tasks: Iterable[str] = ()) -> tuple[list[Trajectory], list[str]]:
    """The trajectories that count for the scores, and the sorted ids of the dropped tasks."""
    dropped = set(dropped_tasks) | {t.instance_id for t in trajectories if is_infra_failure(t)}
    return [t for t in trajectories if t.instance_id not in dropped], sorted(dropped)


def resolved_by_task(scored: Sequence[Trajectory]) -> tuple[dict[str, list[bool]], list[int]]:
    """`{task: [resolved in run r for r in runs]}` and the sorted run indices; every task needs every run once."""
    runs = sorted({t.sample_index for t in scored})
    cells: dict[str, dict[int, bool]] = {}
    for t in scored:
        if t.grade is None:
            raise ValueError(f"task {t.instance_id} run {t.sample_index}: trajectory is not graded (evaluate graded trajectories)")
        per_run = cells.setdefault(t.instance_id, {})
        if t.sample_index in per_run:
            raise ValueError(f"task {t.instance_id} run {t.sample_index}: two trajectories for the same run")
        per_run[t.sample_index] = t.grade.resolved
    for task, per_run in cells.items():
        missing = [r for r in runs if r not in per_run]
        if missing:
            raise ValueError(f"task {task}: no trajectory for run(s) {missing} (runs present: {runs}); finish or resume the run first")
    return {task: [cells[task][r] for r in runs] for task in sorted(cells)}, runs


def compute_metrics(trajectories: Sequence[Trajectory], *, dropped_tasks: Iterable[str] = (), model: str = "") -> dict[str, Any]:
    """Every number of the report. Episode statistics (turns, tokens, format errors) cover scored episodes;
    exit-reason counts cover every episode given, so infrastructure failures show up there too."""
    scored, dropped = scored_trajectories(trajectories, dropped_tasks)
    resolved, runs = resolved_by_task(scored)
    k_max = len(runs)
    metrics: dict[str, Any] = {
        "model": model,
        "num_tasks": len(resolved),
        "num_runs": k_max,
        "runs": runs,
        "num_episodes": len(trajectories),
        "num_scored_episodes": len(scored),
        "pass_at_1": None,
        "run_resolve_rates": {},
        "pass_at_k": {},
        "per_task": {},
    }
    if resolved:
        mean, sem = pass_at_1_over_runs(resolved)
        metrics["pass_at_1"] = {"mean": mean, "sem": sem}
        metrics["run_resolve_rates"] = {str(r): sum(v[i] for v in resolved.values()) / len(resolved) for i, r in enumerate(runs)}
        metrics["pass_at_k"] = {str(k): mean_pass_at_k(resolved, k) for k in range(1, k_max + 1)}
        metrics["per_task"] = {task: {"resolved": sum(v), "runs": len(v), "solve_rate": sum(v) / len(v)} for task, v in resolved.items()}
    turns_total = sum(t.num_turns for t in scored)
    format_errors = sum(1 for t in scored for turn in t.turns if turn.format_error)
    tokens = [completion_tokens(t) for t in scored]
    metrics.update(
        exit_reasons=dict(sorted(Counter(t.exit_reason for t in trajectories).items())),
        turns_total=turns_total,
        format_error_turns=format_errors,
        format_error_rate=format_errors / turns_total if turns_total else 0.0,
        mean_turns=turns_total / len(scored) if scored else 0.0,
        completion_tokens={
            "mean_per_episode": sum(tokens) / len(tokens) if tokens else 0.0,
            "sem_per_episode": mean_and_sem(tokens)[1] if tokens else 0.0,
            "max_per_episode": max(tokens, default=0),
            "total": sum(tokens),
        },
        dropped={
            "tasks": dropped,
            "count": len(dropped),
            "infra_failed_episodes": sum(1 for t in trajectories if is_infra_failure(t)),
        },
    )
    return metrics


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summarize(metrics: dict[str, Any]) -> dict[str, str]:
    """Headline rows (label -> formatted value) for a terminal table or the report's first table."""
    p1 = metrics["pass_at_1"]
    k = metrics["num_runs"]
    tok = metrics["completion_tokens"]
    rows = {
        f"pass@1 (mean ± SEM over {k} run{'s' if k != 1 else ''})": f"{_pct(p1['mean'])} ± {_pct(p1['sem'])}" if p1 else "n/a (no scored task)",
    }
    if k > 1:
        rows[f"pass@{k}"] = _pct(metrics["pass_at_k"][str(k)])
    rows.update({
        "tasks scored": str(metrics["num_tasks"]),
        "episodes (scored / all)": f"{metrics['num_scored_episodes']} / {metrics['num_episodes']}",
        "dropped tasks (infrastructure)": f"{metrics['dropped']['count']} ({metrics['dropped']['infra_failed_episodes']} failed episodes)",
        "mean turns": f"{metrics['mean_turns']:.2f}",
        "completion tokens / episode": f"{tok['mean_per_episode']:.1f} ± {tok['sem_per_episode']:.1f}",
        "completion tokens total": f"{tok['total']:,}",
        "format-error rate (turns)": f"{_pct(metrics['format_error_rate'])} ({metrics['format_error_turns']} / {metrics['turns_total']})",
        "exit reasons": ", ".join(f"{r} {n}" for r, n in metrics["exit_reasons"].items()) or "none",
    })
    return rows


def print_summary(summary: dict[str, str], title: str = "evaluation", console: Any = None) -> None:
    """Print `summarize`'s rows as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in summary.items():
        table.add_row(label, value)
    (console or Console()).print(table)


def _cell(text: object) -> str:
    """A Markdown table cell: task ids come from data files, so a `|` or a newline must not break the table."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def render_markdown(metrics: dict[str, Any], plots: Sequence[Path] = (), title: str = "Evaluation report") -> str:
    lines = [f"# {_cell(title)}", ""]
    if metrics["model"]:
        lines += [f"Model: `{_cell(metrics['model'])}`", ""]
    lines += ["| metric | value |", "|---|---:|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in summarize(metrics).items()]
    if metrics["pass_at_k"]:
        lines += ["", "## pass@k (unbiased estimator, Chen et al. 2021)", "", "| k | pass@k |", "|---:|---:|"]
        lines += [f"| {k} | {_pct(v)} |" for k, v in metrics["pass_at_k"].items()]
        lines += ["", "## Resolve rate per run", "", "| run | resolved |", "|---:|---:|"]
        lines += [f"| {r} | {_pct(v)} |" for r, v in metrics["run_resolve_rates"].items()]
    total = max(metrics["num_episodes"], 1)
    lines += ["", "## Exit reasons (all episodes)", "", "| exit reason | episodes | share |", "|---|---:|---:|"]
    lines += [f"| {_cell(r)} | {n} | {_pct(n / total)} |" for r, n in metrics["exit_reasons"].items()]
    if metrics["per_task"]:
        lines += ["", "## Per-task solve rates", "", "| task | resolved / runs | solve rate |", "|---|---:|---:|"]
        ordered = sorted(metrics["per_task"].items(), key=lambda kv: (-kv[1]["solve_rate"], kv[0]))
        lines += [f"| {_cell(task)} | {v['resolved']} / {v['runs']} | {_pct(v['solve_rate'])} |" for task, v in ordered]
    if metrics["dropped"]["tasks"]:
        lines += ["", "## Dropped tasks (infrastructure failures, not scored)", ""]
        lines += [f"- {_cell(task)}" for task in metrics["dropped"]["tasks"]]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(
    trajectories: Sequence[Trajectory],
    out_dir: Path,
    *,
    dropped_tasks: Iterable[str] = (),
    model: str = "",
    title: str = "Evaluation report",
    plots: bool = True,
) -> dict[str, Any]:
    """Write `metrics.json`, `report.md` and the PNG plots into `out_dir`; return the metrics."""
    from swe_rl.evaluation.plots import write_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dropped_tasks = set(dropped_tasks)  # used twice below: an iterator would be empty the second time
    metrics = compute_metrics(trajectories, dropped_tasks=dropped_tasks, model=model)
    scored, _ = scored_trajectories(trajectories, dropped_tasks)
    pngs = write_plots(metrics, [t.num_turns for t in scored], [completion_tokens(t) for t in scored], out_dir) if plots else []
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(metrics, pngs, title), encoding="utf-8")
    return metrics
