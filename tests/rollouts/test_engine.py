"""The rollout engine on the bundled tasks with real sandboxes, real grading and real policies."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swe_rl.agent.demonstration import gold_patch_actions
from swe_rl.agent.loop import AgentConfig, Episode
from swe_rl.rewards.grading import grade
from swe_rl.rollouts.engine import RolloutConfig, collect
from swe_rl.rollouts.store import read_trajectories
from swe_rl.sandbox.environments import task_sandbox

pytestmark = pytest.mark.slow  # episodes and grading in real sandboxes: a few seconds each

CFG = AgentConfig(max_turns=6, window=20)


@pytest.fixture(scope="module")
def tokenizer():
    from swe_rl.policy.models import smollm2_tokenizer

    return smollm2_tokenizer()


def gold_policy(tokenizer, tasks, on_turn=None):
    """ScriptedPolicy replaying each task's gold patch; `on_turn(task, k)` runs on the host before turn k."""
    from swe_rl.policy.scripted import ScriptedPolicy

    scripts = {t.problem_statement: (t, gold_patch_actions(t)) for t in tasks}

    def action(k: int, prompt_text: str) -> str:
        task, actions = next(v for s, v in scripts.items() if s in prompt_text)
        if on_turn is not None:
            on_turn(task, k)
        return actions[min(k, len(actions) - 1)]

    return ScriptedPolicy(tokenizer, action)


def run(tasks, policy, out: Path, cfg: RolloutConfig, open_sandbox=task_sandbox, *, agent=CFG, grade=grade, **kw):
    return collect(
        tasks,
        policy,
        agent.sampling(),
        start_episode=lambda task, i, sb: Episode(task, sb, policy.tokenizer, agent, sample_index=i),
        open_sandbox=open_sandbox,
        grade=grade,
        out=out,
        cfg=cfg,
        **kw,
    )


def test_gold_replay_resolves_every_episode_and_writes_each_once(bundled_tasks, tokenizer, tmp_path):
    tasks = bundled_tasks[:2]
    out = tmp_path / "traj.jsonl"
    result = run(tasks, gold_policy(tokenizer, tasks), out, RolloutConfig(samples=2, max_active=3))
    written = read_trajectories(out)
    assert sorted((t.instance_id, t.sample_index) for t in written) == sorted((t.instance_id, i) for t in tasks for i in range(2))
    assert all(t.exit_reason == "submitted" and t.grade.resolved for t in written)
    assert {t.patch for t in written if t.instance_id == tasks[0].instance_id} == {tasks[0].patch}
    assert result.dropped_tasks == set() and len(result.usable()) == 4
    with pytest.raises(FileExistsError, match="--resume"):
        run(tasks, gold_policy(tokenizer, tasks), out, RolloutConfig(samples=2))


def test_resume_refuses_episodes_of_another_model_or_seed(bundled_tasks, tokenizer, tmp_path):
    tasks = bundled_tasks[:1]
    out = tmp_path / "traj.jsonl"
    run(tasks, gold_policy(tokenizer, tasks), out, RolloutConfig(samples=1, seed=7))
    other_model = gold_policy(tokenizer, tasks)
    other_model.name = "another-model"
    for policy, cfg, what in ((gold_policy(tokenizer, tasks), RolloutConfig(samples=2, seed=8), "seed 7"),
                              (other_model, RolloutConfig(samples=2, seed=7), "'scripted'")):
        with pytest.raises(FileExistsError, match=what):
            run(tasks, policy, out, cfg, resume=True)
    assert len(read_trajectories(out)) == 1  # nothing appended by the refused runs
    result = run(tasks, gold_policy(tokenizer, tasks), out, RolloutConfig(samples=2, seed=7), resume=True)
    assert sorted(t.sample_index for t in result.trajectories) == [0, 1]


def test_a_sandbox_that_dies_is_retried_then_its_group_dropped(bundled_tasks, tokenizer, tmp_path):
    doomed, healthy = bundled_tasks[0], bundled_tasks[4]
    sandboxes = {}

    def open_sandbox(task):
        sandboxes[task.instance_id] = sb = task_sandbox(task)
        return sb

    def on_turn(task, k):
        if task.instance_id == doomed.instance_id and k == 1:
            sandboxes[task.instance_id].close()  # its processes are killed and its workspace removed

    out = tmp_path / "traj.jsonl"
    result = run([doomed, healthy], gold_policy(tokenizer, [doomed, healthy], on_turn), out, RolloutConfig(samples=1, max_active=2, max_attempts=2), open_sandbox)
    assert result.dropped_tasks == {doomed.instance_id}
    by_id = {t.instance_id: t for t in read_trajectories(out)}
    assert by_id[doomed.instance_id].exit_reason == "sandbox_error" and by_id[doomed.instance_id].grade is None
    assert "closed" in by_id[doomed.instance_id].error
    assert by_id[healthy.instance_id].grade.resolved
    assert [t.instance_id for t in result.usable()] == [healthy.instance_id]


