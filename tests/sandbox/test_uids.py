"""Per-sandbox uid leases: exclusive across processes, freed when the holder dies; kill_all is scoped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from swe_rl.sandbox import uids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="uid leases kill processes as the leased uid: needs root")


def test_leases_are_exclusive_across_processes():
    child = subprocess.Popen(
        [sys.executable, "-c", "from swe_rl.sandbox.uids import UidLease; l = UidLease(); print(l.uid, flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held = int(child.stdout.readline())
        mine = [uids.UidLease() for _ in range(50)]
        assert held not in {m.uid for m in mine} and len({m.uid for m in mine}) == 50
        for m in mine:
            m.release()
    finally:
        child.kill()
        child.wait()
    # the dead child's lease is free again: its lock file can be taken
    import fcntl

    fd = os.open(uids._lock_dir() / str(held), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_kill_all_kills_exactly_one_uid():
    a, b = uids.UidLease(), uids.UidLease()
    try:
        procs = [subprocess.Popen(["setsid", "sleep", "100"], user=u, group=u, extra_groups=[]) for u in (a.uid, b.uid)]
        assert uids.processes_of(a.uid) and uids.processes_of(b.uid)
        uids.kill_all(a.uid)
        procs[0].wait(timeout=5)
        assert uids.processes_of(a.uid) == [] and procs[1].poll() is None
        uids.kill_all(b.uid)
        procs[1].wait(timeout=5)
    finally:
        a.release()
        b.release()


def test_kill_all_refuses_ordinary_uids():
    with pytest.raises(ValueError, match="not a sandbox uid"):
        uids.kill_all(0)
