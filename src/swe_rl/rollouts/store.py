"""Trajectory files: JSON lines, one episode per line, appended and flushed as each episode ends.

A run killed mid-write leaves at most one partial last line; `read_trajectories` skips it
with a warning so `--resume` redoes only that episode.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator

from swe_rl.types import Trajectory


def _line(trajectory: Trajectory) -> str:
    return json.dumps(trajectory.to_dict(), ensure_ascii=False) + "\n"


def append_trajectory(path: Path, trajectory: Trajectory) -> None:
    """Append one record and fsync it: nothing finished is lost on a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = _line(trajectory)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def write_trajectories(path: Path, trajectories: Iterable[Trajectory]) -> None:
    """Replace a trajectory file atomically: a crash leaves the old file or the new one, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(_line(t))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def iter_trajectories(path: Path) -> Iterator[Trajectory]:
    """Records of a trajectory file; a torn last line (a crash mid-write) is skipped with a warning."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines) and not line.endswith("\n"):
                warnings.warn(f"{path}:{number}: skipping a partial last line (interrupted write)", stacklevel=2)
                continue
            raise ValueError(f"{path}:{number}: not valid JSON: {e}") from None
        try:
            yield Trajectory.from_dict(record)
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"{path}:{number}: not a trajectory record: {e}") from None


def episode_order(t: Trajectory) -> tuple[str, int]:
    """Sort key (task, sample): a file holds episodes in the order they finished (threads), and anything
    computed from them (SFT data, an RL update, the viewer) must not depend on that order."""
    return t.instance_id, t.sample_index


def read_trajectories(paths: Path | Iterable[Path]) -> list[Trajectory]:
    paths = [paths] if isinstance(paths, Path) else list(paths)
    return [t for p in paths for t in iter_trajectories(p)]


def repair_torn_tail(path: Path) -> None:
    """Cut a partial last line so appending after a crash starts on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
