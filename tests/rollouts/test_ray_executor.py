"""The rollout engine with episodes, sandboxes and grading on a local Ray instance (CPU only), their placement,
and a policy in a generation actor."""

from __future__ import annotations

import functools

import pytest

ray = pytest.importorskip("ray")

from swe_rl.agent.demonstration import gold_patch_actions  # noqa: E402
from swe_rl.agent.loop import AgentConfig  # noqa: E402
from swe_rl.paths import cache_dir  # noqa: E402
from swe_rl.recipes.rollout import make_policy, run_rollouts  # noqa: E402
from swe_rl.rollouts.engine import RolloutConfig, collect  # noqa: E402
from swe_rl.rollouts.ray_executor import RayPlacement, ray_episodes, remote_policy  # noqa: E402
from swe_rl.rollouts.store import read_trajectories  # noqa: E402
from swe_rl.sandbox.protocol import Limits  # noqa: E402

CFG = AgentConfig(max_turns=6, window=20)


@pytest.fixture(scope="module")
def local_ray():
    # "sandbox_slot": a custom resource, as a cluster's sandbox nodes would advertise it
    ray.init(num_cpus=2, resources={"sandbox_slot": 2}, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def comparable(t):
    return (t.instance_id, t.sample_index, t.exit_reason, t.patch, t.token_ids, t.loss_mask, t.grade.status, t.model)


@pytest.mark.slow  # a Ray instance, worker processes and real sandboxes: tens of seconds
def test_ray_episodes_give_the_same_records_as_threads(bundled_tasks, local_ray, tmp_path):
    tasks = bundled_tasks[:2]
    policy = make_policy("scripted:gold", tasks)
    runs = {}
    for executor in ("ray", "thread"):
        run = run_rollouts(tasks, policy, CFG, tmp_path / f"{executor}.jsonl", samples=2, batch=4, quiet=True, executor=executor)
        assert run.dropped_tasks == frozenset() and run.metrics["pass_at_1"]["mean"] == 1.0
        runs[executor] = sorted(read_trajectories(run.out), key=lambda t: (t.instance_id, t.sample_index))
    assert len(runs["ray"]) == 4 and all(t.exit_reason == "submitted" and t.grade.resolved for t in runs["ray"])
    assert [comparable(t) for t in runs["ray"]] == [comparable(t) for t in runs["thread"]]


@pytest.mark.slow
def test_an_actor_that_dies_is_retried_then_its_group_dropped(bundled_tasks, local_ray, tmp_path):
    doomed, healthy = bundled_tasks[0], bundled_tasks[4]
    tasks = [doomed, healthy]
    hosts = {}  # instance id -> the actor running its current episode
    kills = []

    def action(k: int, prompt_text: str) -> str:
        task = next(t for t in tasks if t.problem_statement in prompt_text)
        if task is doomed and k == 1:  # its worker process is killed mid-episode, sandbox and all
            kills.append(hosts[task.instance_id])
            ray.kill(hosts[task.instance_id], no_restart=True)
        actions = gold_patch_actions(task)
        return actions[min(k, len(actions) - 1)]

    from swe_rl.policy.models import smollm2_tokenizer
    from swe_rl.policy.scripted import ScriptedPolicy

    policy = ScriptedPolicy(smollm2_tokenizer(), action)
    with ray_episodes(policy.tokenizer, CFG, cache_dir(), Limits(), max_active=2) as hooks:
        def open_sandbox(task):
            handle = hooks.open_sandbox(task)
            hosts[task.instance_id] = handle.actor
            return handle

        dropped_events = []
        result = collect(tasks, policy, CFG.sampling(), hooks.start_episode, open_sandbox, hooks.grade, tmp_path / "t.jsonl",
                         RolloutConfig(samples=1, max_active=2, max_attempts=2, workers=2),
                         on_dropped=lambda groups, skipped: dropped_events.append((groups, skipped)))
        assert len(set(kills)) == 2  # each attempt ran on its own actor: a dead one is never reused
    assert result.dropped_tasks == {doomed.instance_id} and dropped_events == [(1, 0)]
    by_id = {t.instance_id: t for t in read_trajectories(tmp_path / "t.jsonl")}
    assert by_id[doomed.instance_id].exit_reason == "sandbox_error" and "Ray actor lost" in by_id[doomed.instance_id].error
    assert by_id[healthy.instance_id].grade.resolved


def test_placement_options_and_needs():
    p = RayPlacement(episode_cpus=0.5, episode_memory_mb=256, episode_resources={"sandbox_slot": 1}, grade_cpus=2,
                     grade_resources={"grader": 1}, strategy="DEFAULT", sandbox="docker")
    assert p.episode_options() == {"num_cpus": 0.5, "memory": 256 << 20, "resources": {"sandbox_slot": 1},
                                   "scheduling_strategy": "DEFAULT"}
    assert p.grade_options() == {"num_cpus": 2, "resources": {"grader": 1}}
    assert p.need(4) == {"CPU": 4.0, "memory": float(1024 << 20), "sandbox_slot": 4.0, "grader": 1.0}
    with pytest.raises(ValueError, match="strategy 'PACK': choose one of SPREAD, DEFAULT"):
        RayPlacement(strategy="PACK")
    with pytest.raises(ValueError, match="sandbox 'podman': choose one of local, docker"):
        RayPlacement(sandbox="podman")
    with pytest.raises(ValueError, match="episode_cpus must be >= 0"):
        RayPlacement(episode_cpus=-1)


@pytest.mark.slow
def test_actors_and_gradings_reserve_what_the_placement_says(bundled_tasks, local_ray):
    from swe_rl.policy.models import smollm2_tokenizer

    task = bundled_tasks[0]
    placement = RayPlacement(episode_cpus=0.5, episode_resources={"sandbox_slot": 1}, grade_cpus=0.5)
    with pytest.raises(ValueError, match=r"sandbox_slot: need 3, cluster has 2"):
        with ray_episodes(smollm2_tokenizer(), CFG, cache_dir(), Limits(), max_active=3, placement=placement):
            pass
    with ray_episodes(smollm2_tokenizer(), CFG, cache_dir(), Limits(), max_active=2, placement=placement) as hooks:
        handle = hooks.open_sandbox(task)
        assert ray.get(handle.actor.assigned_resources.remote()) == {"CPU": 0.5, "sandbox_slot": 1.0}
        handle.close()
        assert hooks.grade(task, task.patch).resolved  # a grading task placed with grade_options


@pytest.mark.slow
def test_a_policy_in_a_generation_actor_gives_the_same_episodes(bundled_tasks, local_ray, tmp_path):
    tasks = bundled_tasks[:1]
    here = make_policy("scripted:gold", tasks)
    there = remote_policy(functools.partial(make_policy, "scripted:gold", tasks), num_gpus=0, num_cpus=0)
    try:
        assert there.name == here.name and there.version == 0
        runs = [run_rollouts(tasks, pol, CFG, tmp_path / f"{i}.jsonl", samples=1, batch=1, quiet=True, executor="ray")
                for i, pol in enumerate((here, there))]
        a, b = (read_trajectories(r.out) for r in runs)
        assert [comparable(t) for t in a] == [comparable(t) for t in b] and b[0].grade.resolved
        with pytest.raises(TypeError, match="cannot take new weights"):
            there.update_weights({})
    finally:
        there.close()
