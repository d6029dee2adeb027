"""The persistent shell inside a local sandbox: its driver script and the host side of its protocol.

The host never sends command text down the shell's stdin (a command that reads stdin would eat
the protocol): it writes the command to a read-only control file and sends one line `<n>`; the
driver sources the file with stdin from /dev/null and then prints a sentinel
`\\x1e<nonce>:<n>:<exit code>:<cwd>\\0` on the same pipe as the output, so output that came
before the sentinel belongs to command n. `read_until` caps what it keeps, whatever floods in.
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass
from typing import Callable

from swe_rl.types import ExecResult

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
