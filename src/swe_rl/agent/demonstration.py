"""Scripted assistant turns that solve a task from its gold patch with OUR tools, and their rendering.

`gold_patch_actions(task)` feeds policy/'s ScriptedPolicy: end-to-end tests, and the one-shot
demonstration of the RFT prompt (PAPER.md section 4), rendered by `render_demonstration`.
`explore_actions(task)` solves a synthesized task the way a model could learn to: every step
uses only what the context already shows (search the named function, open it, search the wrong
line it shows to read its number off a one-line answer, fix, submit); with `stumble`, its first
fix is mis-indented, the tools refuse it, and it writes the fix again.
Hunks are applied bottom-up within a file, so the line numbers of the patch's hunk
headers stay valid without reading the base file.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from swe_rl.agent.tools._toollib import python_syntax_error  # the check `edit` runs in the sandbox
from swe_rl.tasks.mutations import Mutation
from swe_rl.types import Task

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class Hunk:
    old_start: int
    old_len: int
    lines: list[str] = field(default_factory=list)  # body lines with their ' ', '-', '+' prefix


@dataclass
class FileDiff:
    path: str  # relative to the repository root
    new_file: bool = False
    deleted: bool = False
    hunks: list[Hunk] = field(default_factory=list)


def parse_patch(patch: str) -> list[FileDiff]:
    """The files and hunks of a unified `git diff`. Renames and binary changes are not supported."""
    files: list[FileDiff] = []
    old_left = new_left = 0  # body lines still expected in the current hunk
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            files.append(FileDiff(path=line.split(" b/", 1)[-1]))
        elif not files:
            continue
        elif line.startswith("new file mode"):
            files[-1].new_file = True
        elif line.startswith("deleted file mode"):
            files[-1].deleted = True
        elif line.startswith(("rename from", "Binary files", "GIT binary patch")):
            raise ValueError(f"patch of {files[-1].path}: renames and binary changes are not supported")
        elif m := _HUNK.match(line):
            files[-1].hunks.append(Hunk(int(m[1]), 1 if m[2] is None else int(m[2])))
            old_left, new_left = files[-1].hunks[-1].old_len, 1 if m[4] is None else int(m[4])
        elif files[-1].hunks and (old_left or new_left) and line[:1] in (" ", "-", "+", ""):
            line = line or " "  # some tools strip the space of an empty context line
            files[-1].hunks[-1].lines.append(line)
            old_left -= line[0] in " -"
            new_left -= line[0] in " +"
    return files


def hunk_edit(hunk: Hunk) -> tuple[int, int, list[str]]:
    """(start, end, new lines) of the `edit start:end` that applies `hunk`, context lines trimmed."""
    body = hunk.lines
    changed = [i for i, line in enumerate(body) if line[:1] in "-+"]
    first, last = changed[0], changed[-1]
    lead = sum(1 for line in body[:first] if line[:1] == " ")
    # `-a,0` means "insert after line a"; otherwise the hunk's old text starts at line a.
    start = (hunk.old_start + 1 if hunk.old_len == 0 else hunk.old_start) + lead
    middle = body[first : last + 1]
    old_count = sum(1 for line in middle if line[:1] in " -")
    new_lines = [line[1:] for line in middle if line[:1] in " +"]
    return start, start + old_count - 1, new_lines


def _heredoc(lines: list[str]) -> tuple[str, str]:
    delimiter = "EOF"
    while delimiter in lines:
        delimiter += "_"
    return delimiter, "".join(line + "\n" for line in lines)


def turn(thought: str, command: str) -> str:
    return f"{thought}\n```bash\n{command}\n```"


def gold_patch_actions(task: Task) -> list[str]:
    """Assistant turns that apply `task.patch` with open/create/edit and then submit."""
    files = parse_patch(task.patch)
    if not files:
        raise ValueError(f"task {task.instance_id}: the gold patch has no file changes")
    actions = []
    for f in files:
        if f.deleted:
            actions.append(turn(f"{f.path} is not needed any more, so I remove it.", f"rm {f.path}"))
            continue
        if f.new_file:
            actions.append(turn(f"I need a new file, {f.path}.", f"create {f.path}"))
        else:
            first = hunk_edit(f.hunks[0])[0]
            actions.append(turn(f"Let me look at the code in {f.path} around line {first}.", f"open {f.path} {first}"))
        for hunk in reversed(f.hunks):  # bottom-up: earlier hunks' line numbers stay valid
            start, end, new_lines = hunk_edit(hunk)
            if f.new_file:
                start, end = 1, 1
            if not new_lines:  # bash gives an empty heredoc as /dev/null: the edit tool wants --delete
                actions.append(turn(f"I delete lines {start}-{end} of {f.path}.", f"edit {start}:{end} --delete"))
                continue
            delim, text = _heredoc(new_lines)
            what = f"replace lines {start}-{end}" if end >= start else f"insert before line {start}"
            actions.append(turn(f"I {what} of {f.path} to fix the issue.", f"edit {start}:{end} << '{delim}'\n{text}{delim}"))
    actions.append(turn("The fix is in place, so I submit it.", "submit"))
    return actions


def synthesized_function(task: Task) -> str:
    """The bare name of the function a synthesized task mutated (tasks/synthesize.py records it)."""
    qualified = (task.extra.get("synthesis") or {}).get("function", "")
    if not qualified:
        raise ValueError(f"task {task.instance_id}: not a synthesized task (no extra.synthesis.function)")
    return qualified.split(".")[-1]


def definition_hits(task: Task, name: str) -> list[tuple[str, int]]:
    """(path, line) of every `def <name>(` in the task's base tree: what `search_file "def <name>(" .` lists."""
    res = subprocess.run(["git", "-C", task.repo_url, "grep", "-n", "-F", "-e", f"def {name}(", task.base_commit, "--"],
                         capture_output=True, text=True)
    if res.returncode not in (0, 1):  # 1 = no match
        raise ValueError(f"task {task.instance_id}: git grep in {task.repo_url} failed: {res.stderr.strip()}")
    hits = []
    for line in res.stdout.splitlines():
        _, path, number, _ = line.split(":", 3)  # "<commit>:<path>:<line>:<text>"
        hits.append((path, int(number)))
    return hits


