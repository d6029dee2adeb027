"""Progress of a rollout or evaluation run: a rich bar with ETA, episodes per minute and the running
resolve rate, or, for CI logs, plain periodic lines (quiet mode, automatic when stdout is not a
terminal or CI=true). The rollout engine (or the recipe around it) reports each finished episode.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, TextIO

from swe_rl.types import Trajectory


def _is_infra_failure(t: Trajectory) -> bool:
    # Same rule as rollouts.engine.is_infra_failure, imported lazily: the engine may import this module.
    from swe_rl.rollouts.engine import is_infra_failure

    return is_infra_failure(t)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def default_quiet(stream: TextIO) -> bool:
    """Quiet when output goes to a file or pipe, or when CI=true: a redrawn bar makes an unreadable log."""
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return ci or not (hasattr(stream, "isatty") and stream.isatty())


class RolloutProgress:
    """`with RolloutProgress(total) as p: p.update(trajectory)`; `p.dropped(n)` counts dropped groups.

    Safe to call from worker threads. `quiet=None` picks the mode from the stream (see `default_quiet`);
    quiet mode prints one line at most every `log_every_s` seconds and always a last line on exit.
    """

    def __init__(
        self,
        total: int,
        quiet: bool | None = None,
        *,
        description: str = "rollouts",
        log_every_s: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.description = description
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = default_quiet(self.stream) if quiet is None else quiet
        self.log_every_s = log_every_s
        self.clock = clock
        self.done = self.resolved = self.graded = self.errors = self.dropped_groups = 0
        self._lock = threading.Lock()
        self._start = self._last_log = 0.0
        self._bar: Any = None
        self._task: Any = None
        self._last_line = ""

    # -- numbers -------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.clock() - self._start

    def episodes_per_minute(self) -> float:
        elapsed = self.elapsed()
        return 60.0 * self.done / elapsed if elapsed > 0 else 0.0

    def resolve_rate(self) -> float | None:
        """Resolved / graded episodes so far (infrastructure failures are not graded)."""
        return self.resolved / self.graded if self.graded else None

    def stats(self) -> str:
        rate = self.resolve_rate()
        parts = [f"{self.episodes_per_minute():.1f} episodes/min",
                 f"resolved {'n/a' if rate is None else f'{100 * rate:.1f}%'} ({self.resolved}/{self.graded})"]
        if self.errors:
            parts.append(f"infra errors {self.errors}")
        if self.dropped_groups:
            parts.append(f"dropped {self.dropped_groups} group{'s' if self.dropped_groups != 1 else ''}")
        return ", ".join(parts)

    def line(self) -> str:
        pct = 100 * self.done / self.total if self.total else 100.0
        text = f"{self.description}: {self.done}/{self.total} episodes ({pct:.0f}%), {self.stats()}, elapsed {_duration(self.elapsed())}"
        if 0 < self.done < self.total:
            text += f", ETA {_duration(self.elapsed() / self.done * (self.total - self.done))}"
        return text

    # -- reporting -----------------------------------------------------------------------------------
    def __enter__(self) -> RolloutProgress:
        self._start = self._last_log = self.clock()
        if self.quiet:
            self._print(f"{self.description}: {self.total} episodes to run")
        else:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                console=Console(file=self.stream), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, stats=self.stats())
        return self

    def update(self, trajectory: Trajectory) -> None:
        with self._lock:
            self.done += 1
            if _is_infra_failure(trajectory):
                self.errors += 1
            elif trajectory.grade is not None:
                self.graded += 1
                self.resolved += trajectory.grade.resolved
            self._refresh(advance=1)

    def dropped(self, n: int = 1, skipped_episodes: int = 0) -> None:
        """Count `n` dropped groups; `skipped_episodes` that will now never run leave the total (and the ETA)."""
        with self._lock:
            self.dropped_groups += n
            self.total = max(self.done, self.total - skipped_episodes)
            self._refresh(advance=0)

    def _refresh(self, advance: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=advance, total=self.total, stats=self.stats())
        elif self.quiet and self.clock() - self._last_log >= self.log_every_s:
            self._last_log = self.clock()
            self._print(self.line())

    def _print(self, text: str) -> None:
        if text != self._last_line:  # the closing line may already be the last periodic one
            print(text, file=self.stream, flush=True)
            self._last_line = text

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        else:
            self._print(self.line() + (" (stopped early)" if self.done < self.total else ""))
