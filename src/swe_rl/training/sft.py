"""Causal-LM fine-tuning on packed SFT examples: the `train` step of RFT (PAPER.md section 4).

Each optimizer step takes `batch_size` examples (the paper's 64 sequences), packs them into rows
(first-fit decreasing), runs the rows in micro-batches and divides every micro-batch's summed
token loss by the step's total target tokens, so the gradient does not depend on the split.
AdamW, linear warm-up then cosine to 0; checkpoints via `checkpoint.py`, metrics via `metrics_log.py`.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from swe_rl.precision import autocast
from swe_rl.training.checkpoint import export_model, latest_checkpoint, load_checkpoint, save_checkpoint
from swe_rl.training.distributed import DataParallel, enable_activation_checkpointing, idle_pass, micro_batch_plan
from swe_rl.training.logprobs import attn_implementation, masked_nll_sum
from swe_rl.training.metrics_log import MetricsLogger
from swe_rl.training.packing import FLASH, collate, first_fit_decreasing
from swe_rl.training.sft_data import SFTExample


@dataclass(frozen=True)
class SFTConfig:
    lr: float = 5e-6  # peak learning rate (paper)
    weight_decay: float = 0.1  # AdamW, on matrices only (not on biases and norms)
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_steps: int = 10  # linear warm-up, then cosine to 0 at the last step (paper)
    epochs: int = 1  # paper: 1
    batch_size: int = 64  # sequences per optimizer step (paper: 64); the last batch may be smaller
    max_seq_len: int = 8192  # row length for packing; longer examples are dropped and counted
    micro_batch_rows: int = 1  # packed rows per forward/backward (gradient accumulation over the rest)
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    gradient_checkpointing: bool = False
    lora_rank: int = 0  # 0 = full fine-tuning; > 0 = LoRA through `peft` (optional dependency)
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    attn_implementation: str = "auto"  # auto = flash_attention_2 on CUDA when installed, else sdpa
    seed: int = 0  # data order
    save_every: int = 0  # checkpoint every N steps (0 = only at the end)
    keep_last: int = 2  # checkpoints kept
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.micro_batch_rows < 1 or self.max_seq_len < 2 or self.epochs < 1:
            raise ValueError(f"SFTConfig: batch_size, micro_batch_rows, epochs must be >= 1 and max_seq_len >= 2: {self}")


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based): (step+1)/warmup, then cosine to 0 at total."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))


def make_optimizer(model: torch.nn.Module, cfg: SFTConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with decay on weight matrices only, and the warm-up + cosine schedule over `total_steps` (set later)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)


def step_plan(n_examples: int, cfg: SFTConfig) -> list[list[int]]:
    """Example indices of every optimizer step, all epochs; a pure function of (n, seed) so a resume sees the same."""
    plan = []
    for epoch in range(cfg.epochs):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(n_examples, generator=g).tolist()
        plan += [order[i : i + cfg.batch_size] for i in range(0, n_examples, cfg.batch_size)]
    return plan


def examples_digest(examples: Sequence[SFTExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(repr((e.input_ids, e.loss_mask)).encode())
    return h.hexdigest()[:16]


def train_step(model: torch.nn.Module, examples: Sequence[SFTExample], cfg: SFTConfig, *, pad_id: int = 0,
               dp: DataParallel | None = None) -> dict[str, float]:
    """Forward + backward of one global batch (gradients accumulate into .grad); returns its metrics.

    With `dp` (training/distributed.py), `examples` are this rank's `dp.split` of the batch: the loss
    is divided by the batch's GLOBAL target-token count and the metrics are the whole batch's.
    """
    device = next(model.parameters()).device
    rows = first_fit_decreasing([len(e) for e in examples], cfg.max_seq_len)
    total = sum(e.num_loss_tokens for e in examples)
    if dp is not None and dp.enabled:
        total = int(dp.sum([total])[0])
    loss_sum, real, processed = 0.0, 0, 0
    for chunk in micro_batch_plan(rows, cfg.micro_batch_rows, dp):
        if not chunk:  # FSDP: this rank's rows ran out, the others' collectives still need it
            idle_pass(model, backward=True, pad_id=pad_id)
            continue
        batch = collate(examples, chunk, pad_id=pad_id).to(device)
        with autocast(device):
            nll, _ = masked_nll_sum(model, batch)
        (nll / max(total, 1)).backward()
        loss_sum += float(nll.detach())
        real += batch.num_real_tokens
        processed += batch.num_real_tokens if attn_implementation(model) in FLASH else batch.num_tokens
    sums = [loss_sum, float(real), float(processed), float(len(rows))]
    if dp is not None and dp.enabled:
        sums = dp.sum(sums)
    return {"loss": sums[0] / max(total, 1), "loss_tokens": total, "real_tokens": int(sums[1]), "processed_tokens": int(sums[2]), "rows": int(sums[3])}


def prepare_for_training(model: torch.nn.Module, cfg: SFTConfig) -> torch.nn.Module:
    """Gradient checkpointing and LoRA as configured; returns the model to train (a PeftModel with LoRA)."""
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model)
    if cfg.lora_rank > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ImportError("SFTConfig.lora_rank > 0 needs `peft`: pip install 'swe-rl[peft]'") from None
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings would cut the checkpointed graph
    model.train()
    return model


def load_for_training(name_or_dir: str | Path, cfg: SFTConfig, device: str | None = None) -> tuple[torch.nn.Module, Any]:
    """(model ready to train, tokenizer): float32 weights, the configured attention, checkpointing and LoRA."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swe_rl.policy.models import resolve_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    impl = cfg.attn_implementation
    if impl == "auto":
        import importlib.util

        impl = "flash_attention_2" if device.startswith("cuda") and importlib.util.find_spec("flash_attn") else "sdpa"
    path = resolve_model(name_or_dir)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=impl).to(device)
    return prepare_for_training(model, cfg), AutoTokenizer.from_pretrained(path)


