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


def _target_logprobs(model: torch.nn.Module, inputs: dict, input_ids: torch.Tensor, temperature: float,
                     wanted: torch.Tensor | None) -> torch.Tensor:
    """[B, T] log p(ids[t] | < t), entry 0 set to 0, for `input_ids` [B, T] run through `model` with `inputs`.

    `wanted` [B, T] marks the entries needed (others may come back 0.0): the output layer then runs only
    at the positions before them. Over a vocabulary of 49k-152k it costs as much as several decoder
    layers at every position, and an agent's action tokens are a small part of its context.
    """
    B, T = input_ids.shape
    # Position p predicts token p + 1: the positions to keep (shared by the rows), or all of them.
    keep = None if wanted is None else wanted[:, 1:].any(0).nonzero()[:, 0]
    if keep is not None and not keep.numel():
        keep = None  # nothing wanted: the full output keeps every parameter in the graph (FSDP, backward)
    logits = model(**inputs, use_cache=False, **({} if keep is None else {"logits_to_keep": keep})).logits
    if temperature != 1.0:
        logits = logits / temperature
    if keep is None:  # shift the targets, not the logits: slicing [B, T, V] costs a copy and a zero-fill backward
        targets = torch.nn.functional.pad(input_ids[:, 1:], (0, 1), value=-100)
    else:
        targets = input_ids[:, keep + 1]
    K, V = logits.shape[1], logits.shape[2]
    nll = torch.nn.functional.cross_entropy(logits.reshape(B * K, V).float(), targets.reshape(B * K), reduction="none", ignore_index=-100)
    if keep is None:
        return torch.nn.functional.pad(-nll.view(B, T)[:, :-1], (1, 0))
    return torch.zeros((B, T), dtype=nll.dtype, device=nll.device).index_copy(1, keep + 1, -nll.view(B, K))


def packed_token_logprobs(model: torch.nn.Module, batch: PackedBatch, *, temperature: float = 1.0,
                          wanted: torch.Tensor | None = None) -> torch.Tensor:
    """[R, L] float32 log-probs of `batch.input_ids`; 0.0 on each example's first token and on padding.

    `wanted` [R, L] (e.g. `batch.loss_mask`): only these entries are needed; the others may be 0.0.
    """
    impl = attn_implementation(model)
    if impl in FLASH:
        inputs, real = flash_inputs(batch)
        flat_wanted = None if wanted is None else wanted.to(real.device)[real][None].bool()
        flat = _target_logprobs(model, inputs, inputs["input_ids"], temperature, flat_wanted)[0]  # [N]
        out = torch.zeros(batch.input_ids.shape, dtype=flat.dtype, device=flat.device)
        out = out.masked_scatter(real, flat)
    else:
        dtype = next(model.parameters()).dtype
        out = _target_logprobs(model, attention_inputs(batch, impl, dtype), batch.input_ids, temperature,
                               None if wanted is None else wanted.to(batch.input_ids.device).bool())
    # Position 0 starts an example (or a padding run): its "prediction" came from the previous example.
    return out.masked_fill((batch.position_ids == 0) | (batch.seq_ids < 0), 0.0)


def masked_nll_sum(model: torch.nn.Module, batch: PackedBatch) -> tuple[torch.Tensor, int]:
    """(sum of -log p over the batch's target tokens, number of target tokens): the SFT loss numerator."""
    lp = packed_token_logprobs(model, batch, wanted=batch.loss_mask)
    return -(lp * batch.loss_mask.to(lp.device)).sum(), int(batch.loss_mask.sum())
