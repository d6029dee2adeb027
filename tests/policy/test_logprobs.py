"""token_logprobs agrees with the model's own cross-entropy loss."""

from __future__ import annotations

import torch

from swe_rl.policy.logprobs import token_logprobs


def test_sum_of_logprobs_is_minus_total_cross_entropy(tiny_policy, tokenizer):
    ids = tokenizer.encode("def f(x):\n    return x + 1\n", add_special_tokens=False)
    lps = token_logprobs(tiny_policy.model, ids)
    assert len(lps) == len(ids) and lps[0] == 0.0
    with torch.no_grad():
        loss = tiny_policy.model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
    assert abs(-sum(lps) / (len(ids) - 1) - float(loss)) < 1e-4
