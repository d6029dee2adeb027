"""Which problems RL draws and keeps (PAPER.md section 5's curriculum), as pure functions over task ids.

Each iteration's draw (`pick_problems`), the solve counts every episode adds to (`record_solves`), and
the between-stage re-filter that drops tasks solved too often or never (`refilter_pool`). recipes/rl.py
checkpoints the counts, so a resumed run draws the same problems.
"""

from __future__ import annotations

import random
from typing import Iterable, Sequence

from swe_rl.types import Trajectory

PROBLEM_ORDERS = ("least_drawn", "random")


def pick_problems(pool: Sequence[str], n: int, seed: int, iteration: int, draw: int = 0,
                  solves: dict[str, list[int]] | None = None) -> list[str]:
    """n problems of the pool for this iteration's draw: a function of (seed, iteration, draw) so a resume picks the same.

    With `solves` (record_solves' [resolved, attempts] per problem): the n problems with the fewest attempts,
    ties in that same seeded order ("least_drawn"); without: a seeded sample ("random").
    """
    rng = random.Random(f"{seed}:{iteration}" if draw == 0 else f"{seed}:{iteration}:{draw}")
    if solves is None:
        return sorted(rng.sample(list(pool), min(n, len(pool))))
    shuffled = rng.sample(list(pool), len(pool))
    return sorted(sorted(shuffled, key=lambda iid: solves.get(iid, [0, 0])[1])[:n])  # a stable sort keeps the ties shuffled


def record_solves(solves: dict[str, list[int]], trajs: Iterable[Trajectory]) -> None:
    """Add each trajectory to solves[iid] = [resolved, attempts] (in place): what refilter_pool reads."""
    for t in trajs:
        rec = solves.setdefault(t.instance_id, [0, 0])
        rec[0] += int(t.grade is not None and t.grade.resolved)
        rec[1] += 1


def refilter_pool(pool: Sequence[str], solves: dict[str, list[int]], *, solved_at: float, drop_never: bool) -> list[str]:
    """Between stages: drop tasks solved >= `solved_at` of the time and (optionally) tasks never solved.

    solves[iid] = [resolved, attempts]; a task with no recorded attempt stays (nothing is known of it).
    """
    kept = []
    for iid in pool:
        resolved, attempts = solves.get(iid, [0, 0])
        if attempts and (resolved / attempts >= solved_at or (drop_never and resolved == 0)):
            continue
        kept.append(iid)
    return kept
