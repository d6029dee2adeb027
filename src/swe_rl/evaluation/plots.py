"""PNG plots of an evaluation report: pass@k curve, per-task solve-rate histogram, turns and tokens.

matplotlib with the Agg backend (no display needed, safe in worker threads and CI); each figure
is created and closed here so a long training run does not accumulate them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_pass_at_k(pass_at_k: dict[str, float], path: Path, p1_sem: float = 0.0) -> Path:
    ks = [int(k) for k in pass_at_k]
    values = [100 * v for v in pass_at_k.values()]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, values, marker="o")
    if ks:
        ax.errorbar([ks[0]], [values[0]], yerr=[100 * p1_sem], fmt="none", capsize=4, color="C0")
    ax.set_xlabel("k (samples per task)")
    ax.set_ylabel("pass@k (%)")
    ax.set_title("pass@k (unbiased estimator)")
    ax.set_xticks(ks)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_solve_rates(solve_rates: Sequence[float], runs: int, path: Path) -> Path:
    # With K runs a task's solve rate is one of 0, 1/K, ..., 1: one bar per possible value.
    counts = [sum(1 for s in solve_rates if round(s * runs) == i) for i in range(runs + 1)]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar([f"{i}/{runs}" for i in range(runs + 1)], counts, color="C2")
    ax.set_xlabel("runs that resolved the task")
    ax.set_ylabel("tasks")
    ax.set_title("Per-task solve rate")
    return _save(fig, path)


def plot_distribution(values: Sequence[int], xlabel: str, title: str, path: Path, color: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    distinct = len(set(values))
    ax.hist(values, bins=max(1, min(30, distinct)), color=color, edgecolor="white")
    if values:
        mean = sum(values) / len(values)
        ax.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.1f}")
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("episodes")
    ax.set_title(title)
    return _save(fig, path)


def write_plots(metrics: dict[str, Any], turns: Sequence[int], tokens: Sequence[int], out_dir: Path) -> list[Path]:
    """The four report plots; the two score plots are skipped when no task was scored."""
    out_dir = Path(out_dir)
    paths = []
    if metrics["pass_at_k"]:
        sem = metrics["pass_at_1"]["sem"] if metrics["pass_at_1"] else 0.0
        paths.append(plot_pass_at_k(metrics["pass_at_k"], out_dir / "pass_at_k.png", sem))
        rates = [v["solve_rate"] for v in metrics["per_task"].values()]
        paths.append(plot_solve_rates(rates, metrics["num_runs"], out_dir / "solve_rates.png"))
    paths.append(plot_distribution(turns, "turns per episode", "Turns", out_dir / "turns.png", "C1"))
    paths.append(plot_distribution(tokens, "completion tokens per episode", "Completion tokens", out_dir / "tokens.png", "C4"))
    return paths
