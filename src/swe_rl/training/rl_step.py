"""One RL update (PAPER.md section 5, steps 5-7): a single pass over the kept trajectories in K optimizer steps.

Trajectories (with their group advantages) become packed rows; the DAPO loss compares the
trainer's log-probs with the sampler's (the "old" policy), token-level mean over each optimizer
step's action tokens, so micro-batching changes nothing. Before any update the trainer
recomputes the old log-probs itself and reports the trainer-vs-sampler gap; an optional
truncated importance-sampling (TIS) weight corrects for that gap. With a `DataParallel` group
(training/distributed.py) each rank trains on its share of every step, normalised by the step's
global token count, so the update equals the single-process one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from swe_rl.precision import autocast
from swe_rl.training.distributed import DataParallel, clip_grad_norm, idle_pass, micro_batch_plan
from swe_rl.training.logprobs import packed_token_logprobs
from swe_rl.training.losses import get_loss
from swe_rl.training.packing import PackedBatch, collate, first_fit_decreasing
from swe_rl.types import Trajectory


@dataclass(frozen=True)
class RLExample:
    """One trajectory as the trainer sees it (a `Packable`)."""

    input_ids: list[int]
    loss_mask: list[int]
    sampler_logprobs: list[float]  # aligned with input_ids; the "old" policy of the ratio
    advantage: float

    def __len__(self) -> int:
        return len(self.input_ids)

    @classmethod
    def from_trajectory(cls, t: Trajectory, advantage: float) -> RLExample:
        if not (len(t.token_ids) == len(t.loss_mask) == len(t.sampler_logprobs)):
            raise ValueError(f"trajectory {t.instance_id}#{t.sample_index}: token_ids, loss_mask and sampler_logprobs differ in length")
        # Tokens after the last action token carry no loss and attend to nothing trained: drop them. The
        # last observation is one (appended before the context check), so this also keeps every example
        # within the context length it was sampled under, i.e. the packed row length.
        end = max((i + 1 for i, m in enumerate(t.loss_mask) if m), default=len(t.token_ids))
        return cls(list(t.token_ids[:end]), list(t.loss_mask[:end]), list(t.sampler_logprobs[:end]), float(advantage))


LOSS_AGGS = ("token", "sequence")


@dataclass(frozen=True)
class UpdateConfig:
    batch_size: int  # trajectories per optimizer step (paper: 128, then 256)
    max_seq_len: int  # packed row length (the stage's context length)
    eps_low: float = 0.2
    eps_high: float = 0.28
    loss: str = "dapo"  # a token-level loss of training/losses.py taking `total_tokens`
    # "token": the loss is a mean over the step's action tokens (DAPO, the paper). "sequence": a mean of each
    # trajectory's token mean, so a long trajectory weighs what a short one does; in a group whose failures
    # run longer than its successes, the token mean pushes down the tokens all of them share (the format).
    loss_agg: str = "token"
    micro_batch_rows: int = 1  # packed rows per forward/backward
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    tis_cap: float = 0.0  # TIS: weight tokens by min(exp(trainer_old - sampler), cap); 0 = off
    # Recompute the old log-probs (a forward pass over the batch) to report the trainer-vs-sampler gap;
    # the loss's ratio uses the sampler's, so only the gap metric and TIS (which always recomputes) need it.
    measure_gap: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.micro_batch_rows < 1 or self.max_seq_len < 2 or self.tis_cap < 0:
            raise ValueError(f"UpdateConfig: batch_size, micro_batch_rows >= 1, max_seq_len >= 2, tis_cap >= 0: {self}")
        if self.loss_agg not in LOSS_AGGS:
            raise ValueError(f"loss_agg must be one of {LOSS_AGGS}, got {self.loss_agg!r}")


def _layout(batch: PackedBatch, per_example: Sequence[Sequence[float] | torch.Tensor], fill: float = 0.0) -> torch.Tensor:
    """[R, L] float32 tensor with `per_example[k]` written at example k's span."""
    out = torch.full(batch.input_ids.shape, fill, dtype=torch.float32)
    for k, (r, s, n) in enumerate(batch.spans):
        out[r, s : s + n] = torch.as_tensor(per_example[k], dtype=torch.float32)
    return out


