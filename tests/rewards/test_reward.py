import pytest

from swe_rl.rewards.reward import compute_reward


@pytest.mark.parametrize(
    "resolved, steps, expected_length",
    [(True, 1, 0.0), (True, 9, 0.0), (True, 10, 0.0), (False, 11, -1 / 30), (True, 25, -15 / 30), (False, 40, -1.0)],
)
def test_paper_reward_by_hand(resolved: bool, steps: int, expected_length: float) -> None:
    total, parts = compute_reward("paper", resolved=resolved, num_steps=steps, max_steps=40)
    assert parts == {"resolved": float(resolved), "length": pytest.approx(expected_length)}
    assert total == pytest.approx(float(resolved) + expected_length)


def test_configurable_start_and_errors() -> None:
    _, parts = compute_reward("paper", resolved=False, num_steps=6, max_steps=10, penalty_start=5)
    assert parts["length"] == pytest.approx(-1 / 5)
    with pytest.raises(ValueError, match="must exceed"):
        compute_reward("paper", resolved=True, num_steps=3, max_steps=10, penalty_start=10)
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        compute_reward("nope", resolved=True)
    assert compute_reward("binary", resolved=True, num_steps=80, max_steps=40) == (1.0, {"resolved": 1.0})
