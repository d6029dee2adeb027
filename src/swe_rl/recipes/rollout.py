"""`swe-rl rollout`: run G episodes of every task with a policy, grade them, write trajectories, summarise.

tasks -> rollouts.engine.collect (agent.loop.Episode in sandbox.environments.task_sandbox,
graded by rewards.grading.grade in a fresh sandbox) -> traj.jsonl -> evaluation summary.
Episodes, sandboxes and grading run in the engine's threads, or with `executor="ray"` in Ray
actors and tasks (rollouts/ray_executor.py); generation stays here either way.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from swe_rl.agent.loop import AgentConfig, Episode
from swe_rl.config import ConfigError
from swe_rl.types import Task

SCRIPTED_GOLD = "scripted:gold"  # a ScriptedPolicy replaying each task's gold patch with the tools
# A ScriptedPolicy solving synthesized tasks with steps a model can infer from its context (agent/demonstration.py)
SCRIPTED_EXPLORE = "scripted:explore"
# The same, but on every second task its first edit is mis-indented, refused, and written again: it shows a
# model what to do after a refused edit (models cloned from `scripted:explore` alone submit the unchanged file).
SCRIPTED_EXPLORE_RECOVER = "scripted:explore-recover"
SCRIPTED = (SCRIPTED_GOLD, SCRIPTED_EXPLORE, SCRIPTED_EXPLORE_RECOVER)
EXECUTORS = ("thread", "ray")  # where episodes, sandboxes and grading run: this machine, or a Ray cluster


@dataclass(frozen=True)
class RolloutRun:
    """What a rollout run produced (also returned to the demo and evaluation recipes)."""

    out: Path
    metrics: dict
    dropped_tasks: frozenset[str]
    generated_tokens: int
    wall_s: float


def make_policy(model: str, tasks: Sequence[Task], *, device: str = "auto", cache: Path | None = None, tokenizer=None,
                window: int = AgentConfig.window):
    """A policy by name: `scripted:gold`, `scripted:explore[-recover]`, a bundled model name (`smollm2-135m`, `tiny`) or a HF directory.

    tokenizer: for the scripted policies, the tokenizer their trajectories are written in (default SmolLM2's),
    e.g. the one of the model that will be trained on them (recipes/rft.py). window: the viewer height
    the episodes run with; `scripted:explore` checks its fix shows in it.
    """
    if model in SCRIPTED:
        from swe_rl.agent.demonstration import definition_hits, explore_actions, gold_patch_actions, synthesized_function
        from swe_rl.policy.models import smollm2_tokenizer
        from swe_rl.policy.scripted import ScriptedPolicy

        scripts: dict[str, list[str]] = {}
        for i, t in enumerate(tasks):
            actions = gold_patch_actions(t) if model == SCRIPTED_GOLD else \
                explore_actions(t, definition_hits(t, synthesized_function(t)), window,
                                stumble=model == SCRIPTED_EXPLORE_RECOVER and i % 2 == 1)
            if scripts.setdefault(t.problem_statement, actions) != actions:
                raise ValueError(f"{model}: task {t.instance_id} has the problem statement of an earlier task with another "
                                 "fix; a scripted policy knows the task only from the issue text (keep one of them)")

        def action(k: int, prompt_text: str) -> str:
            # The first user message holds the issue: find the episode's task from it.
            for statement, actions in scripts.items():
                if statement in prompt_text:
                    return actions[k] if k < len(actions) else actions[-1]
            raise ValueError(f"{model}: the prompt holds no known task's problem statement")

        return ScriptedPolicy(tokenizer if tokenizer is not None else smollm2_tokenizer(), action,
                              name="scripted" if model == SCRIPTED_GOLD else model)
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
    executor: str = "thread",
    ray_address: str | None = None,
    sandbox: str = "local",  # "local" (bubblewrap) or "docker" (each task's image): episodes and grading
    placement=None,  # a rollouts.ray_executor.RayPlacement for executor="ray" (its sandbox is replaced by `sandbox`)
) -> RolloutRun:
    from swe_rl.evaluation.progress import RolloutProgress
    from swe_rl.evaluation.report import compute_metrics
    from swe_rl.rollouts.engine import RolloutConfig, collect

    # With Ray, grading waits on remote tasks, so a grading thread per episode slot keeps the cluster busy.
    cfg = RolloutConfig(samples=samples, max_active=batch, seed=seed, workers=batch if executor == "ray" else 2)
    with _episode_hooks(executor, policy, agent_cfg, cache, ray_address, batch, sandbox, placement) as hooks, \
            RolloutProgress(_episodes_to_run(tasks, samples, out, resume), quiet=quiet, description=f"rollouts of {policy.name}") as progress:
        result = collect(
            tasks,
            policy,
            agent_cfg.sampling(),
            start_episode=hooks.start_episode,
            open_sandbox=hooks.open_sandbox,
            grade=hooks.grade,
            out=out,
            cfg=cfg,
            resume=resume,
            on_episode=progress.update,
            on_dropped=lambda groups, skipped: progress.dropped(groups, skipped_episodes=skipped),
        )
    metrics = compute_metrics(result.trajectories, dropped_tasks=result.dropped_tasks, model=policy.name)
    generation_s = sum(t.timings.get("generation_s", 0.0) for t in result.trajectories)
    metrics["generated_tokens_this_run"] = result.generated_tokens
    metrics["wall_s_this_run"] = round(result.wall_s, 2)
    metrics["episode_generation_s"] = round(generation_s, 2)
    return RolloutRun(out, metrics, frozenset(result.dropped_tasks), result.generated_tokens, result.wall_s)


def _episodes_to_run(tasks: Sequence[Task], samples: int, out: Path, resume: bool) -> int:
    """The progress bar's total: a resumed run skips the episodes already written."""
    from swe_rl.rollouts.store import iter_trajectories

    wanted = {(t.instance_id, i) for t in tasks for i in range(samples)}
    if resume and out.exists():
        with warnings.catch_warnings():  # a torn last line: the engine warns about it when it repairs it
            warnings.simplefilter("ignore")
            wanted -= {(t.instance_id, t.sample_index) for t in iter_trajectories(out)}
    return len(wanted)


class LocalEpisodes:
    """The engine's hooks on this machine: sandboxes and grading in the engine's threads."""

    def __init__(self, tokenizer, agent_cfg: AgentConfig, cache: Path | None, backend: str = "local") -> None:
        from swe_rl.sandbox.docker import task_sandbox_for
        from swe_rl.sandbox.protocol import Limits

        self.tokenizer, self.agent_cfg, self.cache, self.backend = tokenizer, agent_cfg, cache, backend
        self.limits = Limits(command_timeout_s=agent_cfg.command_timeout_s)
        self._task_sandbox = task_sandbox_for(backend)  # checks the name before any episode starts

    def open_sandbox(self, task: Task):
        return self._task_sandbox(task, self.cache, limits=self.limits)

    def start_episode(self, task: Task, sample_index: int, sandbox) -> Episode:
        return Episode(task, sandbox, self.tokenizer, self.agent_cfg, sample_index=sample_index)

    def grade(self, task: Task, patch: str):
        from swe_rl.rewards.grading import grade

        return grade(task, patch, cache=self.cache, timeout_s=self.agent_cfg.grade_timeout_s, backend=self.backend)


@contextlib.contextmanager
def _episode_hooks(executor: str, policy, agent_cfg: AgentConfig, cache: Path | None, ray_address: str | None, batch: int,
                   sandbox: str = "local", placement=None):
    if executor == "thread":
        yield LocalEpisodes(policy.tokenizer, agent_cfg, cache, backend=sandbox)
    elif executor == "ray":
        from swe_rl.paths import cache_dir
        from dataclasses import replace

        from swe_rl.rollouts.ray_executor import RayPlacement, ray_episodes
        from swe_rl.sandbox.protocol import Limits

        # Ray workers may not share this process's environment ($SWE_RL_CACHE): the cache goes explicitly.
        limits = Limits(command_timeout_s=agent_cfg.command_timeout_s)
        with ray_episodes(policy.tokenizer, agent_cfg, Path(cache) if cache else cache_dir(), limits,
                          address=ray_address, max_active=batch,
                          placement=replace(placement or RayPlacement(), sandbox=sandbox)) as hooks:
            yield hooks
    else:
        raise ValueError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")


@dataclass(frozen=True)
class RunOptions:
    """What `swe-rl rollout` and `swe-rl eval` share: which tasks, which model, its budget, where episodes run."""

    tasks_file: str
    model: str
    cache: Path | None = None
    skip_invalid: bool = False
    instances: tuple[str, ...] = ()  # only these instance ids
    limit: int | None = None  # only the first N tasks
    max_turns: int = 30
    max_new_tokens: int = 512
    context_length: int = 8192
    batch: int = 8  # episodes generating together
    command_timeout_s: float = 60.0
    grade_timeout_s: float = 600.0
    seed: int = 0
    device: str = "auto"
    quiet: bool | None = None  # None: quiet when stdout is not a terminal
    executor: str = "thread"  # one of EXECUTORS
    ray_address: str | None = None
    sandbox: str = "local"  # "local" (bubblewrap, prepared cache) or "docker" (each task's image)

    def __post_init__(self) -> None:
        try:  # bad budgets are reported before a model is loaded or an episode starts
            self.agent_config()
        except ValueError as e:
            raise ConfigError(f"the episode options: {e}") from None

    def agent_config(self) -> AgentConfig:
        return AgentConfig(max_turns=self.max_turns, max_new_tokens=self.max_new_tokens, context_length=self.context_length,
                           command_timeout_s=self.command_timeout_s, grade_timeout_s=self.grade_timeout_s)


def select_tasks(command: str, opts: RunOptions) -> list[Task]:
    """Load the tasks file, keep the chosen instances (or the first `limit`), and check they are prepared."""
    from swe_rl.sandbox.environments import EnvironmentNotPrepared, require_prepared
    from swe_rl.tasks.loaders import load_tasks

    tasks = load_tasks(opts.tasks_file, skip_invalid=opts.skip_invalid)
    if opts.instances:
        unknown = sorted(set(opts.instances) - {t.instance_id for t in tasks})
        if unknown:
            raise SystemExit(f"swe-rl {command}: unknown instance id(s): {', '.join(unknown)}")
        tasks = [t for t in tasks if t.instance_id in set(opts.instances)]
    tasks = tasks[: opts.limit] if opts.limit else tasks
    try:
        if opts.sandbox == "local":  # docker images hold their environment: nothing to prepare
            require_prepared(tasks, opts.cache)
    except EnvironmentNotPrepared as e:
        raise SystemExit(f"swe-rl {command}: {e}") from None
    return tasks


def rollout_cli(opts: RunOptions, samples: int, out: Path, *, resume: bool = False) -> int:
    from swe_rl.evaluation.report import print_summary, summarize

    tasks = select_tasks("rollout", opts)
    policy = make_policy(opts.model, tasks, device=opts.device, cache=opts.cache)
    run = run_rollouts(tasks, policy, opts.agent_config(), out, samples=samples, batch=opts.batch, seed=opts.seed, resume=resume,
                       cache=opts.cache, quiet=opts.quiet, executor=opts.executor, ray_address=opts.ray_address,
                       sandbox=opts.sandbox)
    summary = summarize(run.metrics)
    if run.metrics.get("episode_generation_s"):
        summary["tokens/s (generation)"] = f"{run.metrics['completion_tokens']['total'] / run.metrics['episode_generation_s']:.1f}"
    summary["wall time (this run)"] = f"{run.wall_s:.1f} s"
    print_summary(summary, title=f"swe-rl rollout: {len(tasks)} tasks x {samples} samples -> {out}")
    out.with_suffix(".metrics.json").write_text(json.dumps(run.metrics, indent=2))
    return 0
