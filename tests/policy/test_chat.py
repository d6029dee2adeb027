"""Token-exact trajectories: decode equality with the chat template, loss mask, sampler log-probs."""

from __future__ import annotations

import copy

import pytest

from swe_rl.policy.chat import TrajectoryBuilder, end_of_turn_id, stop_token_ids
from swe_rl.policy.logprobs import token_logprobs
from swe_rl.policy.scripted import ScriptedPolicy
from swe_rl.types import Completion, SamplingParams

# Qwen2.5-Instruct's ChatML template (default system message, tools, tool responses), as published.
QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

OBSERVATION = "total 8\n-rw-r--r-- 1 root root  42 setup.py\n(Current directory: /repo, current file: none) bash-$"


@pytest.fixture(params=["smollm2", "qwen25"])
def chat_tokenizer(request, tokenizer):
    if request.param == "smollm2":
        return tokenizer
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = QWEN25_TEMPLATE
    return tok


def rendered(tok, messages, gen=True):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def first_messages(i: int, with_system: bool = True):
    msgs = [{"role": "user", "content": f"Fix issue #{i}: `foo()` returns None ✓ " + "x" * i}]
    return ([{"role": "system", "content": "You are an agent. Use one ```bash``` block."}] if with_system else []) + msgs


def check_exact(b: TrajectoryBuilder, n_sampled: int) -> None:
    tok = b.tokenizer
    assert tok.decode(b.token_ids, skip_special_tokens=False) == rendered(tok, b.messages)
    assert len(b.token_ids) == len(b.loss_mask) == len(b.sampler_logprobs)
    assert sum(b.loss_mask) == n_sampled
    masked = [i for i, m in enumerate(b.loss_mask) if m]
    assert masked == [i for s, e in b.spans for i in range(s, e)]


def test_hf_sampled_multiturn_is_token_exact_and_logprobs_match(tiny_policy, chat_tokenizer):
    """Batched, left-padded sampling over 3 turns; one forward pass reproduces the sampler's log-probs."""
    tok = chat_tokenizer
    builders = [TrajectoryBuilder(tok, first_messages(i, with_system=i % 2 == 0)) for i in range(4)]
    n_sampled = [0] * 4
    finishes = set()
    for turn in range(3):
        completions = tiny_policy.generate([b.prompt_ids() for b in builders], SamplingParams(max_new_tokens=24, seed=turn))
        for k, (b, c) in enumerate(zip(builders, completions)):
            text = b.add_completion(c)
            assert b.messages[-1] == {"role": "assistant", "content": text}
            n_sampled[k] += len(c.token_ids)
            finishes.add(c.finish_reason)
            b.add_observation(f"{OBSERVATION} turn {turn}")
            check_exact(b, n_sampled[k])
    assert finishes == {"stop", "length"}  # both ways of closing a turn were exercised
    assert len({len(b.prompt_ids()) for b in builders}) > 1  # prompts of different lengths: real padding
    for b in builders:
        ref = token_logprobs(tiny_policy.model, b.token_ids)
        diffs = [abs(r - s) for r, s, m in zip(ref, b.sampler_logprobs, b.loss_mask) if m]
        assert max(diffs) < 1e-3
        assert all(lp == 0.0 for lp, m in zip(b.sampler_logprobs, b.loss_mask) if not m)


def test_earlier_turns_are_never_retokenised(tokenizer):
    """A sampled, non-canonical tokenisation of the reply survives later turns unchanged."""
    b = TrajectoryBuilder(tokenizer, first_messages(1))
    hello = tokenizer.encode("hello", add_special_tokens=False)
    odd = [tid for ch in "hello" for tid in tokenizer.encode(ch, add_special_tokens=False)]  # h e l l o
    assert odd != hello
    eot = end_of_turn_id(tokenizer)
    b.add_completion(Completion(tuple(odd + [eot]), (-1.0,) * (len(odd) + 1), "stop"))
    before = list(b.token_ids)
    b.add_observation(OBSERVATION)
    assert b.token_ids[: len(before)] == before
    assert b.messages[-2]["content"] == "hello"
    check_exact(b, len(odd) + 1)


