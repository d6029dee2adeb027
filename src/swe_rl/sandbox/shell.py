"""The persistent shell inside a local sandbox: its driver script and the host side of its protocol.

The host never sends command text down the shell's stdin (a command that reads stdin would eat
the protocol): it writes the command to a read-only control file and sends one line `<n>`; the
driver sources the file with stdin from /dev/null and then prints a sentinel
`\\x1e<nonce>:<n>:<exit code>:<cwd>\\0` on the same pipe as the output, so output that came
before the sentinel belongs to command n. `read_until` caps what it keeps, whatever floods in.
"""

from __future__ import annotations

import os
import posixpath
import select
import shlex
import threading
import time
from dataclasses import dataclass
from typing import Callable, Self

from swe_rl.sandbox.protocol import Limits, SandboxError
from swe_rl.types import ExecResult

READ_FILE_CAP = 64 << 20  # read_file through the shell: files beyond this raise instead of truncating
CTL_INSIDE = "/run/swe-rl"  # the control directory's path inside the sandbox (read-only there)

# Arguments: $1 = start directory, $2 = nonce. Runs as the sandbox uid under `bash --norc`.
DRIVER = r"""
exec 3<&0 </dev/null
cd -- "$1" 2>/dev/null || cd /repo
__swe_rl_nonce=$2
unset -v __swe_rl_n
printf '\036%s:0:0:%s\0' "$__swe_rl_nonce" "$PWD"
while IFS= read -r __swe_rl_n <&3; do
    source /run/swe-rl/cmd 3<&- 2>&1
    printf '\036%s:%s:%s:%s\0' "$__swe_rl_nonce" "$__swe_rl_n" "$?" "$PWD"
done
"""


def truncation_marker(omitted: int) -> str:
    return f"\n[... output truncated: {omitted} bytes omitted ...]"


@dataclass
class Reply:
    """What came back for one command: `status` is "done", "timeout" or "eof" (the shell died)."""

    status: str
    output: bytes
    omitted: int  # bytes beyond the cap, counted and dropped
    exit_code: int = -1
    cwd: str = ""

    def text(self) -> str:
        out = self.output.decode("utf-8", errors="replace")
        return out + truncation_marker(self.omitted) if self.omitted else out


def exec_result(reply: Reply, *, t0: float, timeout: float, restart: Callable[[str], str],
                shell_exit_code: Callable[[], int], note: str = "") -> tuple[ExecResult, str | None]:
    """One command's ExecResult from its reply, and the shell's new cwd (None unless it finished).

    A timeout or a dead shell restarts the shell (`restart(why)` returns the note appended to the
    output); `shell_exit_code` reads a dead shell's status. Both transports (local, docker) share this.
    """
    out, cwd = reply.text(), None
    if reply.status == "done":
        cwd, code = reply.cwd, reply.exit_code
    elif reply.status == "timeout":
        out += restart(f"command timed out after {timeout:g} s; every process in the sandbox was killed")
        code = -1
    else:
        code = shell_exit_code()
        out += restart(f"the shell exited with code {code}")
    return ExecResult(output=note.lstrip("\n") + out, exit_code=code, timed_out=reply.status == "timeout",
                      truncated=reply.omitted > 0, duration_s=time.monotonic() - t0), cwd


