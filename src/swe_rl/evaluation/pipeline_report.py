"""The report of a whole `swe-rl run`: the paper's table for the held-out set, RL curves, one viewer.

Rows (base, warm start, RFT, RL stage 1, RL stage 2) come from each evaluation's metrics.json
(report.py); the curves from the RL run's metrics.jsonl (one row per iteration); the viewer
(viewer.py) holds every evaluation episode, each named by its row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

COLUMNS = ("model", "pass@1 ± SEM", "pass@K", "format errors", "turns", "tokens", "note")  # turns, tokens: mean per episode
# RL metrics.jsonl key -> plot label: what the paper's training curves show.
CURVES = {
    "resolve_rate": "resolve rate (training rollouts)",
    "reward_mean": "mean reward",
    "turns_mean": "mean turns",
    "tokens_mean": "tokens per trajectory",
    "logprob_gap_mean": "trainer - sampler log-prob gap",
}


def row_record(summary: dict[str, Any]) -> dict[str, Any]:
    """One table row from an evaluation step's summary and its metrics.json."""
    metrics = json.loads((Path(summary["eval_dir"]) / "metrics.json").read_text())
    k = metrics["num_runs"]
    return {
        "row": summary["row"],
        "model": summary["model"],
        "pass_at_1": metrics["pass_at_1"],
        "k": k,
        "pass_at_k": metrics["pass_at_k"].get(str(k)),
        "format_error_rate": metrics["format_error_rate"],
        "mean_turns": metrics["mean_turns"],
        "tokens_per_episode": metrics["completion_tokens"]["mean_per_episode"],
        "tasks": metrics["num_tasks"],
        "dropped_tasks": metrics["dropped"]["tasks"],
        "eval_dir": summary["eval_dir"],
        "same_as": summary.get("same_as", ""),
        "note": summary.get("note", ""),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table_cells(row: dict[str, Any], runs: int) -> tuple[str, ...]:
    p1 = row["pass_at_1"]
    note = row["note"] + (f" (= {row['same_as']} evaluation)" if row["same_as"] else "")
    return (
        row["row"],
        f"{_pct(p1['mean'])} ± {_pct(p1['sem'])}" if p1 else "n/a",
        _pct(row["pass_at_k"]),
        _pct(row["format_error_rate"]),
        f"{row['mean_turns']:.2f}",
        f"{row['tokens_per_episode']:.0f}",
        note.strip(),
    )


def plot_rl_curves(rows: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per curve against the RL iteration, with a dashed line where a new stage starts."""
    from swe_rl.evaluation.plots import _save, plt  # plots.py picks the display-free backend

    paths = []
    starts = [r["iteration"] for prev, r in zip(rows, rows[1:]) if r["stage"] != prev["stage"]]
    for key, label in CURVES.items():
        points = [(r["iteration"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(*zip(*points), marker="o")
        for x in starts:
            ax.axvline(x - 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("RL iteration")
        ax.set_ylabel(label)
        ax.set_title(label + (" (dashed: next stage)" if starts else ""))
        ax.grid(alpha=0.3)
        paths.append(_save(fig, out_dir / f"rl_{key}.png"))
    return paths


def plot_rows(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Held-out pass@1 ± SEM per row: the table's first column as a picture."""
    from swe_rl.evaluation.plots import _save, plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    means = [100 * (r["pass_at_1"]["mean"] if r["pass_at_1"] else 0.0) for r in rows]
    sems = [100 * (r["pass_at_1"]["sem"] if r["pass_at_1"] else 0.0) for r in rows]
    ax.bar([r["row"] for r in rows], means, yerr=sems, capsize=4, color="C0")
    ax.set_ylabel("held-out pass@1 (%)")
    ax.set_ylim(0, max(100.0, max(means, default=0.0)))
    ax.set_title("pass@1 ± SEM by training step")
    ax.tick_params(axis="x", labelrotation=20)
    return _save(fig, path)


def _rl_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols = ("iteration", "stage", "pool_size", "problems", "reward_mean", "resolve_rate", "zero_adv_frac",
            "optimizer_steps", "loss", "logprob_gap_mean", "turns_mean", "tokens_mean")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else "-" if r.get(c) is None else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: dict[str, Any], plots: Sequence[Path]) -> str:
    k = report["runs"]
    lines = [
        "# swe-rl run report", "",
        f"Held-out set: {report['heldout_tasks']} tasks x {k} runs (pass@1 = mean over runs ± SEM; pass@K with K = {k}). "
        f"Training tasks: {len(report['train_ids'])}. Wall time of this invocation: {report['wall_s']:.0f} s.", "",
        "| " + " | ".join(c.replace("pass@K", f"pass@{k}") for c in COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 2) + "---|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in table_cells(r, k)) + " |" for r in report["rows"]]
    lines += ["", "Each row's full report (per-task solve rates, exit reasons, pass@k curve, SWE-bench predictions):", ""]
    lines += [f"- {r['row']}: `{r['eval_dir']}/report.md`" for r in report["rows"]]
    if report["rl"]:
        lines += ["", "## RL iterations", ""] + _rl_table(report["rl"])
    if plots:
        lines += ["", "## Plots (held-out pass@1 by step; RL curves against the iteration)", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    if report["step_wall_s"]:
        lines += ["", "## Wall time per step (s, when it ran)", "", "| step | s |", "|---|---:|"]
        lines += [f"| {name} | {s:.0f} |" for name, s in report["step_wall_s"].items()]
        lines += [f"| total | {sum(report['step_wall_s'].values()):.0f} |"]
    lines += ["", "## Tasks", "", f"- held-out: {', '.join(report['heldout_ids'])}", f"- training: {', '.join(report['train_ids'])}",
              "", f"Trajectory viewer: `{Path(report['viewer']).name}`", ""]
    return "\n".join(lines)


def write_pipeline_report(run_dir: Path, evals: Sequence[dict[str, Any]], *, rl_metrics: Path, train_ids: Sequence[str],
                          heldout_ids: Sequence[str], wall_s: float, step_walls: dict[str, float] | None = None) -> dict[str, Any]:
    """`<run>/report.md`, `report.json`, `rl_*.png` and `viewer.html`; returns report.json's content."""
    from swe_rl.evaluation.viewer import write_viewer
    from swe_rl.recipes.evaluate import TRAJECTORIES
    from swe_rl.rollouts.store import read_trajectories
    from swe_rl.training.metrics_log import read_metrics

    run_dir = Path(run_dir)
    rows = [row_record(e) for e in evals]
    rl = read_metrics(rl_metrics) if Path(rl_metrics).exists() else []
    plots = ([plot_rows(rows, run_dir / "pass_at_1.png")] if rows else []) + plot_rl_curves(rl, run_dir)
    # A reused evaluation appears once in the viewer, under the row that ran it.
    dirs = list(dict.fromkeys(r["eval_dir"] for r in rows))
    viewer = write_viewer(read_trajectories([Path(d) / TRAJECTORIES for d in dirs]), run_dir / "viewer.html",
                          title=f"swe-rl run {run_dir.name}: held-out evaluations")
    report = {
        "rows": rows,
        "runs": rows[0]["k"] if rows else 0,
        "heldout_tasks": len(heldout_ids),
        "heldout_ids": list(heldout_ids),
        "train_ids": list(train_ids),
        "rl": rl,
        "plots": [str(p) for p in plots],
        "viewer": str(viewer),
        "report": str(run_dir / "report.md"),
        "wall_s": round(wall_s, 1),
        "step_wall_s": dict(step_walls or {}),
    }
    (run_dir / "report.md").write_text(render_markdown(report, plots), encoding="utf-8")
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
