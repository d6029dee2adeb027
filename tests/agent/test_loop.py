"""The episode loop on real sandboxes with scripted assistant turns: every ending, the patch, the tokens."""

from __future__ import annotations

import json

import pytest

from swe_rl.agent.demonstration import gold_patch_actions, never_submit_actions
from swe_rl.agent.loop import AgentConfig, Episode
from swe_rl.agent.parser import CANNOT_EXTRACT, MULTIPLE_COMMANDS
from tests.agent.conftest import completion

CFG = AgentConfig(max_turns=10, context_length=8192, max_new_tokens=256, window=10)


def play(episode: Episode, tokenizer, actions: list[str]) -> Episode:
    for text in actions:
        if episode.done:
            break
        episode.step(completion(tokenizer, text), generation_s=0.01)
    return episode


def test_gold_actions_submit_the_gold_patch_and_resolve(tiny, agent_sandbox, tokenizer):
    from swe_rl.rewards.grading import grade_run

    task = tiny.task()
    actions = gold_patch_actions(task)
    ep = play(Episode(task, agent_sandbox, tokenizer, CFG), tokenizer, actions)
    traj = ep.trajectory()
    assert traj.exit_reason == "submitted", [t.observation for t in traj.turns]
    assert traj.num_turns == len(actions)
    assert traj.patch == task.patch
    assert traj.turns[0].command == "open calc/ops.py 2"
    assert traj.turns[0].observation.endswith("(Current directory: /repo, current file: /repo/calc/ops.py) bash-$")
    assert "2:    return a + b" in traj.turns[1].observation  # the edit shows the window back
    assert grade_run(task, traj.patch, sandbox=tiny.sandbox()).grade.status == "resolved"


def test_token_accounting(tiny, agent_sandbox, tokenizer):
    ep = play(Episode(tiny.task(), agent_sandbox, tokenizer, CFG), tokenizer, gold_patch_actions(tiny.task()))
    traj = ep.trajectory()
    assert len(traj.token_ids) == len(traj.loss_mask) == len(traj.sampler_logprobs)
    assert sum(traj.loss_mask) == sum(t.completion_tokens for t in traj.turns) > 0
    assert [m["role"] for m in traj.messages] == ["system", "user"] + ["assistant", "user"] * (traj.num_turns - 1) + ["assistant"]
    assert all(t.generation_s == 0.01 and t.execution_s > 0 for t in traj.turns)
    assert traj.timings["execution_s"] == pytest.approx(sum(t.execution_s for t in traj.turns))
    assert "search_file <pattern>" in traj.messages[0]["content"]  # tool docs in the system prompt
    assert tiny.task().problem_statement in traj.messages[1]["content"]
    assert json.loads(json.dumps(traj.to_dict()))["exit_reason"] == "submitted"


def test_turn_limit_still_takes_the_patch(tiny, agent_sandbox, tokenizer):
    cfg = AgentConfig(max_turns=3, window=10)
    actions = gold_patch_actions(tiny.task())[:2] + never_submit_actions(5)  # open, edit, then never submit
    ep = play(Episode(tiny.task(), agent_sandbox, tokenizer, cfg), tokenizer, actions)
    traj = ep.trajectory()
    assert traj.exit_reason == "turn_limit" and traj.num_turns == 3
    assert traj.patch == tiny.task().patch
    assert traj.turns[-1].observation  # the last observation is recorded...
    assert traj.messages[-1]["role"] == "assistant"  # ...but not added to the tokens


def test_format_errors_are_observations_and_can_end_the_episode(tiny, agent_sandbox, tokenizer):
    cfg = AgentConfig(format_error_limit=2, window=10)
    ep = play(Episode(tiny.task(), agent_sandbox, tokenizer, cfg), tokenizer,
              ["I think it is in ops.py.", "```bash\nls\n```", "```\nls\n```\n```\npwd\n```", "no block", "unused"])
    traj = ep.trajectory()
    assert [t.format_error for t in traj.turns] == [CANNOT_EXTRACT, None, MULTIPLE_COMMANDS, CANNOT_EXTRACT]
    assert traj.exit_reason == "format_error_limit"  # two in a row; the first one was not followed by another
    assert traj.turns[0].observation.startswith("Format error: cannot extract command.")
    assert traj.turns[0].observation.endswith("(Current directory: /repo, current file: none) bash-$")
    assert "calc" in traj.turns[1].observation
    assert "multiple commands extracted" in traj.turns[2].observation
    assert traj.patch == ""