def explore_plan(task: Task, hits: list[tuple[str, int]], window: int) -> tuple[str, int, Hunk]:
    """(file, definition line, hunk) of the explore strategy, or ValueError saying which step the context cannot support.

    The issue must name the function, `search_file` must find exactly one definition, the patch must
    be one hunk in that file, the changed lines must show in the `open <file> <line>` window
    (agent/tools/_toollib.py centers a line a third of the way down it), and the first wrong line
    must be quotable as a search pattern.
    """
    name = synthesized_function(task)
    where = f"task {task.instance_id}"
    if not re.search(rf"\b{re.escape(name)}\b", task.problem_statement):
        raise ValueError(f"{where}: the issue does not name the mutated function {name}")
    hits = _code_hits(hits)
    if len(hits) != 1:
        raise ValueError(f"{where}: `def {name}(` is found {len(hits)} times (type stubs aside), not once")
    (path, line), files = hits[0], parse_patch(task.patch)
    if len(files) != 1 or len(files[0].hunks) != 1 or files[0].path != path or files[0].new_file:
        raise ValueError(f"{where}: the patch is not one hunk in {path}")
    hunk = files[0].hunks[0]
    start, end, _ = hunk_edit(hunk)
    if not _in_window(line, start, end, window):
        raise ValueError(f"{where}: lines {start}-{end} are not in the window that `open {path} {line}` shows")
    try:
        shell_quote(wrong_line_pattern(hunk))
    except ValueError as e:
        raise ValueError(f"{where}: the wrong line cannot be searched: {e}") from None
    return path, line, hunk


