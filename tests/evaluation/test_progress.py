import io
import threading

import pytest

from swe_rl.evaluation.progress import RolloutProgress, default_quiet
from tests.evaluation.conftest import trajectory


class Clock:
    """A clock the test advances by hand, so rates and ETAs have exact values."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_quiet_mode_logs_plain_lines_with_rate_resolve_rate_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    with RolloutProgress(4, quiet=True, stream=out, clock=clock, log_every_s=60) as p:
        clock.now += 30
        p.update(trajectory("a", 0, True))  # 30 s after the start: below log_every_s, no line
        clock.now += 30
        p.update(trajectory("b", 0, False))  # 60 s: 2 episodes/min, resolved 1/2, ETA 60 s
        p.update(trajectory("c", 0, None, tokens=(), exit_reason="sandbox_error"))
        p.dropped(1)
        clock.now += 60
        p.update(trajectory("d", 0, True))
    lines = out.getvalue().splitlines()
    assert lines == [
        "rollouts: 4 episodes to run",
        "rollouts: 2/4 episodes (50%), 2.0 episodes/min, resolved 50.0% (1/2), elapsed 1m00s, ETA 1m00s",
        "rollouts: 4/4 episodes (100%), 2.0 episodes/min, resolved 66.7% (2/3), infra errors 1, dropped 1 group, elapsed 2m00s",
    ]


def test_skipped_episodes_of_a_dropped_group_leave_the_total() -> None:
    out = io.StringIO()
    with RolloutProgress(6, quiet=True, stream=out, log_every_s=1e9) as p:
        p.update(trajectory("a", 0, None, tokens=(), exit_reason="sandbox_error"))
        p.dropped(1, skipped_episodes=2)  # task a's other two samples will not run
        for task in ("b", "b", "b"):
            p.update(trajectory(task, 0, True))
    assert p.total == 4
    assert out.getvalue().splitlines()[-1].startswith("rollouts: 4/4 episodes (100%)")
    assert "(stopped early)" not in out.getvalue()


def test_quiet_exit_says_when_a_run_stopped_early() -> None:
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with RolloutProgress(3, quiet=True, stream=out, log_every_s=1e9) as p:
            p.update(trajectory("a", 0, True))
            raise KeyboardInterrupt
    assert out.getvalue().splitlines()[-1].endswith("(stopped early)")
    assert "1/3 episodes" in out.getvalue()


def test_bar_mode_shows_the_bar_and_stats(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)  # CI=true forces quiet mode (tested above)
    out, clock = io.StringIO(), Clock()
    out.isatty = lambda: True  # a terminal, so the bar is drawn
    with RolloutProgress(2, stream=out, clock=clock, description="eval") as p:
        assert not p.quiet
        clock.now += 60
        p.update(trajectory("a", 0, True))
        p.update(trajectory("b", 0, False))
    text = out.getvalue()
    assert "eval" in text and "2/2" in text and "resolved 50.0% (1/2)" in text and "2.0 episodes/min" in text


def test_updates_from_many_threads_are_all_counted() -> None:
    with RolloutProgress(400, quiet=True, stream=io.StringIO(), log_every_s=0) as p:
        threads = [threading.Thread(target=lambda: [p.update(trajectory("a", 0, True)) for _ in range(100)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert (p.done, p.resolved, p.graded) == (400, 400, 400)


def test_quiet_is_automatic_off_a_terminal_or_in_ci(monkeypatch) -> None:
    tty = io.StringIO()
    tty.isatty = lambda: True
    monkeypatch.delenv("CI", raising=False)
    assert default_quiet(io.StringIO()) and not default_quiet(tty)
    monkeypatch.setenv("CI", "true")
    assert default_quiet(tty)