@torch.no_grad()
def trainer_logprobs(model: torch.nn.Module, examples: Sequence[RLExample], max_seq_len: int, *, micro_batch_rows: int = 1, pad_id: int = 0,
                     dp: DataParallel | None = None) -> list[torch.Tensor]:
    """Each example's per-token log-probs under the model's current weights ([n] float32, CPU)."""
    device = next(model.parameters()).device
    rows = first_fit_decreasing([len(e) for e in examples], max_seq_len)
    out: list[torch.Tensor | None] = [None] * len(examples)
    for chunk in micro_batch_plan(rows, micro_batch_rows, dp):
        if not chunk:  # this rank has no rows left; the others still need its FSDP collectives
            idle_pass(model, backward=False, pad_id=pad_id)
            continue
        batch = collate(examples, chunk, pad_id=pad_id).to(device)
        with autocast(device):
            lp = packed_token_logprobs(model, batch, wanted=batch.loss_mask).float().cpu()
        for k, values in zip((j for row in chunk for j in row), batch.unpack(lp)):
            out[k] = values
    return out  # type: ignore[return-value]


def logprob_gap(examples: Sequence[RLExample], trainer_lps: Sequence[torch.Tensor], dp: DataParallel | None = None) -> dict[str, float]:
    """Mean and max |trainer - sampler| log-prob over action tokens (0 when both run the same weights)."""
    diffs = [(lp - torch.tensor(e.sampler_logprobs))[torch.tensor(e.loss_mask, dtype=torch.bool)].abs() for e, lp in zip(examples, trainer_lps)]
    flat = torch.cat(diffs) if diffs else torch.zeros(0)
    if dp is not None and dp.enabled:  # over every rank's examples
        total, n = dp.sum([float(flat.sum()), flat.numel()])
        top = dp.max([float(flat.max()) if flat.numel() else 0.0])[0]
        return {"logprob_gap_mean": total / n if n else 0.0, "logprob_gap_max": top}
    if flat.numel() == 0:
        return {"logprob_gap_mean": 0.0, "logprob_gap_max": 0.0}
    return {"logprob_gap_mean": float(flat.mean()), "logprob_gap_max": float(flat.max())}


def tis_weights(examples: Sequence[RLExample], trainer_lps: Sequence[torch.Tensor], cap: float) -> list[torch.Tensor]:
    """Per-token min(pi_trainer_old / pi_sampler, cap): the truncated importance-sampling correction."""
    return [torch.exp(lp - torch.tensor(e.sampler_logprobs)).clamp(max=cap) for e, lp in zip(examples, trainer_lps)]


def accumulate_step(
    model: torch.nn.Module,
    examples: Sequence[RLExample],
    cfg: UpdateConfig,
    *,
    weights: Sequence[torch.Tensor] | None = None,
    pad_id: int = 0,
    dp: DataParallel | None = None,
) -> dict[str, float]:
    """Forward + backward of one optimizer step's examples (gradients accumulate into .grad).

    With `dp`, `examples` are this rank's share of the step and the metrics are the whole step's.
    """
    device = next(model.parameters()).device
    loss_fn = get_loss(cfg.loss)
    action_tokens = [sum(e.loss_mask) for e in examples]
    total, trajectories = sum(action_tokens), len(examples)
    if dp is not None and dp.enabled:  # the GLOBAL counts: per-rank ones would weight ranks unequally
        total, trajectories = (int(x) for x in dp.sum([total, trajectories]))
    rows = first_fit_decreasing([len(e) for e in examples], cfg.max_seq_len)
    sums = {"loss": 0.0, "clip_frac_low": 0.0, "clip_frac_high": 0.0, "approx_kl": 0.0}
    for chunk in micro_batch_plan(rows, cfg.micro_batch_rows, dp):
        if not chunk:
            idle_pass(model, backward=True, pad_id=pad_id)
            continue
        order = [j for row in chunk for j in row]  # collate numbers spans in this order
        batch = collate(examples, chunk, pad_id=pad_id)
        old = _layout(batch, [examples[j].sampler_logprobs for j in order])
        adv_tokens = [torch.full((len(examples[j]),), examples[j].advantage) for j in order]
        if cfg.loss_agg == "sequence":
            # The loss is linear in a positive scale of A, so A * total / (trajectories * own tokens) turns the
            # token mean over the step into the mean over trajectories of each one's token mean (GRPO's).
            adv_tokens = [a * (total / (trajectories * max(action_tokens[j], 1))) for a, j in zip(adv_tokens, order)]
        if weights is not None:
            # A positive per-token weight w scales -min(r A, clip(r) A) exactly as A -> w A does,
            # so TIS rides on the per-token advantages and every loss in the registry gets it.
            adv_tokens = [a * weights[j] for a, j in zip(adv_tokens, order)]
        adv = _layout(batch, adv_tokens)
        batch = batch.to(device)
        with autocast(device):
            lp = packed_token_logprobs(model, batch, wanted=batch.loss_mask)
        loss, stats = loss_fn(lp.float(), old.to(device), adv.to(device), batch.loss_mask, eps_low=cfg.eps_low, eps_high=cfg.eps_high, total_tokens=total)
        loss.backward()
        sums["loss"] += float(loss.detach())
        n = float(stats["num_tokens"])
        for k in ("clip_frac_low", "clip_frac_high", "approx_kl"):
            sums[k] += float(stats[k]) * n  # per micro-batch means -> token-weighted over the step
    counts = {"trajectories": len(examples), "rows": len(rows)}
    if dp is not None and dp.enabled:
        sums = dict(zip(sums, dp.sum(list(sums.values()))))
        counts = {k: int(v) for k, v in zip(counts, dp.sum(list(counts.values())))}
    for k in ("clip_frac_low", "clip_frac_high", "approx_kl"):
        sums[k] /= max(total, 1)
    return {**sums, "action_tokens": total, **counts}


