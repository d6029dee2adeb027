"""`swe-rl eval`: K runs of every task with a model -> pass@1 ± SEM, pass@k, preds, report, plots, viewer.

Run r is sample r of every task (`Trajectory.sample_index`), produced by the rollout engine in one
go (recipes/rollout.py `run_rollouts`); the files come from evaluation/ (predictions.py, report.py,
viewer.py). Tasks dropped for infrastructure failures are left out of the scores and of the preds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from swe_rl.agent.loop import AgentConfig
from swe_rl.types import Task

TRAJECTORIES = "trajectories.jsonl"


@dataclass(frozen=True)
class EvalRun:
    out_dir: Path
    metrics: dict
    preds: dict[int, Path]  # run index -> SWE-bench preds.jsonl
    report: Path
    viewer: Path
    wall_s: float


def evaluate(tasks: Sequence[Task], policy, agent_cfg: AgentConfig, out_dir: Path, *, runs: int, resume: bool = False,
             **rollout_options) -> EvalRun:
    """Run, grade and report `runs` episodes of every task into `out_dir`; `resume` continues a killed run.

    `rollout_options` go to `run_rollouts` as they are: batch, seed, cache, quiet, executor, ray_address.
    """
    from swe_rl.evaluation.predictions import write_run_preds
    from swe_rl.evaluation.report import scored_trajectories, write_report
    from swe_rl.evaluation.viewer import write_viewer
    from swe_rl.recipes.rollout import run_rollouts
    from swe_rl.rollouts.store import read_trajectories

    if runs < 1:
        raise ValueError(f"swe-rl eval: --runs must be >= 1, got {runs}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rollout = run_rollouts(tasks, policy, agent_cfg, out_dir / TRAJECTORIES, samples=runs, resume=resume, **rollout_options)
    ids = {t.instance_id for t in tasks}  # a resumed file holds only these, unless the task list changed
    trajectories = [t for t in read_trajectories(rollout.out) if t.instance_id in ids and t.sample_index < runs]
    title = f"{policy.name}: {len(tasks)} tasks x {runs} run{'s' if runs != 1 else ''}"
    metrics = write_report(trajectories, out_dir, dropped_tasks=rollout.dropped_tasks, model=policy.name, title=title)
    # A dropped task gets no prediction: the harness would count an empty patch as unresolved.
    scored, _ = scored_trajectories(trajectories, rollout.dropped_tasks)
    preds = write_run_preds(scored, out_dir, policy.name)
    viewer = write_viewer(trajectories, out_dir / "viewer.html", title=title)
    return EvalRun(out_dir, metrics, preds, out_dir / "report.md", viewer, rollout.wall_s)


def evaluate_cli(opts, runs: int, out_dir: Path, *, resume: bool = False) -> int:
    """`swe-rl eval`; `opts` is a recipes.rollout.RunOptions."""
    from swe_rl.evaluation.report import print_summary, summarize
    from swe_rl.recipes.rollout import make_policy, select_tasks

    tasks = select_tasks("eval", opts)
    policy = make_policy(opts.model, tasks, device=opts.device, cache=opts.cache)
    try:
        run = evaluate(tasks, policy, opts.agent_config(), out_dir, runs=runs, batch=opts.batch, seed=opts.seed, resume=resume,
                       cache=opts.cache, quiet=opts.quiet, executor=opts.executor, ray_address=opts.ray_address,
                       sandbox=opts.sandbox)
    except FileExistsError as e:
        raise SystemExit(f"swe-rl eval: {e}") from None
    summary = summarize(run.metrics)
    summary["wall time (this run)"] = f"{run.wall_s:.1f} s ({opts.executor} executor)"
    print_summary(summary, title=f"swe-rl eval: {len(tasks)} tasks x {runs} runs of {policy.name}")
    print(f"report: {run.report}\nmetrics: {out_dir / 'metrics.json'}\nviewer: {run.viewer}")
    print("SWE-bench predictions: " + ", ".join(str(p) for p in run.preds.values()))
    return 0
