"""Observations: truncated command output, then the status line read from the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from swe_rl.agent.observation import NO_OUTPUT, command_output, format_observation, read_status, status_line, truncate
from swe_rl.paths import TOOLS_DIR
from swe_rl.types import ExecResult


def test_truncate_keeps_head_and_tail_with_a_marker():
    text = "H" * 100 + "M" * 1000 + "T" * 100
    out = truncate(text, 200)
    head, marker, tail = out.split("\n")
    assert head == "H" * 100 and tail == "T" * 100
    assert marker == "<... 1000 characters truncated (output limit 200) ...>"
    assert truncate(text, len(text)) == text
    assert truncate("short", 0) == "short"  # 0 = no limit


def test_command_output():
    assert command_output(ExecResult("", 0), 100, 60) == NO_OUTPUT
    assert command_output(ExecResult("a\nb\n\n", 0), 100, 60) == "a\nb"
    timed = command_output(ExecResult("partial\n", -1, timed_out=True), 100, 5)
    assert timed == "partial\nThe command timed out after 5 s and was killed."
    assert len(command_output(ExecResult("x" * 10_000, 0), 1000, 60)) < 1100


def test_status_line():
    assert status_line("/repo", None) == "(Current directory: /repo, current file: none) bash-$"
    assert format_observation("out", "/repo/src", "/repo/src/a.py") == (
        "out\n(Current directory: /repo/src, current file: /repo/src/a.py) bash-$"
    )


def test_read_status_from_a_sandbox(tmp_path: Path):
    from swe_rl.sandbox.local import LocalSandbox

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    with LocalSandbox(tmp_path, ro_binds={str(TOOLS_DIR): "/opt/swe-rl/tools"}, path_prepend=["/opt/swe-rl/tools"]) as sb:
        assert read_status(sb) == ("/repo", None)
        sb.run("cd pkg && open m.py")
        assert read_status(sb) == ("/repo/pkg", "/repo/pkg/m.py")
