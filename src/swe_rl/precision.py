"""The trainer's compute precision, one rule for the RL step, SFT and FSDP's idle passes.

On CUDA, float32 master weights compute under bf16 autocast (an lr of 1e-6 is below bf16's
resolution, so the weights themselves stay float32); on CPU everything runs in float32.
Logits are upcast to float32 before any softmax. On an H200 this puts the trainer's log-probs
0.03-0.04 nats (mean) from the sampler's, whatever the sampler's precision (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def autocast(device: torch.device) -> ContextManager:
    """bf16 autocast on CUDA, nothing on CPU (bf16 there is slow and float32 is the reference)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
