"""Episodes and sandboxes on a Ray cluster, driven by the same rollout engine (rollouts/engine.py).

An `EpisodeActor` owns one sandbox (local bubblewrap or docker, made on the node the actor runs on)
and the `agent.loop.Episode` in it; grading runs as Ray tasks. The engine stays in the driver: its
lock-step batch reaches the actors through `RemoteEpisode` (the engine's `EpisodeLike` and `Closable`).
The policy runs in the driver, or in a `GenerationActor` on a GPU node (`remote_policy`). What each
actor and task reserves is a `RayPlacement`; Ray places them, nothing here schedules. Guide: docs/ray.md.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from swe_rl.agent.loop import AgentConfig
from swe_rl.sandbox.protocol import Limits
from swe_rl.types import Completion, Grade, SamplingParams, Task, Trajectory

ACTOR_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)  # its node or process died: infra, not a bug
STRATEGIES = ("SPREAD", "DEFAULT")


@dataclass(frozen=True)
class RayPlacement:
    """What each episode actor and grading task reserves, where they go, and which sandbox backend they use.

    An episode idles while the policy generates, hence 0 CPUs per actor by default (Ray still spreads
    them); grading runs the tests. `*_resources` are custom Ray resources, e.g. {"sandbox": 1} with
    nodes started as `ray start --resources '{"sandbox": 8}'` to keep sandboxes off the GPU nodes.
    `strategy`: "SPREAD" (across nodes) or "DEFAULT" (Ray packs them). `sandbox`: "local" or "docker".
    """

    episode_cpus: float = 0.0
    episode_memory_mb: int = 0
    episode_resources: Mapping[str, float] = field(default_factory=dict)
    grade_cpus: float = 1.0
    grade_memory_mb: int = 0
    grade_resources: Mapping[str, float] = field(default_factory=dict)
    strategy: str = "SPREAD"
    sandbox: str = "local"

    def __post_init__(self) -> None:
        from swe_rl.sandbox.docker import BACKENDS

        if self.strategy not in STRATEGIES:
            raise ValueError(f"RayPlacement.strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if self.sandbox not in BACKENDS:
            raise ValueError(f"RayPlacement.sandbox {self.sandbox!r}: choose one of {', '.join(BACKENDS)}")
        for name in ("episode_cpus", "episode_memory_mb", "grade_cpus", "grade_memory_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"RayPlacement.{name} must be >= 0, got {getattr(self, name)}")

    @staticmethod
    def _options(cpus: float, memory_mb: int, resources: Mapping[str, float]) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": cpus}
        if memory_mb:
            opts["memory"] = memory_mb << 20  # Ray counts bytes
        if resources:
            opts["resources"] = dict(resources)
        return opts

    def episode_options(self) -> dict[str, Any]:
        return {**self._options(self.episode_cpus, self.episode_memory_mb, self.episode_resources),
                "scheduling_strategy": self.strategy}

    def grade_options(self) -> dict[str, Any]:
        return self._options(self.grade_cpus, self.grade_memory_mb, self.grade_resources)

    def need(self, max_active: int) -> dict[str, float]:
        """What `max_active` episodes and one grading task hold at once, by Ray resource name."""
        need: dict[str, float] = {"CPU": max_active * self.episode_cpus + self.grade_cpus}
        if self.episode_memory_mb or self.grade_memory_mb:
            need["memory"] = float((max_active * self.episode_memory_mb + self.grade_memory_mb) << 20)
        for name in {*self.episode_resources, *self.grade_resources}:
            need[name] = max_active * self.episode_resources.get(name, 0.0) + self.grade_resources.get(name, 0.0)
        return need


@ray.remote
class EpisodeActor:
    """Hosts one episode at a time: `open(task)`, `start(i)`, `step(...)` until done, `trajectory`, `close`.

    Actors are reused for later episodes of the run (a new actor costs a worker process and
    the tokenizer's unpickling, seconds on a small CPU); each episode still gets a fresh sandbox.
    """

    def __init__(self, tokenizer: Any, cfg: AgentConfig, cache: str, limits: Limits, backend: str = "local") -> None:
        self.tokenizer, self.cfg, self.cache, self.limits, self.backend = tokenizer, cfg, Path(cache), limits, backend
        self.task: Task | None = None
        self.sandbox = self.episode = None

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def assigned_resources(self) -> dict[str, float]:
        return ray.get_runtime_context().get_assigned_resources()

    def open(self, task: Task) -> None:
        from swe_rl.sandbox.docker import task_sandbox_for

        self.close()
        self.task = task
        self.sandbox = task_sandbox_for(self.backend)(task, self.cache, limits=self.limits)

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
def grade_remote(task: Task, patch: str, cache: str, timeout_s: float, backend: str = "local") -> Grade:
    from swe_rl.rewards.grading import grade

    return grade(task, patch, cache=Path(cache), timeout_s=timeout_s, backend=backend)


@ray.remote
class GenerationActor:
    """Hosts a policy (an HF model, a vLLM engine) where its GPU is; the driver talks to it through `RemotePolicy`."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.policy = factory()

    def describe(self) -> tuple[str, int, Any]:
        return self.policy.name, self.policy.version, self.policy.tokenizer

    def generate(self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None = None) -> tuple[list[Completion], int]:
        return self.policy.generate(prompts, params, seeds), self.policy.version

    def update_weights(self, state_dict: dict[str, Any]) -> int:
        if not hasattr(self.policy, "update_weights"):
            raise TypeError(f"policy {self.policy.name!r} ({type(self.policy).__name__}) cannot take new weights")
        self.policy.update_weights(state_dict)
        return self.policy.version


class RemotePolicy:
    """The Policy protocol over a `GenerationActor`: generation runs on the actor's node, the engine stays here."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.name, self.version, self.tokenizer = ray.get(actor.describe.remote())

    def generate(self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None = None) -> list[Completion]:
        completions, self.version = ray.get(self.actor.generate.remote(prompts, params, seeds))
        return completions

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        """Ship the trainer's weights to the engine (through Ray's object store, not a checkpoint on disk)."""
        self.version = ray.get(self.actor.update_weights.remote(state_dict))

    def close(self) -> None:
        ray.kill(self.actor, no_restart=True)


def remote_policy(factory: Callable[[], Any], *, num_gpus: float = 1.0, num_cpus: float = 1.0,
                  resources: Mapping[str, float] | None = None) -> RemotePolicy:
    """Start a `GenerationActor` building its policy with `factory()` (a picklable callable) and return its handle.

    Ray must be initialised (inside `ray_episodes`, or `ray.init(address=...)`). `num_gpus=1` puts the
    engine on a GPU node; `resources` may pin it further (e.g. {"accelerator_type:H100": 0.001}).
    """
    actor = GenerationActor.options(num_gpus=num_gpus, num_cpus=num_cpus, resources=dict(resources or {})).remote(factory)
    return RemotePolicy(actor)


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
                 placement: RayPlacement = RayPlacement()) -> None:
        self._tokenizer = ray.put(tokenizer)  # shipped once, not once per actor
        self.cfg, self.cache, self.limits = cfg, str(Path(cache).resolve()), limits
        self.placement = placement
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
            actor = EpisodeActor.options(**self.placement.episode_options()).remote(
                self._tokenizer, self.cfg, self.cache, self.limits, self.placement.sandbox)
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
            return ray.get(grade_remote.options(**self.placement.grade_options()).remote(
                task, patch, self.cache, self.cfg.grade_timeout_s, self.placement.sandbox))
        except ACTOR_LOST as e:  # a worker lost with its node: the engine retries the grading
            return Grade(task.instance_id, "error", False, reason=f"Ray worker lost: {e}")

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors.clear()
        self._idle.clear()


@contextlib.contextmanager
def ray_episodes(tokenizer: Any, cfg: AgentConfig, cache: Path, limits: Limits, *, address: str | None = None,
                 max_active: int = 8, placement: RayPlacement = RayPlacement()) -> Iterator[RayEpisodes]:
    """Connect to Ray (`address`, or a running `ray.init`, or a new local instance) and yield the hooks.

    The engine generates in lock-step, so all `max_active` episodes and a grading task must fit on
    the cluster at once: otherwise actors (idle ones included) hold the resources that the batch or
    the grading waits for, and the run hangs. So the placement's needs are checked up front.
    """
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        have = ray.cluster_resources()
        short = {k: (v, have.get(k, 0.0)) for k, v in placement.need(max_active).items() if v > have.get(k, 0.0)}
        if short:
            detail = "; ".join(f"{k}: need {v:g}, cluster has {h:g}" for k, (v, h) in short.items())
            raise ValueError(f"Ray cluster too small for {max_active} concurrent episodes + a grading task with {placement} "
                             f"({detail}): lower the batch or the placement's reservations")
        episodes = RayEpisodes(tokenizer, cfg, cache, limits, placement=placement)
        try:
            yield episodes
        finally:
            episodes.shutdown()
    finally:
        if started:
            ray.shutdown()
