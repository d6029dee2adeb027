"""Policy-gradient losses over token tensors (PAPER.md section 5, step 5), registered by name.

`dapo`: PPO-clip with asymmetric (eps_low, eps_high) and a token-level mean over every action
token of the optimizer step: each micro-batch divides its token sum by the step's total token
count, so splitting a step into micro-batches changes nothing. No KL term, no entropy bonus.
"""

from __future__ import annotations

from typing import Callable

import torch

from swe_rl.registry import Registry

LossFn = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
LOSSES: Registry[LossFn] = Registry("loss")
register_loss = LOSSES.register
get_loss = LOSSES.get


def _clipped_token_losses(
    logprobs: torch.Tensor,  # [B, T] log pi_theta(token)
    old_logprobs: torch.Tensor,  # [B, T] log pi_old(token), from the sampler
    advantages: torch.Tensor,  # [B] one per trajectory, or [B, T] per token (packed rows hold several)
    mask: torch.Tensor,  # [B, T] 1 on sampled assistant tokens
    eps_low: float,
    eps_high: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    mask = mask.to(logprobs.dtype)
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    adv = advantages.to(logprobs.dtype)
    adv = adv[:, None] if adv.ndim == 1 else adv  # [B, 1] or [B, T]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)  # [B, T]
    n = mask.sum().clamp(min=1)
    with torch.no_grad():
        stats = {
            "clip_frac_low": (((ratio < 1.0 - eps_low) & (adv < 0)).to(mask.dtype) * mask).sum() / n,
            "clip_frac_high": (((ratio > 1.0 + eps_high) & (adv > 0)).to(mask.dtype) * mask).sum() / n,
            "approx_kl": ((ratio - 1.0 - log_ratio) * mask).sum() / n,  # k3 estimator of KL(old || new)
            "num_tokens": mask.sum(),
        }
    return per_token * mask, stats


@register_loss("dapo")
def dapo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    total_tokens: int | None = None,  # action tokens in the whole optimizer step; None = this batch's
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level PPO-clip-higher loss: sum over action tokens / number of action tokens in the step."""
    token_losses, stats = _clipped_token_losses(logprobs, old_logprobs, advantages, mask, eps_low, eps_high)
    denominator = total_tokens if total_tokens is not None else int(mask.sum().item())
    return token_losses.sum() / max(denominator, 1), stats


@register_loss("grpo")
def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    total_sequences: int | None = None,  # trajectories in the whole optimizer step; None = this batch's
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO's sequence-level mean: each trajectory's mean token loss, averaged over trajectories."""
    token_losses, stats = _clipped_token_losses(logprobs, old_logprobs, advantages, mask, eps_low, eps_high)
    per_sequence = token_losses.sum(dim=1) / mask.to(token_losses.dtype).sum(dim=1).clamp(min=1)  # [B]
    denominator = total_sequences if total_sequences is not None else logprobs.shape[0]
    return per_sequence.sum() / max(denominator, 1), stats