def test_length_stop_gets_end_of_turn_appended_unmasked(tokenizer):
    b = TrajectoryBuilder(tokenizer, first_messages(2))
    ids = tokenizer.encode("I will look at", add_special_tokens=False)
    b.add_completion(Completion(tuple(ids), (-0.5,) * len(ids), "length"))
    n = len(b.token_ids)
    b.add_observation(OBSERVATION)
    assert b.token_ids[n] == end_of_turn_id(tokenizer) and b.loss_mask[n] == 0
    check_exact(b, len(ids))


def test_scripted_episode_final_turn_left_open(tokenizer):
    """After the last completion, decode(token_ids) is the rendering minus the unsampled closing '\\n'."""
    policy = ScriptedPolicy(tokenizer, ["Let me look.\n```\nls\n```", "Done.\n```\nsubmit\n```"])
    b = TrajectoryBuilder(tokenizer, first_messages(3))
    b.add_completion(policy.generate([b.prompt_ids()], SamplingParams())[0])
    b.add_observation(OBSERVATION)
    assert b.add_completion(policy.generate([b.prompt_ids()], SamplingParams())[0]) == "Done.\n```\nsubmit\n```"
    full = rendered(tokenizer, b.messages, gen=False)
    assert full == tokenizer.decode(b.token_ids) + "\n"


def test_unrendered_stop_token_is_kept_and_turn_closed(tokenizer):
    """Documented difference: a stop token the template does not render stays in token_ids."""
    b = TrajectoryBuilder(tokenizer, first_messages(4))
    ids = tokenizer.encode("ok", add_special_tokens=False)
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    b._stop_ids.add(endoftext)  # as for a Qwen base tokenizer, whose eos is <|endoftext|>
    b.add_completion(Completion(tuple(ids + [endoftext]), (0.0,) * (len(ids) + 1), "stop"))
    b.add_observation(OBSERVATION)
    assert b.messages[-2]["content"] == "ok"
    expected = rendered(tokenizer, b.messages).replace("ok<|im_end|>", "ok<|endoftext|><|im_end|>", 1)
    assert tokenizer.decode(b.token_ids) == expected


def test_template_that_rewrites_history_is_refused(tokenizer):
    tok = copy.deepcopy(tokenizer)
    # keeps only the last assistant message, like templates that drop old reasoning
    tok.chat_template = (
        "{% for m in messages %}{% if m.role != 'assistant' or loop.last or loop.revindex == 2 %}"
        "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    policy = ScriptedPolicy(tok, ["a", "b", "c"])
    b = TrajectoryBuilder(tok, first_messages(5))
    b.add_completion(policy.generate([b.prompt_ids()], SamplingParams())[0])
    b.add_observation("o1")
    b.add_completion(policy.generate([b.prompt_ids()], SamplingParams())[0])
    with pytest.raises(ValueError, match="prefix-stable"):
        b.add_observation("o2")


def test_call_order_is_enforced(tokenizer):
    b = TrajectoryBuilder(tokenizer, first_messages(6))
    with pytest.raises(RuntimeError, match="add_completion first"):
        b.add_observation("x")
    eot = end_of_turn_id(tokenizer)
    b.add_completion(Completion((eot,), (0.0,), "stop"))
    with pytest.raises(RuntimeError, match="two completions"):
        b.add_completion(Completion((eot,), (0.0,), "stop"))
    with pytest.raises(ValueError, match="logprobs"):
        TrajectoryBuilder(tokenizer, first_messages(6)).add_completion(Completion((eot, eot), (0.0,), "stop"))


def test_stop_token_ids_is_im_end(tokenizer):
    assert stop_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert end_of_turn_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|im_end|>")
