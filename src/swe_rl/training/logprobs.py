"""Per-token log-probabilities of a packed batch under the model being trained (with gradients).

Shared by SFT (loss = -mean over target tokens) and the RL trainer (ratios against the
sampler's log-probs). Values are aligned with `input_ids` like `Trajectory.sampler_logprobs`:
entry t is log p(token t | the earlier tokens of its own example), 0.0 where t has no context.
"""

from __future__ import annotations

import torch

from swe_rl.training.packing import FLASH, PackedBatch, attention_inputs, flash_inputs


def attn_implementation(model: torch.nn.Module) -> str:
    return getattr(model.config, "_attn_implementation", None) or "eager"


def _target_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """[B, T, V] logits, [B, T] ids -> [B, T] log p(ids[t] | < t), entry 0 set to 0."""
    B, T, V = logits.shape
    if temperature != 1.0:
        logits = logits / temperature
    # Shift the targets, not the logits: slicing [B, T, V] costs a copy forward and a zero-fill backward.
    targets = torch.nn.functional.pad(input_ids[:, 1:], (0, 1), value=-100)
    nll = torch.nn.functional.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T), reduction="none", ignore_index=-100)
    return torch.nn.functional.pad(-nll.view(B, T)[:, :-1], (1, 0))


def packed_token_logprobs(model: torch.nn.Module, batch: PackedBatch, *, temperature: float = 1.0) -> torch.Tensor:
    """[R, L] float32 log-probs of `batch.input_ids`; 0.0 on each example's first token and on padding."""
    impl = attn_implementation(model)
    if impl in FLASH:
        inputs, real = flash_inputs(batch)
        flat = _target_logprobs(model(**inputs, use_cache=False).logits, inputs["input_ids"], temperature)[0]  # [N]
        out = torch.zeros(batch.input_ids.shape, dtype=flat.dtype, device=flat.device)
        out = out.masked_scatter(real, flat)
    else:
        dtype = next(model.parameters()).dtype
        out = _target_logprobs(model(**attention_inputs(batch, impl, dtype), use_cache=False).logits, batch.input_ids, temperature)
    # Position 0 starts an example (or a padding run): its "prediction" came from the previous example.
    return out.masked_fill((batch.position_ids == 0) | (batch.seq_ids < 0), 0.0)


def masked_nll_sum(model: torch.nn.Module, batch: PackedBatch) -> tuple[torch.Tensor, int]:
    """(sum of -log p over the batch's target tokens, number of target tokens): the SFT loss numerator."""
    lp = packed_token_logprobs(model, batch)
    return -(lp * batch.loss_mask.to(lp.device)).sum(), int(batch.loss_mask.sum())
