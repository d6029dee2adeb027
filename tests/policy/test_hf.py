"""HFPolicy: explicit sampling parameters, per-sequence stopping, seeds, exact log-probs."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from swe_rl.policy.hf import HFPolicy, processed_logprobs
from swe_rl.policy.logprobs import token_logprobs
from swe_rl.policy.protocol import Policy
from swe_rl.types import SamplingParams


def prompt(tok, text: str) -> list[int]:
    return tok.encode(
        tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    )


def sampled_vs_recomputed(policy, prompts, completions, temperature=1.0):
    """max |sampler log-prob - log-prob from one forward pass over prompt + completion|."""
    worst = 0.0
    for p, c in zip(prompts, completions):
        ref = token_logprobs(policy.model, p + list(c.token_ids), temperature=temperature)[len(p):]
        worst = max(worst, max(abs(a - b) for a, b in zip(ref, c.logprobs)))
    return worst


@pytest.fixture(scope="module")
def opinionated_dir(tiny_dir, tmp_path_factory):
    """The tiny model with a generation_config.json that asks for temperature 0.7, top_k 20, penalty 1.1."""
    d = tmp_path_factory.mktemp("opinionated") / "model"
    shutil.copytree(tiny_dir, d)
    cfg = json.loads((d / "generation_config.json").read_text())
    cfg.update(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.1, max_new_tokens=3)
    (d / "generation_config.json").write_text(json.dumps(cfg))
    return d


def test_is_a_policy(tiny_policy):
    assert isinstance(tiny_policy, Policy)
    assert tiny_policy.model.dtype == torch.float32 and tiny_policy.device.type == "cpu"


def test_model_generation_config_is_not_applied(opinionated_dir):
    policy = HFPolicy(opinionated_dir, device="cpu")
    assert policy.model.generation_config.temperature == 0.7  # the file was really read...
    tok = policy.tokenizer
    prompts = [prompt(tok, "hi"), prompt(tok, "a longer request for the model")]
    out = policy.generate(prompts, SamplingParams(max_new_tokens=12, seed=1))
    assert any(len(c.token_ids) > 3 for c in out)  # ...its max_new_tokens=3 was not used
    # log-probs are those of the raw temperature-1 distribution, not of temperature 0.7 / penalty 1.1
    assert sampled_vs_recomputed(policy, prompts, out) < 1e-4
    assert sampled_vs_recomputed(policy, prompts, out, temperature=0.7) > 0.05
    # top_k=20 would make every sampled token one of the 20 most likely; near-uniform logits say otherwise
    ranks = []
    for p, c in zip(prompts, out):
        ids = torch.tensor([p + list(c.token_ids)])
        with torch.no_grad():
            logits = policy.model(input_ids=ids).logits[0, len(p) - 1 : -1]
        ranks += [int((row > row[t]).sum()) for row, t in zip(logits, c.token_ids)]
    assert max(ranks) >= 20


def test_explicit_parameters_are_applied(tiny_policy, tokenizer):
    prompts = [prompt(tokenizer, "hi")]
    hot = tiny_policy.generate(prompts, SamplingParams(temperature=0.7, max_new_tokens=16, seed=3))
    assert sampled_vs_recomputed(tiny_policy, prompts, hot, temperature=0.7) < 1e-4
    top5 = tiny_policy.generate(prompts, SamplingParams(top_k=5, max_new_tokens=16, seed=3))
    ids = torch.tensor([prompts[0] + list(top5[0].token_ids)])
    with torch.no_grad():
        logits = tiny_policy.model(input_ids=ids).logits[0, len(prompts[0]) - 1 : -1]
    assert all(int((row > row[t]).sum()) < 5 for row, t in zip(logits, top5[0].token_ids))


def test_each_sequence_stops_at_its_own_end_of_turn(tiny_policy, tokenizer):
    prompts = [prompt(tokenizer, "x" * i) for i in range(8)]
    out = tiny_policy.generate(prompts, SamplingParams(max_new_tokens=12, seed=0))
    eot = set(tiny_policy.stop_token_ids)
    reasons = {c.finish_reason for c in out}
    assert reasons == {"stop", "length"}
    for c in out:
        assert len(c.token_ids) == len(c.logprobs) <= 12
        assert not eot & set(c.token_ids[:-1])  # nothing after a stop token
        assert (c.finish_reason == "stop") == (c.token_ids[-1] in eot)
        assert c.finish_reason == "stop" or len(c.token_ids) == 12
    assert sampled_vs_recomputed(tiny_policy, prompts, out) < 1e-3


def test_seed_makes_sampling_repeatable(tiny_policy, tokenizer):
    prompts = [prompt(tokenizer, "a"), prompt(tokenizer, "bb")]
    a = tiny_policy.generate(prompts, SamplingParams(max_new_tokens=10, seed=7))
    b = tiny_policy.generate(prompts, SamplingParams(max_new_tokens=10, seed=7))
    c = tiny_policy.generate(prompts, SamplingParams(max_new_tokens=10, seed=8))
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert [x.token_ids for x in a] != [x.token_ids for x in c]
    assert a[0].text == tokenizer.decode(list(a[0].token_ids))


def test_each_prompt_samples_from_its_own_seed_whatever_shares_its_call(tiny_policy, tokenizer):
    a, b = prompt(tokenizer, "a"), prompt(tokenizer, "bb")
    params = SamplingParams(max_new_tokens=10)
    together = tiny_policy.generate([a, b], params, seeds=[5, 9])
    swapped = tiny_policy.generate([b, a], params, seeds=[9, 5])
    (alone,) = tiny_policy.generate([b], params, seeds=[9])
    assert together[1].token_ids == swapped[0].token_ids == alone.token_ids
    assert together[0].token_ids == swapped[1].token_ids
    assert together[0].token_ids != tiny_policy.generate([a], params, seeds=[6])[0].token_ids
    # Without explicit seeds, prompt i takes params.seed + i (as vLLM and the OpenAI backend send it).
    seeded = tiny_policy.generate([a, b], SamplingParams(max_new_tokens=10, seed=5))
    assert seeded[0].token_ids == tiny_policy.generate([a], SamplingParams(max_new_tokens=10, seed=5))[0].token_ids
    assert seeded[1].token_ids == tiny_policy.generate([b], SamplingParams(max_new_tokens=10, seed=6))[0].token_ids
    with pytest.raises(ValueError, match="1 seeds for 2 prompts"):
        tiny_policy.generate([a, b], params, seeds=[1])


def test_empty_prompt_is_an_error(tiny_policy):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        tiny_policy.generate([[1, 2], []], SamplingParams())


def test_update_weights_bumps_version(tiny_dir):
    policy = HFPolicy(tiny_dir, device="cpu")
    sd = {k: v.clone() for k, v in policy.model.state_dict().items()}
    sd["lm_head.weight"].zero_()
    policy.update_weights(sd)
    assert policy.version == 1 and float(policy.model.lm_head.weight.detach().abs().sum()) == 0.0


def test_processed_logprobs_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    base = torch.log_softmax(logits, -1)
    assert torch.allclose(processed_logprobs(logits, SamplingParams()), base)
    # temperature 0.5 doubles the logits
    assert torch.allclose(processed_logprobs(logits, SamplingParams(temperature=0.5)), torch.log_softmax(2 * logits, -1))
    # top_k 2 keeps tokens 0 and 1
    lp = processed_logprobs(logits, SamplingParams(top_k=2))
    assert torch.allclose(lp[0, :2].exp(), torch.softmax(logits[0, :2], -1)) and lp[0, 2:].exp().sum() == 0
    # probs ~ [.644, .237, .087, .032]: top_p 0.7 keeps the two tokens needed to reach 0.7
    lp = processed_logprobs(logits, SamplingParams(top_p=0.7))
    assert (lp[0].exp() > 0).tolist() == [True, True, False, False]
    # min_p 0.1: keep tokens with p >= 0.0644 -> three tokens
    lp = processed_logprobs(logits, SamplingParams(min_p=0.1))
    assert (lp[0].exp() > 0).tolist() == [True, True, True, False]
    # repetition penalty 2 on seen tokens 0 (positive: halved) and 3 (negative: doubled)
    seen = torch.tensor([[True, False, False, True]])
    lp = processed_logprobs(logits, SamplingParams(repetition_penalty=2.0), seen)
    assert torch.allclose(lp, torch.log_softmax(torch.tensor([[1.0, 1.0, 0.0, -2.0]]), -1))
    assert math.isclose(float(lp.exp().sum()), 1.0, rel_tol=1e-6)


def test_repetition_penalty_uses_each_rows_own_tokens(tiny_policy, tokenizer):
    """Penalised log-probs match a hand computation over prompt + earlier sampled tokens, row by row."""
    prompts = [prompt(tokenizer, "repeat repeat repeat"), prompt(tokenizer, "x")]
    params = SamplingParams(repetition_penalty=1.3, max_new_tokens=6, seed=5)
    out = tiny_policy.generate(prompts, params)
    for p, c in zip(prompts, out):
        ids = p + list(c.token_ids)
        with torch.no_grad():
            logits = tiny_policy.model(input_ids=torch.tensor([ids])).logits[0]
        for k, (t, lp) in enumerate(zip(c.token_ids, c.logprobs)):
            row = logits[len(p) - 1 + k][None]
            seen = torch.zeros_like(row, dtype=torch.bool)
            seen[0, ids[: len(p) + k]] = True
            assert abs(float(processed_logprobs(row, params, seen)[0, t]) - lp) < 1e-4


def test_next_turn_reuses_the_kept_cache_and_samples_what_a_fresh_policy_samples(tiny_dir, tokenizer):
    reusing, fresh = HFPolicy(tiny_dir, device="cpu"), HFPolicy(tiny_dir, device="cpu", reuse_prefix=False)
    first = [prompt(tokenizer, "fix the bug"), prompt(tokenizer, "a longer first message, with more words in it")]
    params = SamplingParams(max_new_tokens=12, seed=3)
    turn1 = reusing.generate(first, params)
    assert [c.token_ids for c in turn1] == [c.token_ids for c in fresh.generate(first, params)]
    # the next turn: each conversation so far, plus an observation of a different length per row
    second = [p + list(c.token_ids) + tokenizer.encode(obs, add_special_tokens=False)
              for p, c, obs in zip(first, turn1, ["ok", "the tests still fail: 3 errors"])]
    before = reusing.reused_tokens
    turn2 = reusing.generate(second, SamplingParams(max_new_tokens=12, seed=4))
    # every row found its own previous turn: all of it but the last sampled token came from the cache
    assert reusing.reused_tokens - before == sum(len(p) + len(c.token_ids) - 1 for p, c in zip(first, turn1))
    expected = fresh.generate(second, SamplingParams(max_new_tokens=12, seed=4))
    assert [c.token_ids for c in turn2] == [c.token_ids for c in expected]
    assert max(abs(a - b) for x, y in zip(turn2, expected) for a, b in zip(x.logprobs, y.logprobs)) < 1e-5
    assert sampled_vs_recomputed(reusing, second, turn2) < 1e-4
    # new weights: nothing kept survives; the second row takes only the start it shares with the first
    reusing.update_weights()
    before = reusing.reused_tokens
    reusing.generate(second, SamplingParams(max_new_tokens=2, seed=4))
    assert reusing.reused_tokens - before == next(i for i, (a, b) in enumerate(zip(*second)) if a != b)


def test_rows_of_one_call_share_their_common_start(tiny_dir, tokenizer):
    """G samples of one task: the first row is prefilled, the others take its cache (all but the last token)."""
    reusing, fresh = HFPolicy(tiny_dir, device="cpu"), HFPolicy(tiny_dir, device="cpu", reuse_prefix=False)
    p = prompt(tokenizer, "fix the failing test in utils.py")
    params = SamplingParams(max_new_tokens=10, seed=2)
    out = reusing.generate([p] * 4, params)
    assert reusing.reused_tokens == 3 * (len(p) - 1) and reusing.prefill_tokens == len(p) + 3
    expected = fresh.generate([p] * 4, params)
    assert [c.token_ids for c in out] == [c.token_ids for c in expected]
    assert max(abs(a - b) for x, y in zip(out, expected) for a, b in zip(x.logprobs, y.logprobs)) < 1e-5


def test_room_cache_samples_what_the_plain_cache_samples(tiny_dir, tokenizer, monkeypatch):
    """The room-reserving decode cache changes where keys live, not what is sampled: rows of different
    lengths, rows that stop early (dropped from the batch) and a next turn grown from a kept prefix."""
    import swe_rl.policy.hf as hf
    from transformers import DynamicCache

    first = [prompt(tokenizer, "x" * i) for i in range(8)]  # the tiny model ends some of these turns early

    def two_turns(policy):
        turn1 = policy.generate(first, SamplingParams(max_new_tokens=16, seed=5))
        second = [p + list(c.token_ids) + tokenizer.encode(" observed", add_special_tokens=False)
                  for p, c in zip(first, turn1)]
        return turn1 + policy.generate(second, SamplingParams(max_new_tokens=16, seed=6))

    room = two_turns(HFPolicy(tiny_dir, device="cpu"))
    assert len({len(c.token_ids) for c in room}) > 1, "no row stopped early: the test lost its point"
    monkeypatch.setattr(hf, "_decode_cache", lambda config, room: DynamicCache(config=config))
    plain = two_turns(HFPolicy(tiny_dir, device="cpu"))
    assert [c.token_ids for c in room] == [c.token_ids for c in plain]
    assert max(abs(a - b) for x, y in zip(room, plain) for a, b in zip(x.logprobs, y.logprobs)) < 1e-6


def test_room_cache_writes_in_place(tiny_dir):
    import swe_rl.policy.hf as hf

    policy = HFPolicy(tiny_dir, device="cpu")
    cache = hf._decode_cache(policy.model.config, room=4)
    layer = cache.layers[0]
    assert type(layer).__name__ == "RoomLayer"
    k = torch.randn(2, 1, 3, 8)
    cache.update(k, k + 1, 0)
    buffer = layer.key_buffer
    for step in range(4):  # the room holds 4 more columns: no new buffer
        cache.update(torch.full((2, 1, 1, 8), float(step)), torch.zeros(2, 1, 1, 8), 0)
        assert layer.key_buffer is buffer
    assert torch.equal(layer.keys[:, :, :3], k) and layer.keys[0, 0, 6, 0].item() == 3.0
    cache.update(torch.zeros(2, 1, 1, 8), torch.zeros(2, 1, 1, 8), 0)  # past the room: grows, keeps the content
    assert layer.key_buffer is not buffer and torch.equal(layer.keys[:, :, :3], k) and layer.get_seq_length() == 8
    cache.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys[0, :, :3], k[1]) and layer.get_seq_length() == 8
