"""The rollout engine with episodes, sandboxes and grading on a local Ray instance (CPU only)."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from swe_rl.agent.demonstration import gold_patch_actions  # noqa: E402
from swe_rl.agent.loop import AgentConfig  # noqa: E402
from swe_rl.paths import cache_dir  # noqa: E402
from swe_rl.recipes.rollout import make_policy, run_rollouts  # noqa: E402
from swe_rl.rollouts.engine import RolloutConfig, collect  # noqa: E402
from swe_rl.rollouts.ray_executor import ray_episodes  # noqa: E402
from swe_rl.rollouts.store import read_trajectories  # noqa: E402
from swe_rl.sandbox.protocol import Limits  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray instance, worker processes and real sandboxes: tens of seconds

CFG = AgentConfig(max_turns=6, window=20)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def comparable(t):
    return (t.instance_id, t.sample_index, t.exit_reason, t.patch, t.token_ids, t.loss_mask, t.grade.status, t.model)


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
