"""Group-normalised advantages over the G samples of one task (PAPER.md section 5, steps 3-4), by name.

Pure functions of reward lists; the RL recipe drops the samples whose advantage is zero
(a group with identical rewards vanishes entirely).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from swe_rl.registry import Registry

AdvantageFn = Callable[[Sequence[float]], list[float]]
ADVANTAGES: Registry[AdvantageFn] = Registry("advantage")
register_advantage = ADVANTAGES.register
ZERO = 1e-8  # |A| below this counts as zero: float noise must not keep a sample alive


@register_advantage("group_norm")
def group_norm(rewards: Sequence[float], eps: float = 1e-6) -> list[float]:
    """A_i = (R_i - mean(R)) / (std(R) + eps), std with Bessel's correction as in GRPO implementations."""
    g = len(rewards)
    if g < 2:
        raise ValueError(f"group_norm: a group needs at least 2 samples, got {g}")
    mean = sum(rewards) / g
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (g - 1))
    return [(r - mean) / (std + eps) for r in rewards]


@register_advantage("group_center")
def group_center(rewards: Sequence[float]) -> list[float]:
    """A_i = R_i - mean(R) (Dr. GRPO: no division by the group's std)."""
    mean = sum(rewards) / len(rewards)
    return [r - mean for r in rewards]


def compute_advantages(name: str, rewards: Sequence[float]) -> list[float]:
    return ADVANTAGES.get(name)(rewards)


def nonzero(advantages: Sequence[float]) -> list[bool]:
    """Which samples to keep: the paper drops zero-advantage samples."""
    return [abs(a) > ZERO for a in advantages]
