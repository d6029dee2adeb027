"""`swe-rl rollout`: run G episodes of every task with a policy, grade them, write trajectories, summarise.

tasks -> rollouts.engine.collect (agent.loop.Episode in sandbox.environments.task_sandbox,
graded by rewards.grading.grade in a fresh sandbox) -> traj.jsonl -> evaluation summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from swe_rl.agent.loop import AgentConfig, Episode
from swe_rl.types import Task

SCRIPTED_GOLD = "scripted:gold"  # a ScriptedPolicy replaying each task's gold patch with the tools


@dataclass(frozen=True)
class RolloutRun:
    """What a rollout run produced (also returned to the demo and evaluation recipes)."""

    out: Path
    metrics: dict
    dropped_tasks: frozenset[str]
    generated_tokens: int
    wall_s: float


def make_policy(model: str, tasks: Sequence[Task], *, device: str = "auto", cache: Path | None = None):
    """A policy by name: `scripted:gold`, a bundled model name (`smollm2-135m`, `tiny`) or a HF directory."""
    if model == SCRIPTED_GOLD:
        from swe_rl.agent.demonstration import gold_patch_actions
        from swe_rl.policy.models import smollm2_tokenizer
        from swe_rl.policy.scripted import ScriptedPolicy

        scripts = {t.problem_statement: gold_patch_actions(t) for t in tasks}

        def action(k: int, prompt_text: str) -> str:
            # The first user message holds the issue: find the episode's task from it.
            for statement, actions in scripts.items():
                if statement in prompt_text:
                    return actions[k] if k < len(actions) else actions[-1]
            raise ValueError("scripted:gold: the prompt holds no known task's problem statement")

        return ScriptedPolicy(smollm2_tokenizer(), action)
    from swe_rl.policy.hf import HFPolicy
    from swe_rl.policy.models import resolve_model

    return HFPolicy(resolve_model(model, cache), device=device, name=model)


def run_rollouts(
    tasks: Sequence[Task],
    policy,
    agent_cfg: AgentConfig,
    out: Path,
    *,
    samples: int,
    batch: int = 8,
    seed: int = 0,
    resume: bool = False,
    cache: Path | None = None,
    quiet: bool | None = None,
) -> RolloutRun:
    from swe_rl.evaluation.progress import RolloutProgress
    from swe_rl.evaluation.report import compute_metrics
    from swe_rl.rewards.grading import grade
    from swe_rl.rollouts.engine import RolloutConfig, collect
    from swe_rl.sandbox.environments import task_sandbox
    from swe_rl.sandbox.protocol import Limits

    limits = Limits(command_timeout_s=agent_cfg.command_timeout_s)
    cfg = RolloutConfig(samples=samples, max_active=batch, seed=seed)
    with RolloutProgress(len(tasks) * samples, quiet=quiet, description=f"rollouts of {policy.name}") as progress:
        result = collect(
            tasks,
            policy,
            agent_cfg.sampling(),
            start_episode=lambda task, i, sandbox: Episode(task, sandbox, policy.tokenizer, agent_cfg, sample_index=i),
            open_sandbox=lambda task: task_sandbox(task, cache, limits=limits),
            grade=lambda task, patch: grade(task, patch, cache=cache),
            out=out,
            cfg=cfg,
            resume=resume,
            on_episode=progress.update,
        )
        progress.dropped(len(result.dropped_tasks))
    metrics = compute_metrics(result.trajectories, dropped_tasks=result.dropped_tasks, model=policy.name)
    generation_s = sum(t.timings.get("generation_s", 0.0) for t in result.trajectories)
    metrics["generated_tokens_this_run"] = result.generated_tokens
    metrics["wall_s_this_run"] = round(result.wall_s, 2)
    metrics["episode_generation_s"] = round(generation_s, 2)
    return RolloutRun(out, metrics, frozenset(result.dropped_tasks), result.generated_tokens, result.wall_s)


def rollout_cli(
    tasks_file: str,
    model: str,
    samples: int,
    out: Path,
    *,
    resume: bool = False,
    cache: Path | None = None,
    skip_invalid: bool = False,
    instances: Sequence[str] = (),
    limit: int | None = None,
    max_turns: int = 30,
    max_new_tokens: int = 512,
    context_length: int = 8192,
    batch: int = 8,
    seed: int = 0,
    device: str = "auto",
    quiet: bool | None = None,
) -> int:
    from swe_rl.evaluation.report import print_summary, summarize
    from swe_rl.sandbox.environments import EnvironmentNotPrepared, require_prepared
    from swe_rl.tasks.loaders import load_tasks

    tasks = load_tasks(tasks_file, skip_invalid=skip_invalid)
    if instances:
        unknown = sorted(set(instances) - {t.instance_id for t in tasks})
        if unknown:
            raise SystemExit(f"swe-rl rollout: unknown instance id(s): {', '.join(unknown)}")
        tasks = [t for t in tasks if t.instance_id in set(instances)]
    tasks = tasks[:limit] if limit else tasks
    try:
        require_prepared(tasks, cache)
    except EnvironmentNotPrepared as e:
        raise SystemExit(f"swe-rl rollout: {e}") from None
    agent_cfg = AgentConfig(max_turns=max_turns, max_new_tokens=max_new_tokens, context_length=context_length)
    policy = make_policy(model, tasks, device=device, cache=cache)
    run = run_rollouts(tasks, policy, agent_cfg, out, samples=samples, batch=batch, seed=seed, resume=resume, cache=cache, quiet=quiet)
    summary = summarize(run.metrics)
    if run.metrics.get("episode_generation_s"):
        summary["tokens/s (generation)"] = f"{run.metrics['completion_tokens']['total'] / run.metrics['episode_generation_s']:.1f}"
    summary["wall time (this run)"] = f"{run.wall_s:.1f} s"
    print_summary(summary, title=f"swe-rl rollout: {len(tasks)} tasks x {samples} samples -> {out}")
    out.with_suffix(".metrics.json").write_text(json.dumps(run.metrics, indent=2))
    return 0
