"""Turning a graded episode into a scalar reward (PAPER.md section 5, step 2), by name.

`paper`: R = 1[resolved] + a linear step penalty that is 0 below `penalty_start` steps and
reaches -1 at T_max. Each part is returned separately so both can be logged.
"""

from __future__ import annotations

from typing import Callable

from swe_rl.registry import Registry

RewardFn = Callable[..., dict[str, float]]
REWARDS: Registry[RewardFn] = Registry("reward")
register_reward = REWARDS.register


@register_reward("paper")
def paper_reward(*, resolved: bool, num_steps: int, max_steps: int, penalty_start: int = 10) -> dict[str, float]:
    """{"resolved": 1 or 0, "length": 0 for |tau| < start, else (start - |tau|) / (T_max - start)}."""
    if max_steps <= penalty_start:
        raise ValueError(f"paper reward: max_steps ({max_steps}) must exceed penalty_start ({penalty_start})")
    length = 0.0 if num_steps < penalty_start else (penalty_start - num_steps) / (max_steps - penalty_start)
    return {"resolved": float(resolved), "length": length}


@register_reward("binary")
def binary_reward(*, resolved: bool, **_: object) -> dict[str, float]:
    """1[resolved] alone (no length shaping)."""
    return {"resolved": float(resolved)}


def compute_reward(name: str, **kwargs: object) -> tuple[float, dict[str, float]]:
    """The total reward and its parts for the registered reward `name`."""
    parts = REWARDS.get(name)(**kwargs)
    return sum(parts.values()), parts