def unprepared_copy(task, instance_id: str):
    """The task with a dependency set no environment was prepared for: its sandbox cannot start."""
    return dataclasses.replace(task, instance_id=instance_id,
                               install_config=dataclasses.replace(task.install_config, pip_packages=("pytest==7.0.0",)))


def test_an_unprepared_task_is_dropped_not_scored(bundled_tasks, tokenizer, tmp_path):
    ghost = unprepared_copy(bundled_tasks[1], "ghost-1")
    tasks = [ghost, bundled_tasks[1]]
    result = run(tasks, gold_policy(tokenizer, tasks), tmp_path / "t.jsonl", RolloutConfig(samples=2, max_attempts=2))
    assert result.dropped_tasks == {"ghost-1"}
    ghosts = [t for t in result.trajectories if t.instance_id == "ghost-1"]
    assert ghosts and all(t.exit_reason == "sandbox_error" and "not prepared" in t.error for t in ghosts)
    assert sum(t.grade.resolved for t in result.usable()) == 2


def test_same_seed_same_trajectories_whatever_the_batch(bundled_tasks, tmp_path):
    from swe_rl.policy.hf import HFPolicy

    policy = HFPolicy("tiny", device="cpu")
    cfg = AgentConfig(max_turns=2, max_new_tokens=24, window=10)
    tasks = bundled_tasks[:2]

    def once(name: str, seed: int, max_active: int = 4):
        return run(tasks, policy, tmp_path / name, RolloutConfig(samples=2, max_active=max_active, seed=seed), agent=cfg, grade=None).trajectories

    a, b, c = once("a.jsonl", 1), once("b.jsonl", 1), once("c.jsonl", 2)
    one_at_a_time = once("d.jsonl", 1, max_active=1)  # each turn generated alone: other batches, same seeds
    key = lambda t: (t.instance_id, t.sample_index)  # noqa: E731
    tokens = lambda runs: [t.token_ids for t in sorted(runs, key=key)]  # noqa: E731
    assert tokens(a) == tokens(b) == tokens(one_at_a_time)
    assert tokens(a) != tokens(c)


def test_resume_after_a_kill_redoes_only_unwritten_episodes(bundled_tasks, tmp_path):
    out = tmp_path / "traj.jsonl"
    ids = [t.instance_id for t in bundled_tasks[:3]]
    command = [sys.executable, "-m", "swe_rl.cli", "rollout", "--tasks", "bundled", "--model", "scripted:gold",
               "--samples", "2", "--batch", "1", "--out", str(out), "--quiet"]
    for i in ids:
        command += ["--instance", i]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = out.read_text().splitlines()
    complete = [json.loads(line) for line in before if line.endswith("}")]
    assert 2 <= len(complete) < 6, "the kill should land mid-run"

    subprocess.run(command + ["--resume"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    records = read_trajectories(out)
    assert sorted((t.instance_id, t.sample_index) for t in records) == sorted((i, s) for i in ids for s in range(2))
    assert [r.to_dict() for r in records[: len(complete)]] == complete  # finished episodes were kept, not redone
    assert all(t.grade.resolved for t in records)


def test_a_dropped_group_is_reported_when_it_is_dropped(bundled_tasks, tokenizer, tmp_path):
    ghost = unprepared_copy(bundled_tasks[1], "ghost-2")
    tasks = [ghost, bundled_tasks[1]]
    events = []  # in the order they happen
    result = run(tasks, gold_policy(tokenizer, tasks), tmp_path / "t.jsonl", RolloutConfig(samples=2, max_active=1, max_attempts=2),
                 on_episode=lambda t: events.append(("episode", t.instance_id)),
                 on_dropped=lambda groups, skipped: events.append(("dropped", groups, skipped)))
    assert result.dropped_tasks == {"ghost-2"}
    # Sample 0 failed twice and dropped the group at once; sample 1 never ran; then the healthy task's two episodes.
    assert events == [("episode", "ghost-2"), ("dropped", 1, 1)] + [("episode", bundled_tasks[1].instance_id)] * 2