def _code_hits(hits: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [h for h in hits if not h[0].endswith(".pyi")]  # type stubs repeat every signature; the code is in .py


def _in_window(definition: int, start: int, end: int, window: int) -> bool:
    """Lines start..end show in `open <file> <definition>` (agent/tools/_toollib.py centers a third of the way down)."""
    first = max(1, definition - window // 3)
    return definition <= start and max(start, end) <= first + window - 1


def explore_precheck(candidate: Mutation, checkout: Path, window: int) -> str | None:
    """Why a candidate bug cannot become a task `explore_plan` accepts, checked before its tests run; None if it may.

    Of the plan's conditions, those the source shows: `def <name>(` once outside type stubs, in the
    mutated file, with the mutated line in its window. One more is a heuristic: some file whose path
    contains "test" names the function. The issue is built from the failing tests, and in the four
    projects of benchmarks/learning_proof.py (535 tasks) it never named a function no test names.
    """
    name = candidate.function.split(".")[-1]

    def grep(*args: str) -> list[str]:
        res = subprocess.run(["git", "-C", str(checkout), "grep", *args], capture_output=True, text=True)
        if res.returncode not in (0, 1):  # 1 = no match
            raise ValueError(f"git grep in {checkout} failed: {res.stderr.strip()}")
        return res.stdout.splitlines()

    hits = _code_hits([(path, int(number)) for path, number, _ in
                       (line.split(":", 2) for line in grep("-n", "-F", "-e", f"def {name}(", "--"))])
    if len(hits) != 1 or hits[0][0] != candidate.file:
        return "the function is not defined once, in the mutated file"
    if not _in_window(hits[0][1], candidate.line, candidate.line, window):
        return "the mutated line is not in the window of its definition"
    if not grep("-l", "-w", "-F", "-e", name, "--", "*test*"):
        return "no test file names the function"
    return None


def explore_actions(task: Task, hits: list[tuple[str, int]], window: int, *, stumble: bool = False) -> list[str]:
    """search_file the function the issue names -> open its definition -> search_file the wrong line -> edit it -> submit.

    The third step copies the first changed line from the window into a search of the current file,
    so the edit's line number comes from a short answer instead of being counted off the window.
    stumble: the first edit shifts the fix's first line by 4 spaces, which the tools refuse as a syntax
    error, and the next turn writes the fix again: a demonstration of what to do after a refused edit
    (train with the refused turn masked: recipes/rft.py `mask_rejected_edits`). Tasks where no such
    shift breaks the file's syntax get the plain actions.
    """
    path, line, hunk = explore_plan(task, hits, window)
    name = synthesized_function(task)
    start, end, new_lines = hunk_edit(hunk)
    actions = [
        turn(f"The issue calls {name}. I find its definition.", f'search_file "def {name}(" .'),
        turn(f"It is in {path}. I open it.", f"open {path} {line}"),
    ]
    if pattern := wrong_line_pattern(hunk):
        actions.append(turn(f"This line looks wrong: {pattern}. I find its number.", f"search_file {shell_quote(pattern)}"))
    fix = turn(f"Line {start} is wrong. I fix it.", edit_command(start, end, new_lines))
    if stumble and (wrong := rejected_lines(base_file(task, path), path, start, end, new_lines)):
        actions.append(turn(f"Line {start} is wrong. I fix it.", edit_command(start, end, wrong)))
        fix = turn(f"The edit was not applied. I fix line {start} again.", edit_command(start, end, new_lines))
    return actions + [fix, turn("Fixed, so I submit.", "submit")]


def edit_command(start: int, end: int, new_lines: list[str]) -> str:
    if not new_lines:
        return f"edit {start}:{end} --delete"
    delim, text = _heredoc(new_lines)
    return f"edit {start}:{end} << '{delim}'\n{text}{delim}"


def base_file(task: Task, path: str) -> str:
    """`path` as the task's base commit has it: the file the episode starts with."""
    res = subprocess.run(["git", "-C", task.repo_url, "show", f"{task.base_commit}:{path}"], capture_output=True, text=True)
    if res.returncode != 0:
        raise ValueError(f"task {task.instance_id}: git show {path} in {task.repo_url} failed: {res.stderr.strip()}")
    return res.stdout


def rejected_lines(source: str, path: str, start: int, end: int, new_lines: list[str]) -> list[str] | None:
    """`new_lines` with the first one 4 spaces less indented (else more) such that replacing lines
    start..end of `source` with them fails the `edit` tool's own syntax check; None if neither does."""
    if not new_lines:
        return None
    first, lines = new_lines[0], source.splitlines(keepends=True)
    shifts = ([first[4:]] if first.startswith("    ") else []) + ["    " + first]
    for shifted in shifts:
        wrong = [shifted, *new_lines[1:]]
        text = "".join(lines[: start - 1]) + "".join(x + "\n" for x in wrong) + "".join(lines[end:])
        if python_syntax_error(path, text) is not None:
            return wrong
    return None


def wrong_line_pattern(hunk: Hunk) -> str:
    """The first line a hunk removes, stripped: what the locate step searches ('' for a pure insertion)."""
    return next((line[1:].strip() for line in hunk.lines if line[:1] == "-" and line[1:].strip()), "")


def shell_quote(text: str) -> str:
    """`text` as one shell word in the quotes a person would type: double quotes unless they would expand something."""
    if not any(c in text for c in '"$`\\'):
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    raise ValueError(f"cannot quote {text!r} as one plain shell word")


def never_submit_actions(n: int) -> list[str]:
    """`n` harmless turns that never submit: a scripted episode that runs into the turn limit."""
    return [turn(f"Let me look around (step {i + 1}).", "ls") for i in range(n)]


def render_demonstration(messages: list[dict[str, str]]) -> str:
    """A finished episode's turns as plain text for demonstration.txt (system + issue messages skipped)."""
    parts = []
    for m in messages[2:]:
        label = "ASSISTANT" if m["role"] == "assistant" else "OBSERVATION"
        parts.append(f"{label}:\n{m['content'].strip()}")
    return "\n\n".join(parts)