class ShellReader:
    """Reads one sandbox shell's stdout pipe, keeping bytes that arrive after a sentinel for the next command."""

    def __init__(self, fd: int, nonce: str) -> None:
        self.fd = fd
        self.nonce = nonce.encode()
        self.pending = b""
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def read_until(self, n: int, deadline: float, cap: int) -> Reply:
        prefix = b"\x1e" + self.nonce + b":%d:" % n
        keep = len(prefix) - 1  # a partial prefix may straddle two reads
        head = bytearray()
        omitted = 0

        def emit(data: bytes) -> None:
            nonlocal omitted
            room = cap - len(head)
            if room > 0:
                head.extend(data[:room])
            omitted += max(0, len(data) - max(room, 0))

        buf, self.pending = self.pending, b""
        while True:
            idx = buf.find(prefix)
            if idx >= 0:
                end = buf.find(b"\0", idx + len(prefix))
                if end >= 0:
                    emit(buf[:idx])
                    self.pending = buf[end + 1 :]
                    code, _, cwd = buf[idx + len(prefix) : end].partition(b":")
                    return Reply("done", bytes(head), omitted, int(code), cwd.decode("utf-8", "surrogateescape"))
                if len(buf) - idx > 65536:  # a forged prefix with no terminator: it is just output
                    emit(buf[: idx + 1])
                    buf = buf[idx + 1 :]
            elif len(buf) > keep:
                emit(buf[: len(buf) - keep])
                buf = buf[len(buf) - keep :]
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll.poll(left * 1000):
                emit(buf)
                return Reply("timeout", bytes(head), omitted)
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                emit(buf)
                return Reply("eof", bytes(head), omitted)
            buf += chunk


class PersistentShell:
    """The Sandbox protocol's command path over a persistent shell; a backend supplies the transport.

    A backend sets `limits`, `workdir`, `cwd` and `_reader` (a ShellReader on the shell's output),
    calls `__init__`, and implements `_revive` (restart a shell that died between commands; the
    note for the output, or ""), `_send(n, command)` (deliver command n; OSError = the shell is gone),
    `_shell_exit_code` (a dead shell's status) and `_restart(why)` (kill everything, start a new
    shell, return `self._restarted(why)`); `_finalizer` ends the sandbox (called by `close`).
    """

    limits: Limits
    workdir: str
    cwd: str
    _reader: ShellReader
    _finalizer: Callable[[], None]  # kills the sandbox's processes and removes what it made (once)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._n = 0  # commands sent; the sentinel of command n carries n

    def _revive(self) -> str:
        raise NotImplementedError

    def _send(self, n: int, command: str) -> None:
        raise NotImplementedError

    def _shell_exit_code(self) -> int:
        raise NotImplementedError

    def _restart(self, why: str) -> str:
        raise NotImplementedError

    def _restarted(self, why: str) -> str:
        return f"\n[... {why}; the shell was restarted in {self.cwd} (exported variables were reset) ...]"

    def run(self, command: str, timeout: float | None = None) -> ExecResult:
        return self._exec(command, timeout, self.limits.output_bytes)

    def _exec(self, command: str, timeout: float | None, cap: int) -> ExecResult:
        with self._lock:
            if self._closed:
                raise SandboxError("sandbox is closed")
            timeout = self.limits.command_timeout_s if timeout is None else timeout
            t0 = time.monotonic()
            note = self._revive()
            self._n += 1
            try:
                self._send(self._n, command)
                reply = self._reader.read_until(self._n, t0 + timeout, cap)
            except OSError:  # the pipe or connection is gone: the shell died between commands
                reply = Reply("eof", b"", 0)
            result, cwd = exec_result(reply, t0=t0, timeout=timeout, restart=self._restart,
                                      shell_exit_code=self._shell_exit_code, note=note)
            self.cwd = cwd or self.cwd
            return result

    def _inside(self, path: str) -> str:
        return posixpath.join(self.workdir, path)  # an absolute path stays as it is

    def _read_through_shell(self, inside: str) -> str:
        """A file's text read by the sandbox user's own `cat`: only what that user may read."""
        q = shlex.quote(inside)  # -f: never block on a fifo or read a device
        r = self._exec(f"if [ -f {q} ]; then command cat -- {q}; else echo 'not a regular file'; false; fi",
                       None, READ_FILE_CAP)
        if r.exit_code != 0 or r.timed_out:
            raise FileNotFoundError(f"sandbox: cannot read {inside}: {r.output.strip()[:500]}")
        if r.truncated:
            raise SandboxError(f"sandbox: {inside} is larger than {READ_FILE_CAP} bytes")
        return r.output

    def close(self) -> None:
        """Kill every process of the sandbox and remove what it made. Idempotent."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