def rl_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    examples: Sequence[RLExample],
    cfg: UpdateConfig,
    *,
    pad_id: int = 0,
    dp: DataParallel | None = None,
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """One pass over `examples` in ceil(n / batch_size) optimizer steps, in the given order.

    Returns (one metrics dict per optimizer step, batch-level metrics: log-prob gap, TIS weights,
    `entropy` (a Monte-Carlo estimate from the sampled tokens), time to recompute the old log-probs).
    The caller shuffles `examples` if it wants a random order.
    dp: every rank passes the same `examples`; each trains on its `dp.split` of every step.
    """
    if not examples:
        return [], {}
    model.train()
    started = time.perf_counter()
    plan = [list(range(s, min(s + cfg.batch_size, len(examples)))) for s in range(0, len(examples), cfg.batch_size)]
    if dp is not None and dp.enabled:
        plan = [[idx[k] for k in dp.split([len(examples[i]) for i in idx])] for idx in plan]
    local = [i for idx in plan for i in idx]  # this rank's examples (all of them in a single process)
    batch_metrics: dict[str, Any] = {}
    if cfg.measure_gap or cfg.tis_cap > 0:
        old = dict(zip(local, trainer_logprobs(model, [examples[i] for i in local], cfg.max_seq_len, micro_batch_rows=cfg.micro_batch_rows, pad_id=pad_id, dp=dp)))
        batch_metrics.update(logprob_gap([examples[i] for i in local], [old[i] for i in local], dp))
        batch_metrics["recompute_logprobs_s"] = time.perf_counter() - started
    action = torch.cat([torch.tensor(e.sampler_logprobs)[torch.tensor(e.loss_mask, dtype=torch.bool)] for e in examples])
    # E[-log p(sampled token)] is an unbiased estimate of the sampler's per-token entropy, for free.
    batch_metrics["entropy"] = float(-action.mean()) if action.numel() else 0.0
    weights: dict[int, torch.Tensor] | None = None
    if cfg.tis_cap > 0:
        weights = dict(zip(local, tis_weights([examples[i] for i in local], [old[i] for i in local], cfg.tis_cap)))
        w = torch.cat([weights[i][torch.tensor(examples[i].loss_mask, dtype=torch.bool)] for i in local] or [torch.zeros(0)])
        w_sum, capped, n = float(w.sum()), float((w >= cfg.tis_cap).sum()), float(w.numel())
        if dp is not None and dp.enabled:
            w_sum, capped, n = dp.sum([w_sum, capped, n])
        batch_metrics["tis_weight_mean"] = w_sum / n if n else 1.0
        batch_metrics["tis_capped_frac"] = capped / n if n else 0.0
    params = [p for p in model.parameters() if p.requires_grad]
    steps = []
    for idx in plan:
        t0 = time.perf_counter()
        m = accumulate_step(model, [examples[i] for i in idx], cfg, weights=[weights[i] for i in idx] if weights else None, pad_id=pad_id, dp=dp)
        norm = clip_grad_norm(params, cfg.grad_clip, dp)  # the global norm, over every rank's shard
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        m.update(grad_norm=norm, lr=optimizer.param_groups[0]["lr"], step_s=time.perf_counter() - t0)
        steps.append(m)
    model.eval()
    return steps, batch_metrics


def make_rl_optimizer(model: torch.nn.Module, *, lr: float = 1e-6, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
    """AdamW with a constant lr (PAPER.md section 5, step 7); decay on weight matrices only, as in SFT."""
    from types import SimpleNamespace

    from swe_rl.training.sft import make_optimizer

    return make_optimizer(model, SimpleNamespace(lr=lr, weight_decay=weight_decay, betas=betas, adam_eps=eps))  # type: ignore[arg-type]