def test_context_limit(tiny, agent_sandbox, tokenizer):
    start = Episode(tiny.task(), agent_sandbox, tokenizer, CFG)
    prompt_len = len(start.prompt_ids())
    # Room for the first turn only: the first observation pushes the next prompt over the limit.
    cfg = AgentConfig(context_length=prompt_len + 256 + 5, max_new_tokens=256, window=10)
    ep = play(Episode(tiny.task(), agent_sandbox, tokenizer, cfg), tokenizer, gold_patch_actions(tiny.task()))
    traj = ep.trajectory()
    assert traj.exit_reason == "context_limit" and traj.num_turns == 1
    too_small = Episode(tiny.task(), agent_sandbox, tokenizer, AgentConfig(context_length=prompt_len, max_new_tokens=256))
    assert too_small.done and too_small.exit_reason == "context_limit" and too_small.turns == []


def test_sandbox_error_is_recorded_not_graded(tiny, agent_sandbox, tokenizer):
    actions = gold_patch_actions(tiny.task())
    ep = play(Episode(tiny.task(), agent_sandbox, tokenizer, CFG), tokenizer, actions[:1])
    agent_sandbox.close()  # the sandbox goes away mid-episode
    ep.step(completion(tokenizer, actions[1]))
    traj = ep.trajectory()
    assert traj.exit_reason == "sandbox_error"
    assert "SandboxError" in traj.error and "closed" in traj.error
    assert traj.patch == ""


def test_a_shell_that_exits_is_restarted_and_the_episode_goes_on(tiny, agent_sandbox, tokenizer):
    # A command that ends the sandbox's shell (the agent's own doing) is not an infra failure:
    # the sandbox restarts its shell; the tools' state survives in /tmp.
    ep = play(Episode(tiny.task(), agent_sandbox, tokenizer, CFG), tokenizer,
              [gold_patch_actions(tiny.task())[0], "Leave.\n```bash\nexit 3\n```", "Look.\n```bash\ngoto 5\n```"])
    assert not ep.done
    assert "restarted" in ep.turns[1].observation
    assert "5:def sub(a, b):" in ep.turns[2].observation


def test_run_episode_with_a_scripted_policy(tiny, agent_sandbox, tokenizer):
    from swe_rl.agent.loop import run_episode
    from tests.agent.conftest import scripted_policy

    policy = scripted_policy(tokenizer, gold_patch_actions(tiny.task()))
    traj = run_episode(tiny.task(), agent_sandbox, policy, CFG, sample_index=3, seed=7)
    assert traj.exit_reason == "submitted" and traj.patch == tiny.task().patch
    assert (traj.sample_index, traj.seed, traj.model, traj.policy_version) == (3, 7, policy.name, policy.version)
    assert traj.timings["generation_s"] > 0


@pytest.mark.slow
def test_gold_actions_resolve_a_bundled_task_end_to_end(tokenizer, bundled_tasks):
    """ScriptedPolicy + gold-patch turns in the task's real sandbox, graded by the real grader."""
    from swe_rl.agent.loop import run_episode
    from swe_rl.rewards.grading import grade
    from swe_rl.sandbox.environments import task_sandbox
    from tests.agent.conftest import scripted_policy

    task = bundled_tasks[0]
    policy = scripted_policy(tokenizer, gold_patch_actions(task))
    with task_sandbox(task) as sandbox:
        traj = run_episode(task, sandbox, policy, CFG)
    assert traj.exit_reason == "submitted" and traj.patch == task.patch
    result = grade(task, traj.patch)
    assert result.status == "resolved", result.reason


def test_command_timeout_is_an_observation(tiny, agent_sandbox, tokenizer):
    cfg = AgentConfig(command_timeout_s=1, window=10)
    ep = play(Episode(tiny.task(), agent_sandbox, tokenizer, cfg), tokenizer,
              ["Go.\n```bash\ncd calc\n```", "Wait.\n```bash\nsleep 30\n```", "Where?\n```bash\npwd\n```"])
    assert not ep.done
    assert "The command timed out after 1 s and was killed." in ep.turns[1].observation
    assert ep.turns[2].observation.startswith("/repo/calc\n")  # the restarted shell keeps the directory


@pytest.mark.parametrize("override, message", [
    ("eval.agent.grade_timeout_s=0", "grade_timeout_s must be > 0 seconds, got 0"),
    ("rft.agent.command_timeout_s=-5", "command_timeout_s must be > 0 seconds, got -5"),
    ("eval.agent.max_turns=0", "max_turns must be >= 1, got 0"),
    ("rft.agent.temperature=-1", "temperature must be >= 0, got -1"),
])
def test_the_agents_scaffold_values_are_checked_in_every_recipe(override: str, message: str) -> None:
    from swe_rl.config import ConfigError, load_config
    from swe_rl.recipes.pipeline import PipelineConfig

    with pytest.raises(ConfigError, match=message):
        load_config(PipelineConfig, None, [override])
