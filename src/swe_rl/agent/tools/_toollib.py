"""Helpers shared by the agent's tools (open, goto, scroll_*, create, edit, replace, search_file, submit).

The tools run INSIDE the sandbox under whatever `python3` the task environment has,
so this is stdlib only and avoids syntax newer than Python 3.6. The viewer state
(current file, first line of the window) lives in files under $SWE_RL_STATE, so it
survives between commands without any host process.
"""

import os
import sys
import warnings

SUBMIT_SENTINEL = "<<SWE_RL_SUBMIT>>"
DEFAULT_STATE = "/tmp/.swe-rl"
DEFAULT_WINDOW = 100
ENCODING = dict(encoding="utf-8", errors="surrogateescape")  # keep undecodable bytes intact on rewrite


class ToolError(Exception):
    """A user-facing error: printed as `Error: ...`, exit status 1."""


# ---------------------------------------------------------------- command line


def run(spec, main):
    """Parse `--help`, call `main(args)`, turn ToolError into a message and exit status 1.

    `spec` = {"usage": "open <path> [<line>]", "description": "...", "args": [("<path>", "..."), ...]}.
    """
    args = sys.argv[1:]
    if args[:1] in (["--help"], ["-h"]):
        out(help_text(spec))
        return
    try:
        main(args)
    except ToolError as e:
        out("Error: %s" % e)
        sys.exit(1)


def help_text(spec):
    lines = [spec["usage"], "  " + spec["description"]]
    for name, desc in spec.get("args", []):
        lines.append("  %s: %s" % (name, desc))
    return "\n".join(lines)


def usage_error(spec):
    raise ToolError("usage: %s" % spec["usage"])


def out(text):
    """Print text; characters the terminal encoding cannot hold become '?' instead of a crash."""
    data = (text + "\n").encode("utf-8", "replace")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def parse_int(value, what):
    try:
        n = int(value)
    except ValueError:
        raise ToolError("%s must be an integer, got %r" % (what, value))
    if n < 1:
        raise ToolError("%s must be >= 1, got %d" % (what, n))
    return n


# ---------------------------------------------------------------- state


def state_dir():
    path = os.environ.get("SWE_RL_STATE") or DEFAULT_STATE
    os.makedirs(path, exist_ok=True)
    return path


def window_height():
    """$SWE_RL_WINDOW, else the `window` file of the state dir (it survives shell restarts), else 100."""
    raw = os.environ.get("SWE_RL_WINDOW")
    if not raw:
        try:
            with open(_state_file("window")) as f:
                raw = f.read().strip()
        except OSError:
            raw = ""
    try:
        return max(1, int(raw))
    except ValueError:
        return DEFAULT_WINDOW


def _state_file(name):
    return os.path.join(state_dir(), name)


def current_file(required=True):
    """The absolute path of the open file, or None (ToolError if required)."""
    try:
        with open(_state_file("current_file")) as f:
            path = f.read().strip()
    except OSError:
        path = ""
    if not path and required:
        raise ToolError("no file is open. Use `open <path>` first.")
    return path or None


def first_line():
    try:
        with open(_state_file("first_line")) as f:
            return max(1, int(f.read().strip()))
    except (OSError, ValueError):
        return 1


def save_state(path, first):
    with open(_state_file("current_file"), "w") as f:
        f.write(path)
    with open(_state_file("first_line"), "w") as f:
        f.write(str(first))


# ---------------------------------------------------------------- files


def resolve(path):
    return os.path.abspath(os.path.expanduser(path))


def read_text(path):
    if not os.path.exists(path):
        raise ToolError("file %s not found" % path)
    if os.path.isdir(path):
        raise ToolError("%s is a directory" % path)
    with open(path, **ENCODING) as f:
        return f.read()


def write_text(path, text):
    with open(path, "w", **ENCODING) as f:
        f.write(text)


def split_lines(text):
    """Lines with their '\\n' kept; only '\\n' separates lines (str.splitlines also splits on \\f etc.)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def clamp_first(first, n_lines):
    return max(1, min(first, n_lines - window_height() + 1))


def render_window(path, first, lines=None):
    """The SWE-agent style numbered window starting at `first` (clamped into the file)."""
    if lines is None:
        lines = split_lines(read_text(path))
    n = len(lines)
    h = window_height()
    first = clamp_first(first, n)
    last = min(n, first + h - 1)
    shown = ["[File: %s (%d lines total)]" % (path, n)]
    if first > 1:
        shown.append("(%d more lines above)" % (first - 1))
    for i in range(first, last + 1):
        shown.append("%d:%s" % (i, lines[i - 1].rstrip("\n")))
    if last < n:
        shown.append("(%d more lines below)" % (n - last))
    return "\n".join(shown)


def show(path, first, lines=None):
    """Make `path` the current file with the window at `first`, and print the window."""
    n = len(lines) if lines is not None else len(split_lines(read_text(path)))
    first = clamp_first(first, n)
    save_state(path, first)
    out(render_window(path, first, lines))


def centered_first(line):
    """First window line that puts `line` about a third of the way down the window."""
    return max(1, line - window_height() // 3)


# ---------------------------------------------------------------- python syntax


def python_syntax_error(path, text):
    """None if `text` compiles (or `path` is not .py), else (message, line)."""
    if not path.endswith(".py"):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarnings (invalid escapes...) are not errors
        try:
            compile(text, path, "exec", dont_inherit=True)
        except SyntaxError as e:
            return ("%s: %s" % (type(e).__name__, e.msg), e.lineno or 1)
        except ValueError as e:  # source code string cannot contain null bytes
            return ("ValueError: %s" % e, 1)
    return None


def write_checked(path, old_text, new_text, focus_line):
    """Write `new_text` unless it breaks Python syntax that `old_text` had right; then show the window.

    Mirrors SWE-agent: an edit that introduces a syntax error is reported and not applied.
    """
    error = python_syntax_error(path, new_text)
    if error is not None and python_syntax_error(path, old_text) is None:
        message, line = error
        new_lines = split_lines(new_text)
        lo, hi = max(1, line - 3), min(len(new_lines), line + 3)
        context = "\n".join("%d:%s" % (i, new_lines[i - 1].rstrip("\n")) for i in range(lo, hi + 1))
        raise ToolError(
            "this change would introduce a syntax error, so it was NOT applied (the file is unchanged).\n"
            "%s (line %d)\nThe file would have looked like this around line %d:\n%s\n"
            "Fix the text (indentation, brackets, quotes) and try again." % (message, line, line, context)
        )
    write_text(path, new_text)
    show(path, centered_first(focus_line), split_lines(new_text))
    if error is not None:
        out("Warning: the file still has a syntax error (%s, line %d); it had one before this change too." % error)
