"""Per-sandbox unprivileged uids: allocation across processes, and killing everything a uid runs.

Each local sandbox runs as its own host uid (never root: RLIMIT_NPROC does not bind root),
so the process limit counts only that sandbox and "kill every process of uid U" kills exactly
that sandbox, daemonised children included. A uid is leased by holding an flock on a per-uid
lock file, which the kernel releases when the holder dies, so crashed owners never leak uids.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import time
from pathlib import Path

# Far above login users and the usual subordinate-uid ranges of container runtimes (100000+65536*k).
UID_BASE = 1_000_000_000
UID_COUNT = 65_536


def _lock_dir() -> Path:
    # One fixed place per machine (not $TMPDIR) so every process on the host sees the same leases.
    base = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    d = base / "swe-rl-sandbox-uids"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


class UidLease:
    """An exclusively held uid; `release()` (or process death) frees it. Lock files are never
    unlinked: unlinking a flock'ed file lets two processes lock two different inodes of one name."""

    def __init__(self) -> None:
        d = _lock_dir()
        start = random.randrange(UID_COUNT)
        for i in range(UID_COUNT):
            uid = UID_BASE + (start + i) % UID_COUNT
            fd = os.open(d / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid = uid
            self._fd: int | None = fd
            # A holder marks the file while it holds the uid and clears it on release; a marked file
            # means the previous holder died, maybe leaving processes: kill them first.
            if os.pread(fd, 1, 0):
                kill_once(uid)
            os.pwrite(fd, b"1", 0)
            return
        raise RuntimeError(f"no free sandbox uid in [{UID_BASE}, {UID_BASE + UID_COUNT}) (lock dir {d})")

    def release(self) -> None:
        """Call only once no process of the uid is left (the sandbox's shell and namespace are gone)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # released cleanly: the next holder need not kill anything
            os.close(self._fd)
            self._fd = None


def processes_of(uid: int, *, zombies: bool = True) -> list[int]:
    """Host pids whose real uid is `uid` (zombies, already dead but not yet reaped, included unless told)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                zombie = False
                for line in f:
                    if line.startswith(b"State:"):
                        zombie = line.split()[1] == b"Z"
                    elif line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid and (zombies or not zombie):
                            pids.append(int(name))
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited while we looked
    return pids


def kill_once(uid: int) -> None:
    # kill(-1) issued *as uid* signals every process of that uid in one pass inside the kernel
    # (under the tasklist lock, so a fork bomb cannot outrun it), and never the caller itself.
    # subprocess drops to the uid between fork and exec in C, which is safe in threaded programs.
    if uid < UID_BASE:
        raise ValueError(f"refusing to kill all processes of uid {uid}: not a sandbox uid")
    # bash's builtin kill: bash is there wherever the sandbox runs (procps' kill may not be).
    subprocess.run(["bash", "-c", "kill -KILL -1"], user=uid, group=uid, extra_groups=[],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={}, check=False)


def kill_all(uid: int, *, wait_s: float = 5.0) -> None:
    """SIGKILL every process of `uid` and wait until none is left running (zombies are left to their parent).

    Raises RuntimeError if processes of the uid survive `wait_s` (e.g. stuck in D state)."""
    deadline = time.monotonic() + wait_s
    while True:
        kill_once(uid)
        left = processes_of(uid, zombies=False)
        if not left:
            return
        for pid in left:  # belt and braces: the kill helper itself may not have been able to exec
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"sandbox uid {uid}: processes {left} survive SIGKILL after {wait_s} s")
        time.sleep(0.005)
