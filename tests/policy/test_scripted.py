"""ScriptedPolicy: actions by turn index read from the prompt, fallback, truncation."""

from __future__ import annotations

from swe_rl.policy.chat import TrajectoryBuilder, end_of_turn_id
from swe_rl.policy.scripted import FALLBACK_ACTION, ScriptedPolicy
from swe_rl.types import SamplingParams

MESSAGES = [{"role": "system", "content": "sys"}, {"role": "user", "content": "fix the bug"}]


def test_actions_follow_each_conversation_and_fall_back_to_submit(tokenizer):
    policy = ScriptedPolicy(tokenizer, ["first\n```\nls\n```", "second\n```\ncat a.py\n```"])
    ahead, behind = TrajectoryBuilder(tokenizer, MESSAGES), TrajectoryBuilder(tokenizer, MESSAGES)
    ahead.add_completion(policy.generate([ahead.prompt_ids()], SamplingParams())[0])
    ahead.add_observation("out")
    # one batch holding two episodes at different turns
    c_ahead, c_behind = policy.generate([ahead.prompt_ids(), behind.prompt_ids()], SamplingParams())
    assert ahead.add_completion(c_ahead).startswith("second")
    assert behind.add_completion(c_behind).startswith("first")
    ahead.add_observation("out")
    assert ahead.add_completion(policy.generate([ahead.prompt_ids()], SamplingParams())[0]) == FALLBACK_ACTION
    assert c_ahead.token_ids[-1] == end_of_turn_id(tokenizer) and c_ahead.finish_reason == "stop"
    assert set(c_ahead.logprobs) == {0.0}
    assert c_ahead.text == tokenizer.decode(list(c_ahead.token_ids))


def test_callable_actions_and_length_cut(tokenizer):
    seen = []

    def act(k: int, prompt_text: str) -> str:
        seen.append((k, "fix the bug" in prompt_text))
        return "word " * 50

    policy = ScriptedPolicy(tokenizer, act)
    b = TrajectoryBuilder(tokenizer, MESSAGES)
    (c,) = policy.generate([b.prompt_ids()], SamplingParams(max_new_tokens=10))
    assert seen == [(0, True)]
    assert len(c.token_ids) == 10 and c.finish_reason == "length"
    assert end_of_turn_id(tokenizer) not in c.token_ids
