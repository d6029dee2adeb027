"""RL's curriculum: the problems each draw takes, the solve counts, and the between-stage re-filter."""

from __future__ import annotations

import pytest

from swe_rl.training.curriculum import pick_problems, record_solves, refilter_pool
from swe_rl.types import Grade, Trajectory


def test_pool_refilter_and_problem_choice():
    solves = {"easy": [3, 3], "edge": [2, 3], "mid": [1, 3], "never": [0, 3]}
    pool = ["easy", "edge", "mid", "never", "unseen"]
    assert refilter_pool(pool, solves, solved_at=2 / 3, drop_never=True) == ["mid", "unseen"]
    assert refilter_pool(pool, solves, solved_at=2 / 3, drop_never=False) == ["mid", "never", "unseen"]
    first = pick_problems(pool, 3, seed=0, iteration=4)
    assert first == pick_problems(pool, 3, seed=0, iteration=4) and len(set(first)) == 3
    assert pick_problems(pool, 10, seed=0, iteration=0) == sorted(pool)


def test_a_later_draw_takes_problems_the_first_did_not():
    pool = [f"t{i}" for i in range(6)]
    first = pick_problems(pool, 2, seed=0, iteration=1)
    assert first == pick_problems(pool, 2, seed=0, iteration=1, draw=0)  # draw 0 is the paper's one draw
    rest = [i for i in pool if i not in first]
    assert set(pick_problems(rest, 2, seed=0, iteration=1, draw=1)) <= set(rest)


@pytest.mark.parametrize("seed", range(5))  # independent draws repeat a problem within 3 iterations for 47 of seeds 0-49
def test_least_drawn_problems_cover_the_pool_before_one_comes_back(seed):
    pool = [f"t{i}" for i in range(7)]
    solves: dict[str, list[int]] = {}
    seen = []
    for it in range(3):  # 3 iterations of 2 problems: 6 distinct problems of 7
        ids = pick_problems(pool, 2, seed=seed, iteration=it, solves=solves)
        assert ids == pick_problems(pool, 2, seed=seed, iteration=it, solves=solves)  # a resume picks the same
        seen += ids
        for iid in ids:
            solves.setdefault(iid, [0, 0])[1] += 8
    assert len(set(seen)) == 6
    (last,) = set(pool) - set(seen)
    assert last in pick_problems(pool, 2, seed=seed, iteration=3, solves=solves)  # the one left comes first
    # with no episodes recorded, ties are the seeded shuffle: another seed, another first pick (for some seed)
    assert len({tuple(pick_problems(pool, 2, seed=s, iteration=0, solves={})) for s in range(5)}) > 1


def test_solves_count_resolved_episodes_and_attempts():
    def traj(iid: str, resolved: bool | None) -> Trajectory:
        grade = None if resolved is None else Grade(iid, "resolved" if resolved else "unresolved", True)
        return Trajectory(iid, 0, [], [], [], [], [], "submitted", "", grade=grade)

    solves = {"a": [1, 2]}
    record_solves(solves, [traj("a", True), traj("b", False), traj("b", None), traj("a", False)])
    assert solves == {"a": [2, 4], "b": [0, 2]}  # an ungraded episode is an attempt, not a solve
