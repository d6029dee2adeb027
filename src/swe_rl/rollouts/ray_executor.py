"""Episodes and sandboxes on a Ray cluster, driven by the same rollout engine (rollouts/engine.py).

An `EpisodeActor` owns one sandbox (made by `task_sandbox` on the node the actor runs on) and the
`agent.loop.Episode` in it; grading runs as Ray tasks. The engine and the policy stay in the driver:
its lock-step batch reaches the actors through `RemoteEpisode`, which implements the engine's
`EpisodeLike` and `Closable`. Ray places the actors and carries the calls; nothing here schedules.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from swe_rl.agent.loop import AgentConfig
from swe_rl.sandbox.protocol import Limits
from swe_rl.types import Completion, Grade, Task, Trajectory

ACTOR_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)  # its node or process died: infra, not a bug


@ray.remote
class EpisodeActor:
    """Hosts one episode at a time: `open(task)`, `start(i)`, `step(...)` until done, `trajectory`, `close`.

    Actors are reused for later episodes of the run (a new actor costs a worker process and
    the tokenizer's unpickling, seconds on a small CPU); each episode still gets a fresh sandbox.
    """

    def __init__(self, tokenizer: Any, cfg: AgentConfig, cache: str, limits: Limits) -> None:
        self.tokenizer, self.cfg, self.cache, self.limits = tokenizer, cfg, Path(cache), limits
        self.task: Task | None = None
        self.sandbox = self.episode = None

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def open(self, task: Task) -> None:
        from swe_rl.sandbox.environments import task_sandbox

        self.close()
        self.task = task
        self.sandbox = task_sandbox(task, self.cache, limits=self.limits)

    def start(self, sample_index: int) -> tuple[bool, list[int]]:
        from swe_rl.agent.loop import Episode

        self.episode = Episode(self.task, self.sandbox, self.tokenizer, self.cfg, sample_index=sample_index)
        return self._state()

    def step(self, completion: Completion, generation_s: float) -> tuple[bool, list[int]]:
        self.episode.step(completion, generation_s)
        return self._state()

    def _state(self) -> tuple[bool, list[int]]:
        # The next prompt travels back with the step's answer: the driver never asks for it separately.
        done = self.episode.done
        return done, [] if done else self.episode.prompt_ids()

    def trajectory(self, seed: int | None) -> Trajectory:
        return self.episode.trajectory(None, seed)

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
        self.sandbox = self.episode = None


@ray.remote
def grade_remote(task: Task, patch: str, cache: str) -> Grade:
    from swe_rl.rewards.grading import grade

    return grade(task, patch, cache=Path(cache))


def _lost(task: Task, e: BaseException) -> str:
    return f"task {task.instance_id}: Ray actor lost ({type(e).__name__}: {e})"


class RemoteEpisode:
    """The driver's handle on an `EpisodeActor`: the engine's sandbox (`close`) and episode in one."""

    def __init__(self, actor: Any, task: Task, release: Any) -> None:
        self.actor, self.task, self._release = actor, task, release
        self.sample_index = 0
        self.done = False
        self._prompt: list[int] = []
        self._lost = ""  # set when the actor died mid-episode

    def start(self, sample_index: int) -> RemoteEpisode:
        self.sample_index = sample_index
        self._call(self.actor.start.remote(sample_index))
        return self

    def prompt_ids(self) -> list[int]:
        return self._prompt

    def step(self, completion: Completion, generation_s: float = 0.0) -> bool:
        self._call(self.actor.step.remote(completion, generation_s))
        return self.done

    def _call(self, ref: Any) -> None:
        try:
            self.done, self._prompt = ray.get(ref)
        except ACTOR_LOST as e:
            self.done, self._lost = True, _lost(self.task, e)

    def trajectory(self, policy=None, seed: int | None = None) -> Trajectory:
        if not self._lost:
            try:
                t = ray.get(self.actor.trajectory.remote(seed))
            except ACTOR_LOST as e:
                self._lost = _lost(self.task, e)
        if self._lost:  # the engine retries it, then drops the group
            return Trajectory(self.task.instance_id, self.sample_index, [], [], [], [], [], "sandbox_error", "", seed=seed, error=self._lost)
        if policy is not None:  # the policy lives in the driver, not in the actor
            t.policy_version, t.model = policy.version, policy.name
        return t

    def close(self) -> None:
        healthy = False
        if not self._lost:
            try:
                ray.get(self.actor.close.remote())
                healthy = True
            except ACTOR_LOST:
                pass
        self._release(self.actor, healthy)


class RayEpisodes:
    """The engine's hooks (`open_sandbox`, `start_episode`, `grade`) backed by Ray actors and tasks."""

    def __init__(self, tokenizer: Any, cfg: AgentConfig, cache: Path, limits: Limits, *,
                 episode_cpus: float = 0.0, grade_cpus: float = 1.0) -> None:
        self._tokenizer = ray.put(tokenizer)  # shipped once, not once per actor
        self.cfg, self.cache, self.limits = cfg, str(Path(cache).resolve()), limits
        self.episode_cpus, self.grade_cpus = episode_cpus, grade_cpus
        self._idle: list[Any] = []
        self.actors: list[Any] = []  # every actor created, for shutdown

    def _release(self, actor: Any, healthy: bool) -> None:
        if healthy:
            self._idle.append(actor)  # list.append/pop are atomic: engine threads may race here
        else:
            ray.kill(actor, no_restart=True)

    def open_sandbox(self, task: Task) -> RemoteEpisode:
        try:
            actor = self._idle.pop()
        except IndexError:
            actor = EpisodeActor.options(num_cpus=self.episode_cpus, scheduling_strategy="SPREAD").remote(
                self._tokenizer, self.cfg, self.cache, self.limits)
            self.actors.append(actor)
        handle = RemoteEpisode(actor, task, self._release)
        try:
            ray.get(actor.open.remote(task))
        except ACTOR_LOST:
            self._release(actor, healthy=False)
            raise
        except Exception:  # the sandbox could not start (task not prepared on that node): the actor is fine
            self._release(actor, healthy=True)
            raise
        return handle

    @staticmethod
    def start_episode(task: Task, sample_index: int, handle: RemoteEpisode) -> RemoteEpisode:
        return handle.start(sample_index)

    def grade(self, task: Task, patch: str) -> Grade:
        try:
            return ray.get(grade_remote.options(num_cpus=self.grade_cpus).remote(task, patch, self.cache))
        except ACTOR_LOST as e:  # a worker lost with its node: the engine retries the grading
            return Grade(task.instance_id, "error", False, reason=f"Ray worker lost: {e}")

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors.clear()
        self._idle.clear()


@contextlib.contextmanager
def ray_episodes(tokenizer: Any, cfg: AgentConfig, cache: Path, limits: Limits, *, address: str | None = None,
                 max_active: int = 8, episode_cpus: float = 0.0, grade_cpus: float = 1.0) -> Iterator[RayEpisodes]:
    """Connect to Ray (`address`, or a running `ray.init`, or a new local instance) and yield the hooks.

    The engine generates in lock-step, so all `max_active` episodes and a grading task must fit on
    the cluster at once: otherwise actors (idle ones included) hold the CPUs that the batch or the
    grading waits for, and the run hangs. An episode idles while the policy generates, hence the
    default of 0 CPUs per actor (Ray still spreads them over the nodes); grading runs the tests.
    """
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        cpus = ray.cluster_resources().get("CPU", 0.0)
        need = max_active * episode_cpus + grade_cpus
        if need > cpus:
            raise ValueError(f"Ray cluster has {cpus:g} CPUs, but {max_active} concurrent episodes x {episode_cpus:g} CPU "
                             f"+ {grade_cpus:g} for a grading task need {need:g}: lower the batch, episode_cpus or grade_cpus")
        episodes = RayEpisodes(tokenizer, cfg, cache, limits, episode_cpus=episode_cpus, grade_cpus=grade_cpus)
        try:
            yield episodes
        finally:
            episodes.shutdown()
    finally:
        if started:
            ray.shutdown()
