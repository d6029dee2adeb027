"""The agent's tools (src/swe_rl/agent/tools/), run as the executables they are, through bash.

Most tests run the tools on the host in a temporary directory (fast); the last ones run
them inside a real LocalSandbox, mounted read-only on PATH as every episode sees them.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from swe_rl.agent.observation import REJECTED_EDIT
from swe_rl.agent.prompts import TOOL_NAMES
from swe_rl.paths import TOOLS_DIR

SOURCE = "def f(x):\n    return x + 1\n\n\ndef g(y):\n    return y * 2\n\n\nprint(f(1), g(2))\n"


@pytest.fixture
def sh(tmp_path: Path):
    """Run a bash script the way the sandbox does (`source`d, stdin from /dev/null); returns (rc, output)."""
    (tmp_path / "a.py").write_text(SOURCE)
    script = tmp_path / "cmd.sh"
    env = {
        "PATH": f"{TOOLS_DIR}:{os.environ['PATH']}",
        "SWE_RL_STATE": str(tmp_path / "state"),
        "SWE_RL_WINDOW": "5",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(tmp_path),
    }

    def run(text: str) -> tuple[int, str]:
        script.write_text(text + "\n")
        r = subprocess.run(["bash", "--norc", "-c", f"source {script}"], cwd=tmp_path, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        return r.returncode, r.stdout

    run.dir = tmp_path
    return run


def test_every_tool_is_an_executable_with_help():
    names = sorted(p.name for p in TOOLS_DIR.iterdir() if p.is_file() and not p.name.startswith("_"))
    assert names == sorted(TOOL_NAMES)
    for name in names:
        mode = (TOOLS_DIR / name).stat().st_mode
        assert mode & stat.S_IXUSR and mode & stat.S_IXOTH, f"{name} is not executable"
        r = subprocess.run([TOOLS_DIR / name, "--help"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.startswith(name), (name, r.stdout, r.stderr)
    assert not (TOOLS_DIR / "__pycache__").exists(), "the tools must not write bytecode next to themselves"


def test_open_shows_numbered_window_and_remembers_state(sh):
    rc, out = sh("open a.py")
    path = sh.dir / "a.py"
    assert rc == 0
    assert out.splitlines() == [
        f"[File: {path} (9 lines total)]", "1:def f(x):", "2:    return x + 1", "3:", "4:", "5:def g(y):",
        "(4 more lines below)",
    ]
    assert (sh.dir / "state" / "current_file").read_text() == str(path)
    rc, out = sh("open a.py 8")  # line 8 shown; window clamped to the end of the file
    assert out.splitlines()[1:] == ["(4 more lines above)", "5:def g(y):", "6:    return y * 2", "7:", "8:", "9:print(f(1), g(2))"]


def test_goto_and_scroll(sh):
    sh("open a.py")
    _, out = sh("goto 6")
    assert "(4 more lines above)" in out and "6:    return y * 2" in out
    _, out = sh("scroll_up")
    assert out.splitlines()[1] == "1:def f(x):"
    _, out = sh("scroll_down")
    assert "(5 more lines above)" not in out and "(4 more lines above)" in out  # clamped at the last page
    _, out = sh("scroll_down")
    assert "9:print" in out and "more lines below" not in out


def test_viewer_errors(sh):
    assert sh("goto 3") == (1, "Error: no file is open. Use `open <path>` first.\n")
    assert sh("scroll_down")[0] == 1
    rc, out = sh("open missing.py")
    assert rc == 1 and "missing.py not found" in out
    rc, out = sh("open .")
    assert rc == 1 and "is a directory" in out
    sh("open a.py")
    rc, out = sh("goto 99")
    assert rc == 1 and "past the end" in out and "(9 lines)" in out
    rc, out = sh("goto zero")
    assert rc == 1 and "must be an integer" in out
    rc, out = sh("open")
    assert rc == 1 and out.startswith("Error: usage: open <path>")


def test_edit_replaces_lines_from_a_heredoc(sh):
    sh("open a.py")
    rc, out = sh("edit 2:2 << 'EOF'\n    y = x + 1\n    return y  # $HOME `stays` literal\nEOF")
    assert rc == 0, out
    text = (sh.dir / "a.py").read_text()
    assert text.startswith("def f(x):\n    y = x + 1\n    return y  # $HOME `stays` literal\n\n\ndef g(y):")
    assert "2:    y = x + 1" in out  # the edited window is shown back
    rc, _ = sh("edit 6:5 << 'EOF'\n# inserted\nEOF")  # <end> = <start>-1 inserts
    assert (sh.dir / "a.py").read_text().splitlines()[5] == "# inserted"
    rc, out = sh("edit 6:6 --delete")
    assert rc == 0 and "# inserted" not in (sh.dir / "a.py").read_text(), out


def test_edit_refuses_a_python_syntax_error(sh):
    sh("open a.py")
    rc, out = sh("edit 2:2 << 'EOF'\n    return (x + 1\nEOF")
    assert rc == 1
    assert out.startswith(REJECTED_EDIT)  # how training/sft_data.rejected_edit knows the turn
    assert "(line 2)" in out and "2:    return (x + 1" in out
    assert (sh.dir / "a.py").read_text() == SOURCE
    rc, out = sh("edit 2:2 << 'EOF'\nreturn x\nEOF")  # bad indentation
    assert rc == 1 and out.startswith(REJECTED_EDIT) and ("IndentationError" in out or "SyntaxError" in out)
    assert (sh.dir / "a.py").read_text() == SOURCE


def test_edit_non_python_file_is_not_syntax_checked(sh):
    (sh.dir / "notes.txt").write_text("a\nb\n")
    sh("open notes.txt")
    rc, _ = sh("edit 1:1 << 'EOF'\n(((\nEOF")
    assert rc == 0 and (sh.dir / "notes.txt").read_text() == "(((\nb\n"


def test_edit_errors(sh):
    rc, out = sh("edit 1:1 << 'EOF'\nx\nEOF")
    assert rc == 1 and "no file is open" in out
    sh("open a.py")
    for bad, message in [("2-3", "expected <start>:<end>"), ("0:1", "<start> must be between 1 and 10"),
                         ("20:21", "<start> must be between"), ("5:3", "<end> (3) must be >= <start> (5)")]:
        rc, out = sh(f"edit {bad} << 'EOF'\nx = 1\nEOF")
        assert rc == 1 and message in out, (bad, out)
    rc, out = sh("edit 2:2")  # no heredoc: stdin is /dev/null; must not delete line 2
    assert rc == 1 and "no replacement text" in out
    rc, out = sh("edit 2:2 << 'EOF'\nEOF")  # bash passes an empty heredoc as /dev/null too
    assert rc == 1 and "no replacement text" in out
    rc, out = sh("edit 2:2 --force")
    assert rc == 1 and "usage: edit" in out
    assert (sh.dir / "a.py").read_text() == SOURCE


def test_create_then_fill(sh):
    rc, out = sh("create pkg/new_mod.py")
    assert rc == 0 and out.strip() == f"[File: {sh.dir / 'pkg' / 'new_mod.py'} (0 lines total)]"
    rc, out = sh("edit 1:1 << 'EOF'\nVALUE = 1\nEOF")
    assert rc == 0 and (sh.dir / "pkg" / "new_mod.py").read_text() == "VALUE = 1\n"
    rc, out = sh("create a.py")
    assert rc == 1 and "already exists" in out


def test_replace(sh):
    rc, out = sh("replace a.py 'y * 2' 'y * 3'")
    assert rc == 0 and "Replaced 1 occurrence." in out
    assert "return y * 3" in (sh.dir / "a.py").read_text()
    rc, out = sh("replace a.py return yield")
    assert rc == 1 and "occurs 2 times" in out and "lines 2, 6" in out
    rc, out = sh("replace a.py return yield --replace-all")
    assert rc == 0 and (sh.dir / "a.py").read_text().count("yield") == 2
    rc, out = sh("replace a.py 'nothing like this' x")
    assert rc == 1 and "not found" in out
    rc, out = sh("replace a.py 'def f(x):' 'def f(x:'")
    assert rc == 1 and "NOT applied" in out and "def f(x):" in (sh.dir / "a.py").read_text()
    rc, out = sh("replace missing.py a b")
    assert rc == 1 and "not found" in out
    rc, out = sh("replace a.py only-two-args")
    assert rc == 1 and "usage: replace" in out


def test_search_file(sh):
    (sh.dir / "pkg").mkdir()
    (sh.dir / "pkg" / "b.py").write_text("x = f(2)\n")
    (sh.dir / ".git").mkdir()
    (sh.dir / ".git" / "junk").write_text("f(\n")
    rc, out = sh("search_file 'f(' a.py")
    assert rc == 0 and out.splitlines() == [f"Found 2 matches for 'f(' in {sh.dir / 'a.py'}:", "1:def f(x):", "9:print(f(1), g(2))"]
    _, out = sh("search_file 'f(' .")  # a directory: recursive, .git skipped
    assert "pkg/b.py:1:x = f(2)" in out and "a.py:1:def f(x):" in out and ".git" not in out
    _, out = sh("search_file zebra a.py")
    assert out.startswith("No matches found")
    rc, out = sh("search_file return")
    assert rc == 1 and "no file is open" in out
    sh("open a.py")
    _, out = sh("search_file return")  # defaults to the current file
    assert "2:    return x + 1" in out
    (sh.dir / "big.txt").write_text("hit\n" * 80)
    _, out = sh("search_file hit big.txt")
    assert out.count("\n") == 1 + 50 + 1 and "(30 more matches not shown" in out


def test_submit_prints_the_sentinel(sh):
    assert sh("submit") == (0, "<<SWE_RL_SUBMIT>>\n")
    from swe_rl.agent.loop import SUBMIT_SENTINEL

    assert SUBMIT_SENTINEL == "<<SWE_RL_SUBMIT>>"


def test_window_height_from_state_file(sh, tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "window").write_text("3\n")
    script = f"SWE_RL_WINDOW= open a.py"
    _, out = sh(script)
    assert out.splitlines()[-1] == "(6 more lines below)"


# ------------------------------------------------------------------ inside a real sandbox


@pytest.fixture
def sandbox(tmp_path: Path):
    from swe_rl.sandbox.local import LocalSandbox

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text(SOURCE)
    with LocalSandbox(ws, ro_binds={str(TOOLS_DIR): "/opt/swe-rl/tools"}, path_prepend=["/opt/swe-rl/tools"]) as sb:
        yield sb


def test_tools_inside_a_sandbox(sandbox):
    r = sandbox.run("open a.py 1\nedit 2:2 << 'EOF'\n    return x + 100\nEOF\ncat /tmp/.swe-rl/current_file")
    assert r.exit_code == 0, r.output
    assert "2:    return x + 100" in r.output and r.output.rstrip().endswith("/repo/a.py")
    assert "return x + 100" in sandbox.read_file("a.py")
    r = sandbox.run("command -v edit; touch /opt/swe-rl/tools/x")
    assert r.output.startswith("/opt/swe-rl/tools/edit") and "Read-only file system" in r.output