def train_sft(
    model: torch.nn.Module,
    examples: Sequence[SFTExample],
    cfg: SFTConfig,
    run_dir: str | Path,
    *,
    tokenizer: Any = None,
    resume: bool = False,
    export: bool = True,
) -> dict[str, Any]:
    """Fine-tune `model` (from `prepare_for_training`) on `examples`; returns a summary of the run.

    Writes `<run_dir>/metrics.jsonl` (+ `tensorboard/`), checkpoints under `<run_dir>/checkpoints/`
    and, with `export`, the final model (LoRA merged) to `<run_dir>/model`.
    resume: continue from the latest checkpoint in `run_dir` (same examples and config required).
    """
    run_dir = Path(run_dir)
    kept = [e for e in examples if len(e) <= cfg.max_seq_len]
    dropped = len(examples) - len(kept)
    if not kept:
        raise ValueError(f"train_sft: none of the {len(examples)} examples fits max_seq_len={cfg.max_seq_len}")
    plan = step_plan(len(kept), cfg)
    total_steps = len(plan)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.warmup_steps, total_steps))
    digest = examples_digest(kept)
    start = 0
    if resume and (ckpt := latest_checkpoint(run_dir)) is not None:
        state = load_checkpoint(ckpt, model, optimizer, scheduler)
        if state.extra.get("examples_digest") != digest:
            raise ValueError(f"resume from {ckpt}: the examples differ from the ones that run trained on")
        start = state.step
    pad_id = getattr(tokenizer, "pad_token_id", None) or 0
    model.train()
    summary: dict[str, Any] = {"examples": len(kept), "dropped_too_long": dropped, "steps": total_steps, "start_step": start}
    with MetricsLogger(run_dir, tensorboard=cfg.tensorboard) as log:
        if log.tensorboard_note:
            print(log.tensorboard_note)
        for step in range(start, total_steps):
            t0 = time.perf_counter()
            m = train_step(model, [kept[i] for i in plan[step]], cfg, pad_id=pad_id)
            params = [p for p in model.parameters() if p.requires_grad]
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            m.update(grad_norm=float(norm), lr=lr, sequences=len(plan[step]), step_s=dt,
                     tokens_per_s=m["real_tokens"] / dt, padding_efficiency=m["real_tokens"] / max(m["processed_tokens"], 1))
            log.log(step + 1, m)
            summary.setdefault("first_loss", m["loss"])
            summary["last_loss"] = m["loss"]
            done = step + 1
            if done == total_steps or (cfg.save_every and done % cfg.save_every == 0):
                save_checkpoint(run_dir, model, tokenizer, optimizer, scheduler, done,
                                extra={"examples_digest": digest, "total_steps": total_steps}, keep_last=cfg.keep_last)
    if export:
        summary["model_dir"] = str(export_model(model, tokenizer, run_dir / "model"))
    return summary
