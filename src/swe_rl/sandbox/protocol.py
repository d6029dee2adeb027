"""The Sandbox contract every backend implements (DESIGN.md, Contracts: Sandbox).

Agents' commands are untrusted code: a sandbox gives them a writable repository
at `workdir` and nothing else of the host. Backends: `local.py` (bubblewrap),
later `docker.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from swe_rl.types import ExecResult


class SandboxUnavailable(RuntimeError):
    """A backend cannot start here (missing tool, no permission, dead daemon). Never silently replaced."""


class SandboxError(RuntimeError):
    """A sandbox that was running broke (its shell died and could not be restarted)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to everything that runs in a sandbox (they bind root too)."""

    command_timeout_s: float = 60.0  # wall clock per command; the whole process tree is killed after it
    cpu_seconds: int = 600  # RLIMIT_CPU per process
    memory_mb: int = 4096  # RLIMIT_AS per process
    processes: int = 256  # RLIMIT_NPROC for the sandbox's own uid
    file_size_mb: int = 256  # RLIMIT_FSIZE
    tmp_size_mb: int = 512  # size of the private /tmp
    output_bytes: int = 100_000  # command output beyond this is cut, with a marker


@runtime_checkable
class Sandbox(Protocol):
    workdir: str  # the repository's path inside the sandbox ("/repo" for the local backend)

    def run(self, command: str, timeout: float | None = None) -> ExecResult:
        """Run a shell command in the sandbox's persistent shell (cwd and exports persist)."""
        ...

    def read_file(self, path: str) -> str: ...

    def write_file(self, path: str, content: str) -> None: ...

    def close(self) -> None:
        """Kill every process of the sandbox and remove everything it created. Idempotent."""
        ...

    def __enter__(self) -> Sandbox: ...

    def __exit__(self, *exc: object) -> None: ...
