"""The rollout engine: N tasks x G samples, with every active episode's next turn generated in one batch.

Per step: one `policy.generate` call over all active episodes, each turn sampled with its own seed
(`turn_seed`: the run's seed, the episode and the turn, so a resumed or re-batched run samples what an
uninterrupted one did), then their commands run concurrently in a thread pool; finished episodes are graded
in a second pool while the model generates for the others. Infrastructure failures are retried;
a task whose episode still fails is dropped as a whole group and counted, never scored 0.
Every finished episode is appended and flushed to the output file, so `resume` redoes only the
episodes that were not written.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from swe_rl.agent.loop import turn_seed
from swe_rl.rollouts.store import append_trajectory, iter_trajectories, repair_torn_tail
from swe_rl.types import Completion, Grade, SamplingParams, Task, Trajectory


class EpisodeLike(Protocol):
    """What the engine needs of an episode (agent/loop.py's `Episode`)."""

    done: bool  # an episode may end before its first turn (context limit, broken sandbox)

    def prompt_ids(self) -> list[int]: ...

    def step(self, completion: Completion, generation_s: float = 0.0) -> bool: ...  # True when it ended

    def trajectory(self, policy=None, seed: int | None = None) -> Trajectory: ...


class Closable(Protocol):
    """What the engine needs of a sandbox: a `Sandbox`, or a handle on one elsewhere (rollouts/ray_executor.py)."""

    def close(self) -> None: ...


StartEpisode = Callable[[Task, int, Any], EpisodeLike]  # (task, sample_index, what open_sandbox returned)
OpenSandbox = Callable[[Task], Closable]
GradeFn = Callable[[Task, str], Grade]
OnDropped = Callable[[int, int], None]  # (groups newly dropped, episodes that will now never run)


@dataclass(frozen=True)
class RolloutConfig:
    samples: int = 1  # G: episodes per task
    max_active: int = 8  # episodes generating together: the policy's batch size
    workers: int = 2  # threads grading finished episodes (each in a fresh sandbox)
    max_attempts: int = 3  # tries per episode (and per grading) before its group is dropped
    seed: int = 0
    grade: bool = True  # grade each finished episode in a fresh sandbox
    generate_retries: int = 3  # a failing policy call (server down) is retried, then the run stops


@dataclass
class RolloutResult:
    trajectories: list[Trajectory] = field(default_factory=list)  # this run's and resumed ones
    dropped_tasks: set[str] = field(default_factory=set)  # groups with an infrastructure failure after retries
    generated_tokens: int = 0
    wall_s: float = 0.0
    generation_s: float = 0.0  # wall time inside policy.generate
    steps_s: float = 0.0  # wall time running the batch's commands (parallel) after each generation
    grading_tail_s: float = 0.0  # wall time waiting for gradings after the last generation

    def usable(self) -> list[Trajectory]:
        """Trajectories of groups that were not dropped (what evaluation and training consume)."""
        return [t for t in self.trajectories if t.instance_id not in self.dropped_tasks]


def is_infra_failure(t: Trajectory) -> bool:
    return t.exit_reason == "sandbox_error" or (t.grade is not None and t.grade.status == "error")


def _check_same_run(out: Path, t: Trajectory, model: str, seed: int) -> None:
    """A resume continues the run that wrote `out`: episodes of another model or seed would be counted as this one's."""
    if (t.model and t.model != model) or (t.seed is not None and t.seed != seed):
        raise FileExistsError(f"{out} holds episodes of {t.model!r} sampled with seed {t.seed}, not of {model!r} with "
                              f"seed {seed}: resume only the run that wrote it, or choose another path")


@dataclass
class _Job:
    task: Task
    sample_index: int
    attempt: int = 1


@dataclass
class _Active:
    job: _Job
    sandbox: Closable
    episode: EpisodeLike
    turns: int = 0  # generated so far: the next turn's seed

    def seed(self, run_seed: int) -> int:
        return turn_seed(run_seed, self.job.task.instance_id, self.job.sample_index, self.turns)


def collect(
    tasks: Sequence[Task],
    policy,  # swe_rl.policy.protocol.Policy
    params: SamplingParams,
    start_episode: StartEpisode,
    open_sandbox: OpenSandbox,
    grade: GradeFn | None,
    out: Path,
    cfg: RolloutConfig = RolloutConfig(),
    *,
    resume: bool = False,
    on_episode: Callable[[Trajectory], None] | None = None,
    on_dropped: OnDropped | None = None,
) -> RolloutResult:
    """Run `cfg.samples` episodes of every task, writing each finished one to `out` (JSONL).

    `on_episode` sees every written trajectory; `on_dropped(groups, skipped_episodes)` is told of
    each dropped group as soon as it is dropped, with the episodes of it that will now never run.
    """
    result = RolloutResult()
    started = time.perf_counter()
    done: set[tuple[str, int]] = set()
    if out.exists():
        if not resume:
            raise FileExistsError(f"{out} exists: pass resume=True (--resume) to continue it, or choose another path")
        repair_torn_tail(out)
        for t in iter_trajectories(out):
            _check_same_run(out, t, policy.name, cfg.seed)
            result.trajectories.append(t)
            done.add((t.instance_id, t.sample_index))
            if is_infra_failure(t):
                result.dropped_tasks.add(t.instance_id)
    todo = [_Job(task, i) for task in tasks for i in range(cfg.samples) if (task.instance_id, i) not in done]
    pending = deque(job for job in todo if job.task.instance_id not in result.dropped_tasks)
    if on_dropped is not None and result.dropped_tasks:
        on_dropped(len(result.dropped_tasks), len(todo) - len(pending))

    lock = threading.Lock()  # grading threads finish episodes too
    newly_dropped: list[str] = []  # filled under `lock`; the main thread purges their pending jobs

    def finish(t: Trajectory, dropped: bool = False) -> None:
        with lock:
            if dropped and t.instance_id not in result.dropped_tasks:
                result.dropped_tasks.add(t.instance_id)
                newly_dropped.append(t.instance_id)
            result.trajectories.append(t)
            append_trajectory(out, t)
            if on_episode is not None:
                on_episode(t)

    def report_dropped() -> None:  # main thread only: it owns `pending`
        with lock:
            ids = set(newly_dropped)
            newly_dropped.clear()
        if not ids:
            return
        kept = [job for job in pending if job.task.instance_id not in ids]
        skipped = len(pending) - len(kept)
        pending.clear()
        pending.extend(kept)
        if on_dropped is not None:
            on_dropped(len(ids), skipped)

    def retry_or_drop(job: _Job, t: Trajectory) -> None:  # main thread only: it owns `pending`
        if job.attempt < cfg.max_attempts and job.task.instance_id not in result.dropped_tasks:
            pending.appendleft(replace(job, attempt=job.attempt + 1))
        else:
            finish(t, dropped=True)

    def grade_and_finish(task: Task, t: Trajectory) -> None:
        if grade is not None:
            for _ in range(cfg.max_attempts):
                t.grade = grade(task, t.patch)
                if t.grade.status != "error":
                    break
        finish(t, dropped=t.grade is not None and t.grade.status == "error")

    active: list[_Active] = []
    grading: list[Future] = []

    def end_episode(a: _Active) -> None:
        t = a.episode.trajectory(policy, cfg.seed)
        a.sandbox.close()
        if t.exit_reason == "sandbox_error":
            retry_or_drop(a.job, t)
        else:
            grading.append(graders.submit(grade_and_finish, a.job.task, t))
    with ThreadPoolExecutor(cfg.max_active) as pool, ThreadPoolExecutor(cfg.workers) as graders:
        try:
            while pending or active:
                report_dropped()
                # Fill free slots; sandboxes start concurrently.
                starting = []
                while pending and len(active) + len(starting) < cfg.max_active:
                    job = pending.popleft()
                    if job.task.instance_id in result.dropped_tasks:  # dropped by a grader since report_dropped
                        if on_dropped is not None:
                            on_dropped(0, 1)
                        continue
                    starting.append((job, pool.submit(open_sandbox, job.task)))
                ended_early: list[_Active] = []
                for job, fut in starting:
                    sandbox = None
                    try:
                        sandbox = fut.result()
                        episode = start_episode(job.task, job.sample_index, sandbox)
                    except Exception as e:  # noqa: BLE001 - an infra failure of one episode, counted below
                        if sandbox is not None:
                            sandbox.close()
                        failed = Trajectory(job.task.instance_id, job.sample_index, [], [], [], [], [], "sandbox_error", "", error=f"{type(e).__name__}: {e}")
                        retry_or_drop(job, failed)
                        continue
                    (ended_early if episode.done else active).append(_Active(job, sandbox, episode))
                for a in ended_early:
                    end_episode(a)
                if not active:
                    continue

                gen_started = time.perf_counter()
                completions = _generate(policy, [a.episode.prompt_ids() for a in active], params, [a.seed(cfg.seed) for a in active],
                                        cfg.generate_retries)
                gen_wall = time.perf_counter() - gen_started
                result.generation_s += gen_wall
                gen_s = gen_wall / len(active)  # the batch's time, shared
                for a in active:
                    a.turns += 1
                result.generated_tokens += sum(len(c.token_ids) for c in completions)
                steps_started = time.perf_counter()
                ended = list(pool.map(lambda ac: ac[0].episode.step(ac[1], gen_s), zip(active, completions)))
                result.steps_s += time.perf_counter() - steps_started
                for a, is_done in zip(active, ended):
                    if is_done:
                        end_episode(a)
                active = [a for a, is_done in zip(active, ended) if not is_done]
                # Surface grading crashes (bugs, not infra) instead of losing them.
                for fut in [g for g in grading if g.done()]:
                    grading.remove(fut)
                    fut.result()
            tail_started = time.perf_counter()
            for fut in grading:
                fut.result()
            result.grading_tail_s = time.perf_counter() - tail_started
            report_dropped()
        finally:  # a crash (a bug, Ctrl-C) must not leave sandboxes running
            for a in active:
                a.sandbox.close()
    result.wall_s = time.perf_counter() - started
    return result


def _generate(policy, prompts: list[list[int]], params: SamplingParams, seeds: list[int], retries: int) -> list[Completion]:
    for attempt in range(1, retries + 1):
        try:
            return policy.generate(prompts, params, seeds)
        except (ConnectionError, TimeoutError, OSError):
            if attempt == retries:
                raise
            time.sleep(min(2.0**attempt, 30.0))
    raise AssertionError("unreachable")
