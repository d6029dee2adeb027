"""recipes/rollout.make_policy's `scripted:explore[-recover]`: it resolves synthesized tasks with steps read off its context."""

from __future__ import annotations

import re
import shlex

import pytest

from swe_rl.agent.demonstration import base_file, hunk_edit, rejected_lines
from swe_rl.agent.loop import AgentConfig
from swe_rl.agent.parser import parse_action
from swe_rl.recipes.rollout import make_policy, run_rollouts
from swe_rl.rollouts.store import read_trajectories
from swe_rl.tasks.loaders import load_tasks
from swe_rl.training.sft_data import assistant_runs, rejected_edit, sft_loss_mask
from tests.tasks.conftest import explorable_tasks, synth  # noqa: F401  (the session fixture: tasks synthesized from a tiny package)

pytestmark = pytest.mark.slow  # synthesizes tasks (a venv and test-suite runs), then runs and grades episodes


def explore_and_run(synth, tmp_path, cfg: AgentConfig, policy: str, keep=lambda task, plan: True) -> list:
    """Run `policy` once on each synthesized task scripted:explore can plan (one per issue text, and `keep`'s)."""
    tasks = explorable_tasks(synth, cfg.window, keep)
    assert len(tasks) >= 2, "the tiny package's tasks name their functions: most must be explorable"
    out = tmp_path / "traj.jsonl"
    run = run_rollouts(tasks, make_policy(policy, tasks, window=cfg.window), cfg, out, samples=1, cache=synth["cache"], quiet=True)
    assert run.metrics["pass_at_1"]["mean"] == 1.0
    order = {t.instance_id: i for i, t in enumerate(tasks)}
    return sorted(read_trajectories(out), key=lambda traj: order[traj.instance_id])


def test_scripted_explore_resolves_the_family_from_its_context(synth, tmp_path):  # noqa: F811
    cfg = AgentConfig(max_turns=5, window=12, prompts_dir="configs/prompts_compact")
    trajectories = explore_and_run(synth, tmp_path, cfg, "scripted:explore")
    resolved_located = 0
    for traj in trajectories:
        statement, turns = traj.messages[1]["content"], traj.turns
        commands = [parse_action(t.response).command for t in turns]
        located = len(commands) == 5  # a fix that only inserts lines has no wrong line to search
        assert [c.split()[0] for c in commands] == ["search_file", "open"] + ["search_file"] * located + ["edit", "submit"]
        name = re.match(r'search_file "def (\w+)\(" \.', commands[0])[1]
        assert name in statement  # step 1: the function the issue names
        _, path, line = commands[1].split()
        assert f"{path}:{line}:def {name}(" in turns[0].observation  # step 2: a search hit
        shown = dict(re.findall(r"^(\d+):(.*)$", turns[1].observation, re.M))
        start, end = map(int, re.match(r"edit (\d+):(\d+)", commands[2 + located]).groups())
        assert {str(n) for n in range(start, end + 1)} <= shown.keys()  # the edit: lines the window showed
        if located:  # step 3: a line the window shows, whose number the search answers
            pattern = shlex.split(commands[2])[1]
            assert pattern in shown[str(start)]
            assert re.search(rf"^{start}:.*{re.escape(pattern)}", turns[2].observation, re.M)
            resolved_located += 1
    assert resolved_located, "the tiny package's mutations include replaced lines: the locate step must run"


def test_scripted_explore_recover_stumbles_on_every_second_task_and_still_resolves(synth, tmp_path):  # noqa: F811
    def can_stumble(task, plan) -> bool:
        path, _, hunk = plan
        return rejected_lines(base_file(task, path), path, *hunk_edit(hunk)) is not None

    cfg = AgentConfig(max_turns=6, window=12, prompts_dir="configs/prompts_compact")
    for n, traj in enumerate(explore_and_run(synth, tmp_path, cfg, "scripted:explore-recover", keep=can_stumble)):
        rejected = [i for i, turn in enumerate(traj.turns) if rejected_edit(turn)]
        if n % 2 == 0:
            assert rejected == []
            continue
        commands = [parse_action(turn.response).command for turn in traj.turns]
        (i,) = rejected  # the stumble, then the same edit with the fix's indentation, then submit
        assert commands[i].split()[:2] == commands[i + 1].split()[:2] and commands[i] != commands[i + 1]
        assert commands[i + 2:] == ["submit"]
        mask, runs = sft_loss_mask(traj, mask_rejected_edits=True), assistant_runs(traj.loss_mask)
        assert [any(mask[a:b]) for a, b in runs] == [k != i for k in range(len(traj.turns))]


def test_scripted_explore_refuses_a_task_it_cannot_solve_from_its_context(synth):  # noqa: F811
    from dataclasses import replace

    task = replace(load_tasks(synth["out"])[0], problem_statement="Something is wrong.")
    with pytest.raises(ValueError, match="does not name the mutated function"):
        make_policy("scripted:explore", [task])
    twins = [t for t in load_tasks(synth["out"]) if "is_even" in t.problem_statement][:2]
    assert len(twins) == 2 and twins[0].problem_statement == twins[1].problem_statement and twins[0].patch != twins[1].patch
    with pytest.raises(ValueError, match=f"task {twins[1].instance_id} has the problem statement of an earlier task"):
        make_policy("scripted:explore", twins)


def test_grading_stops_at_the_agent_configs_grade_timeout(synth):  # noqa: F811
    """A patch whose tests hang is unresolved after `grade_timeout_s`, not after the grader's 600-second default."""
    from dataclasses import replace

    from swe_rl.recipes.rollout import LocalEpisodes

    task = load_tasks(synth["out"])[0]
    hangs = replace(task, install_config=replace(task.install_config, test_cmd="sleep 60; " + task.install_config.test_cmd))
    hooks = LocalEpisodes(None, AgentConfig(grade_timeout_s=2.0), synth["cache"])
    assert hooks.grade(task, task.patch).status == "resolved"  # the gold patch, when the tests do not hang
    grade = hooks.grade(hangs, task.patch)
    assert grade.status == "unresolved" and "tests timed out after 2s" in grade.reason
