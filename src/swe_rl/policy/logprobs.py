"""Log-probabilities of a stored token sequence under a model, in one forward pass.

The trainer recomputes these for the policy loss; tests compare them with the
sampler's log-probs to prove trajectories are token-exact.
"""

from __future__ import annotations

from typing import Sequence

import torch


def token_logprobs(model, token_ids: Sequence[int], *, temperature: float = 1.0) -> list[float]:
    """log p(token_ids[i] | token_ids[:i]) for every i (0.0 for the first token, which has no context).

    Computed in float32 whatever the model's dtype, under softmax(logits / temperature).
    """
    device = next(model.parameters()).device
    ids = torch.tensor([list(token_ids)], dtype=torch.long, device=device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float() / temperature  # [T-1, V]
    lp = torch.log_softmax(logits, dim=-1).gather(-1, ids[0, 1:, None])[:, 0]
    return [0.0] + lp.tolist()
