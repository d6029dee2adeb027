"""Host-side access to files inside a sandbox's workspace that can never leave it.

`read_file`/`write_file` of the local sandbox take this fast path for plain paths under /repo:
every component is opened relative to the previous one without following symlinks, and anything
unusual (a symlink, a fifo, a device) returns None so the caller goes through the sandbox's shell,
whose view of the file system cannot reach the host.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def workspace_parts(inside: str, workdir: str) -> list[str] | None:
    """The components of `inside` below `workdir`, or None unless it is plainly there (no '..')."""
    parts = [p for p in inside.split("/") if p not in ("", ".")]
    root = [p for p in workdir.split("/") if p]
    if parts[: len(root)] != root or ".." in parts or len(parts) <= len(root):
        return None
    return parts[len(root) :]


def open_beneath(root: Path, parts: list[str], flags: int, *, create_dirs_as: int | None = None) -> int | None:
    """Open root/parts[0]/.../parts[-1] following no symlink; a regular file's fd, or None.

    Raises FileNotFoundError when a component is missing (unless `create_dirs_as` is a uid: missing
    directories are then created and given to it)."""
    dfd = os.open(root, _DIR_FLAGS)
    try:
        for name in parts[:-1]:
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except FileNotFoundError:
                if create_dirs_as is None:
                    raise
                os.mkdir(name, 0o755, dir_fd=dfd)
                os.chown(name, create_dirs_as, create_dirs_as, dir_fd=dfd, follow_symlinks=False)
                nfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError:
                return None  # ELOOP / ENOTDIR: a symlink or a file in the way
            os.close(dfd)
            dfd = nfd
        try:
            # O_NONBLOCK: opening a fifo must not hang the host
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644, dir_fd=dfd)
        except FileNotFoundError:
            raise
        except OSError:
            return None  # a symlink, a fifo without a reader, a directory...
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        if create_dirs_as is not None:
            os.fchown(fd, create_dirs_as, create_dirs_as)
        return fd
    finally:
        os.close(dfd)
