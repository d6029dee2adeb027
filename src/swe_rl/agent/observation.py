"""What the model sees after each turn: the command output (truncated) and the status line.

Format (PAPER.md section 2): output, then `(Current directory: /repo, current file: none) bash-$`.
The current file comes from the tools' state inside the sandbox (agent/tools/_toollib.py),
read by one extra command after each action.
"""

from __future__ import annotations

from swe_rl.sandbox.protocol import Sandbox, SandboxError
from swe_rl.types import ExecResult

STATE_DIR = "/tmp/.swe-rl"  # $SWE_RL_STATE inside the sandbox (the tools' default)
NO_OUTPUT = "Your command ran successfully and did not produce any output."
_STATUS_MARK = "<<SWE_RL_STATUS>>"
# How the output starts when `edit`/`replace`/`create` refused a change that would break Python syntax
# (agent/tools/_toollib.write_checked): the file is left unchanged.
REJECTED_EDIT = "Error: this change would introduce a syntax error, so it was NOT applied"


def truncate(text: str, limit: int) -> str:
    """Keep the head and the tail of `text` (both matter: a traceback's end, a file's start), marker between."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n<... {cut} characters truncated (output limit {limit}) ...>\n{text[len(text) - tail:]}"


def status_line(cwd: str, current_file: str | None) -> str:
    return f"(Current directory: {cwd}, current file: {current_file or 'none'}) bash-$"


def read_status(sandbox: Sandbox, state_dir: str = STATE_DIR) -> tuple[str, str | None]:
    """(working directory of the persistent shell, current file of the viewer or None)."""
    res = sandbox.run(f'printf "%s\\n{_STATUS_MARK}\\n" "$PWD"; cat "{state_dir}/current_file" 2>/dev/null', timeout=10)
    cwd, sep, current = res.output.partition(f"\n{_STATUS_MARK}\n")
    if not sep:
        raise SandboxError(f"cannot read the sandbox status: unexpected output {res.output[:200]!r}")
    return cwd.strip(), current.strip() or None


def command_output(result: ExecResult, limit: int, timeout_s: float) -> str:
    """The command's output as the model sees it: truncated, never empty, timeouts said in words."""
    text = result.output.rstrip("\n")
    if result.timed_out:
        text += f"\nThe command timed out after {timeout_s:g} s and was killed."
    elif not text.strip():
        text = NO_OUTPUT
    return truncate(text, limit)


def format_observation(output: str, cwd: str, current_file: str | None) -> str:
    return f"{output}\n{status_line(cwd, current_file)}"
