import math

import pytest

from swe_rl.training.advantages import compute_advantages, nonzero


def test_group_norm_by_hand() -> None:
    # rewards 1, 0, 0, 1: mean 0.5, sample std sqrt(1/3)
    adv = compute_advantages("group_norm", [1.0, 0.0, 0.0, 1.0])
    expected = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert adv == pytest.approx([expected, -expected, -expected, expected])
    assert nonzero(adv) == [True] * 4


def test_identical_rewards_vanish() -> None:
    adv = compute_advantages("group_norm", [-0.5, -0.5, -0.5])
    assert adv == [0.0, 0.0, 0.0]
    assert nonzero(adv) == [False, False, False]
    # one sample equal to the mean is dropped, the others kept
    adv = compute_advantages("group_norm", [0.0, 0.5, 1.0])
    assert nonzero(adv) == [True, False, True]


def test_errors_and_center() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        compute_advantages("group_norm", [1.0])
    with pytest.raises(ValueError, match="unknown advantage"):
        compute_advantages("nope", [1.0, 0.0])
    assert compute_advantages("group_center", [1.0, 0.0]) == [0.5, -0.5]
