"""The RL optimizer step on hand-built trajectories with the `tiny` model (real forward/backward, real AdamW)."""

from __future__ import annotations

import pytest
import torch

from swe_rl.training.losses import dapo_loss
from swe_rl.training.rl_step import RLExample, UpdateConfig, accumulate_step, logprob_gap, make_rl_optimizer, rl_update, trainer_logprobs


def _example(seed: int, n: int, advantage: float, *, prompt: int = 6, vocab: int = 500) -> RLExample:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (n,), generator=g).tolist()
    mask = [0] * prompt + [1] * (n - prompt)
    return RLExample(ids, mask, [0.0] * n, advantage)


def _with_own_logprobs(model, examples, max_seq_len=64):
    """Examples whose sampler log-probs are the model's own (an on-policy batch, ratio 1)."""
    lps = trainer_logprobs(model, examples, max_seq_len)
    return [RLExample(e.input_ids, e.loss_mask, (lp * torch.tensor(e.loss_mask)).tolist(), e.advantage) for e, lp in zip(examples, lps)]


def _action_logprob_sum(model, example):
    lp = trainer_logprobs(model, [example], 64)[0]
    return float((lp * torch.tensor(example.loss_mask)).sum())


def test_update_raises_positive_and_lowers_negative_advantage_tokens(tiny_model):
    model = tiny_model()
    examples = _with_own_logprobs(model, [_example(1, 20, +1.0), _example(2, 20, -1.0)])
    before = [_action_logprob_sum(model, e) for e in examples]
    opt = make_rl_optimizer(model, lr=1e-3, weight_decay=0.0)
    cfg = UpdateConfig(batch_size=2, max_seq_len=64, eps_low=10.0, eps_high=10.0)  # no clipping: every step moves
    for _ in range(3):
        rl_update(model, opt, examples, cfg)
    after = [_action_logprob_sum(model, e) for e in examples]
    assert after[0] > before[0] + 0.1
    assert after[1] < before[1] - 0.1


def test_micro_batch_split_gives_the_same_update(tiny_model):
    examples = [_example(i, 12 + 3 * i, a) for i, a in enumerate([1.0, -0.5, 2.0, -1.5])]
    results = []
    for rows in (8, 1):  # one micro-batch vs one row per micro-batch
        model = tiny_model()
        opt = make_rl_optimizer(model, lr=1e-4)
        steps, _ = rl_update(model, opt, _with_own_logprobs(model, examples, 32), UpdateConfig(batch_size=4, max_seq_len=32, micro_batch_rows=rows))
        results.append((steps[0], {k: v.detach().clone() for k, v in model.state_dict().items()}))
    (s1, w1), (s2, w2) = results
    assert s1["rows"] > 1  # the split really happened
    assert s1["loss"] == pytest.approx(s2["loss"], abs=1e-6)
    assert s1["grad_norm"] == pytest.approx(s2["grad_norm"], rel=1e-5)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-6, rtol=0)


def test_sequence_aggregation_is_the_mean_of_each_trajectorys_token_mean(tiny_model):
    # Trajectories of 8, 20 and 38 action tokens packed into one row, against each one's own token mean
    # (a batch of one), averaged: the same gradient.
    model = tiny_model()
    examples = _with_own_logprobs(model, [_example(i, n, a) for i, (n, a) in enumerate([(14, 1.0), (26, -0.5), (44, -1.5)])], 128)
    accumulate_step(model, examples, UpdateConfig(batch_size=3, max_seq_len=128, loss_agg="sequence"))
    packed = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    for e in examples:
        accumulate_step(model, [e], UpdateConfig(batch_size=1, max_seq_len=128))
    for k, p in model.named_parameters():
        torch.testing.assert_close(packed[k], p.grad / len(examples), atol=1e-6, rtol=1e-4)
    model.zero_grad(set_to_none=True)
    accumulate_step(model, examples, UpdateConfig(batch_size=3, max_seq_len=128))  # the token mean differs
    assert not all(torch.allclose(packed[k], p.grad, atol=1e-6) for k, p in model.named_parameters())


def test_unknown_loss_aggregation_is_an_error():
    with pytest.raises(ValueError, match="loss_agg"):
        UpdateConfig(batch_size=1, max_seq_len=8, loss_agg="seq")


def test_batch_is_one_pass_in_k_optimizer_steps(tiny_model):
    model = tiny_model()
    examples = _with_own_logprobs(model, [_example(i, 10, (-1.0) ** i) for i in range(5)])
    steps, _ = rl_update(model, make_rl_optimizer(model), examples, UpdateConfig(batch_size=2, max_seq_len=64))
    assert [s["trajectories"] for s in steps] == [2, 2, 1]
    assert sum(s["action_tokens"] for s in steps) == 5 * 4


def test_zero_advantage_samples_contribute_nothing(tiny_model):
    model = tiny_model()
    examples = _with_own_logprobs(model, [_example(1, 16, 0.0), _example(2, 16, 0.0)])
    steps, _ = rl_update(model, make_rl_optimizer(model), examples, UpdateConfig(batch_size=2, max_seq_len=64))
    assert steps[0]["loss"] == 0.0
    assert steps[0]["grad_norm"] == 0.0


