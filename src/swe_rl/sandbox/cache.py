"""Build-once directories in the environment cache: per-key file locks and atomic publication.

Environments, workspace templates and repository mirrors (environments.py, git_source.py)
are built by whichever process needs them first; others wait on the same lock (in
`<cache>/locks/`) and then find the finished directory. A directory is published by one `rename`, so a reader never
sees a half-built one, and a crashed build leaves only a `.tmp-*` directory that the next
holder of the lock removes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def digest(*parts: str, length: int = 10) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def slug(text: str, length: int = 40) -> str:
    """A file-name-safe, readable prefix for cache keys ("django/django" -> "django__django")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("/", "__"))[:length].strip("._") or "x"


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_file` (created if missing; the kernel drops it if we die)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock; the file stays (unlinking a locked file races)


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to `final`; rename it to `final` if the block succeeds.

    Call with the lock for `final` held. Leftovers of crashed builds of the same key are removed
    first; on failure the temporary directory is removed and the exception propagates.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes 0700; the sandbox's unprivileged uid must be able to enter
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
