import math
from itertools import combinations

import pytest

from swe_rl.evaluation.metrics import mean_and_sem, mean_pass_at_k, pass_at_1_over_runs, pass_at_k


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """The definition: the fraction of k-subsets of the n samples that hold at least one correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(samples, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(10, 0, 1), (10, 3, 1), (10, 3, 2), (10, 3, 5), (10, 8, 3), (5, 5, 5), (7, 1, 7)])
def test_pass_at_k_matches_the_definition(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_hand_values() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # 1 - C(7,2)/C(10,2) = 1 - 21/45
    assert pass_at_k(10, 3, 2) == pytest.approx(24 / 45)
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(3, 4, 1)


def test_mean_and_sem_by_hand() -> None:
    # values 0.2, 0.4, 0.6: mean 0.4, sample var 0.04, sem = 0.2 / sqrt(3)
    mean, sem = mean_and_sem([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4)
    assert sem == pytest.approx(0.2 / math.sqrt(3))
    assert mean_and_sem([0.5]) == (0.5, 0.0)


def test_pass_at_1_over_runs_and_pass_at_k() -> None:
    resolved = {"a": [True, True, False], "b": [False, False, False], "c": [True, False, False], "d": [False, True, True]}
    # per-run rates: run0 2/4, run1 2/4, run2 1/4
    mean, sem = pass_at_1_over_runs(resolved)
    assert mean == pytest.approx((0.5 + 0.5 + 0.25) / 3)
    assert sem == pytest.approx(mean_and_sem([0.5, 0.5, 0.25])[1])
    # pass@3 = fraction of tasks solved at least once
    assert mean_pass_at_k(resolved, 3) == pytest.approx(3 / 4)
    # pass@1 with the estimator equals the mean solve rate
    assert mean_pass_at_k(resolved, 1) == pytest.approx((2 / 3 + 0 + 1 / 3 + 2 / 3) / 4)
    with pytest.raises(ValueError, match="different numbers of runs"):
        pass_at_1_over_runs({"a": [True], "b": [True, False]})