def test_observation_tokens_get_no_gradient(tiny_model):
    """Changing the old log-probs of masked tokens changes nothing: only action tokens enter the loss."""
    model = tiny_model()
    e = _with_own_logprobs(model, [_example(3, 16, 1.0)])[0]
    garbled = RLExample(e.input_ids, e.loss_mask, [v if m else -5.0 for v, m in zip(e.sampler_logprobs, e.loss_mask)], 1.0)
    losses = []
    for ex in (e, garbled):
        m = tiny_model()
        steps, _ = rl_update(m, make_rl_optimizer(m), [ex], UpdateConfig(batch_size=1, max_seq_len=64))
        losses.append((steps[0]["loss"], steps[0]["grad_norm"]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_logprob_gap_is_zero_with_the_samplers_own_weights(tiny_model, tokenizer):
    from swe_rl.policy.hf import HFPolicy
    from swe_rl.types import SamplingParams

    model = tiny_model()
    policy = HFPolicy(model, tokenizer=tokenizer, stop_token_ids=[tokenizer.eos_token_id])
    prompt = tokenizer("def add(a, b):\n    return")["input_ids"]
    [c] = policy.generate([prompt], SamplingParams(max_new_tokens=12, seed=0))
    ids = prompt + list(c.token_ids)
    ex = RLExample(ids, [0] * len(prompt) + [1] * len(c.token_ids), [0.0] * len(prompt) + list(c.logprobs), 1.0)
    gap = logprob_gap([ex], trainer_logprobs(model, [ex], 64))
    assert gap["logprob_gap_max"] < 1e-4
    # ... and it is measured: a shifted sampler shows up.
    shifted = RLExample(ex.input_ids, ex.loss_mask, [v - 0.5 * m for v, m in zip(ex.sampler_logprobs, ex.loss_mask)], 1.0)
    assert logprob_gap([shifted], trainer_logprobs(model, [shifted], 64))["logprob_gap_mean"] == pytest.approx(0.5, abs=1e-4)


def test_skipping_the_gap_measurement_gives_the_same_update(tiny_model):
    examples = [_example(i, 14, a) for i, a in enumerate([1.0, -1.0, 0.5])]
    results = []
    for measure in (True, False):
        model = tiny_model()
        steps, batch = rl_update(model, make_rl_optimizer(model, lr=1e-3), _with_own_logprobs(model, examples),
                                 UpdateConfig(batch_size=2, max_seq_len=64, measure_gap=measure))
        results.append((steps, batch, {k: v.detach().clone() for k, v in model.state_dict().items()}))
    (steps1, batch1, w1), (steps2, batch2, w2) = results
    assert "logprob_gap_mean" in batch1 and "recompute_logprobs_s" in batch1
    assert "logprob_gap_mean" not in batch2 and "recompute_logprobs_s" not in batch2
    assert batch1["entropy"] == batch2["entropy"]
    assert [s["loss"] for s in steps1] == [s["loss"] for s in steps2]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=0, rtol=0)


def test_tis_weights_are_truncated_and_reported(tiny_model):
    model = tiny_model()
    e = _with_own_logprobs(model, [_example(4, 16, 1.0)])[0]
    # The sampler believed every action token was far less likely: ratio exp(+3) > cap.
    off = RLExample(e.input_ids, e.loss_mask, [v - 3.0 * m for v, m in zip(e.sampler_logprobs, e.loss_mask)], 1.0)
    # TIS needs the recomputed log-probs, so it measures the gap even when told not to
    _, batch = rl_update(model, make_rl_optimizer(model), [off], UpdateConfig(batch_size=1, max_seq_len=64, tis_cap=2.0, measure_gap=False))
    assert batch["tis_weight_mean"] == pytest.approx(2.0)
    assert batch["tis_capped_frac"] == 1.0
    assert batch["logprob_gap_mean"] == pytest.approx(3.0, abs=1e-4)


def test_dapo_loss_takes_per_token_advantages():
    lp = torch.tensor([[-1.0, -2.0, -0.5]])
    old = torch.tensor([[-1.0, -1.0, -1.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    per_seq, _ = dapo_loss(lp, old, torch.tensor([2.0]), mask)
    per_tok, _ = dapo_loss(lp, old, torch.tensor([[2.0, 2.0, 2.0]]), mask)
    assert float(per_seq) == pytest.approx(float(per_tok))
    mixed, _ = dapo_loss(lp, old, torch.tensor([[0.0, 1.0, -1.0]]), mask)
    # token 1: ratio e^-1, A=+1 -> -e^-1 ; token 2: ratio e^0.5 > 1.28, A=-1 -> -min(-e^0.5, -1.28) = e^0.5
    assert float(mixed) == pytest.approx((-torch.exp(torch.tensor(-1.0)) + torch.exp(torch.tensor(0.5))).item() / 2, rel=1e-6)


def test_trajectory_becomes_an_example_without_its_trailing_observation():
    """The last observation follows the last action token: no loss, nothing after it to train, and it would
    push the example past the context length it was sampled under (the packed row length)."""
    from swe_rl.types import Trajectory

    t = Trajectory("t", 0, [], [5, 6, 7, 8, 9, 10], [0, 1, 1, 0, 0, 0], [0.0, -1.0, -2.0, 0.0, 0.0, 0.0], [], "context_limit", "")
    e = RLExample.from_trajectory(t, 0.5)
    assert (e.input_ids, e.loss_mask, e.sampler_logprobs, e.advantage) == ([5, 6, 7], [0, 1, 1], [0.0, -1.0, -2.0], 0.5)
    silent = Trajectory("t", 1, [], [5, 6], [0, 0], [0.0, 0.0], [], "context_limit", "")
    assert RLExample.from_trajectory(silent, 0.0).input_ids == [5, 6]  # no action token: nothing to cut at
    with pytest.raises(ValueError, match="differ in length"):
        RLExample.from_trajectory(Trajectory("t", 2, [], [5, 6], [0], [0.0, 0.0], [], "submitted", ""), 1.0)
