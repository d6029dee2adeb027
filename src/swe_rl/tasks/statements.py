"""Problem statements for synthesized tasks, written as a user would file the bug.

The symptom comes from pytest's own report of the failing test (`--tb=short`): the test's
name, the call in the test that failed and the assertion or exception message. Frames
inside library code are dropped, and any line naming the mutated file is removed, so the
statement never points at the file or line of the fix; object addresses are masked, so a
seed gives the same statement. `rewrite` optionally asks an
OpenAI-compatible endpoint to restate it in prose.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^_{3,} (.+?) _{3,}$")
_END = re.compile(r"^={3,} .* ={3,}$")
_FRAME = re.compile(r"^(\S.*?):(\d+): (in \S+|\w+)$")  # "tests/test_x.py:12: in test_add"
MAX_LINES = 8
# An object's address in pytest's report ("<function f at 0x7f24bacc72e0>", and cut short by its saferepr
# "<Foo...x7fa3a4425450>", "<function...7ff0aceb2ac0>"): it changes from run to run, and a seed must
# give the same statement. (A test's own random values, a uuid4, still differ.)
_ADDRESS = re.compile(r"(\b0x|\.\.\.x?)[0-9a-f]{6,}>")


def failure_sections(log: str) -> dict[str, list[str]]:
    """pytest's `--tb=short` failure sections by their header ("test_add", "TestX.test_y[1]")."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in log.splitlines():
        if m := _HEADER.match(line):
            current = sections.setdefault(m.group(1), [])
        elif _END.match(line):
            current = None
        elif current is not None:
            current.append(line)
    return sections


def header_for(test_id: str) -> str:
    """pytest's section header of a node id: `tests/t.py::TestX::test_y[1]` -> `TestX.test_y[1]`."""
    return ".".join(test_id.split("::")[1:])


def symptom(section: list[str], test_file: str, hidden: list[str]) -> tuple[list[str], list[str]]:
    """(code lines of the test's own frames, error lines), without anything naming a `hidden` path."""
    code: list[str] = []
    errors: list[str] = []
    in_test = True
    for line in section:
        if m := _FRAME.match(line):
            in_test = m.group(1) == test_file
            continue
        if line.startswith("E "):
            errors.append(line[1:].strip())
        elif in_test and line.startswith("    ") and line.strip() and not line.lstrip().startswith(">"):
            code.append(line[4:].rstrip())
    def clean(lines: list[str]) -> list[str]:
        return [x for x in lines if not any(names_file(x, h) for h in hidden)]
    return clean(code)[-MAX_LINES:], clean(errors)[:MAX_LINES]


def build_statement(failing: list[str], log: str, hidden: list[str]) -> str:
    """A bug report from the first failing tests' reproduction and error (at most two shown)."""
    sections = failure_sections(log)
    first = failing[0]
    test_file, name = first.split("::", 1)[0], first.split("::")[-1]
    code, errors = symptom(sections.get(header_for(first), []), test_file, hidden)
    kind = _error_kind(errors)
    title = f"`{name}` fails: {kind}" if kind else f"`{name}` fails"
    parts = [title, "", f"Running `{first}` fails."]
    if code:
        parts += ["", "Reproduction (from the test):", "", "```python", *code, "```"]
    if errors:
        parts += ["", "Error:", "", "```", *errors, "```"]
    others = [t for t in failing[1:]]
    if others:
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        parts += ["", f"Also failing: {', '.join(f'`{t}`' for t in others[:3])}{more}."]
    parts += ["", "These tests passed before; the behaviour they check should be restored without changing the tests."]
    return _ADDRESS.sub(r"\1...>", "\n".join(parts) + "\n")


def _error_kind(errors: list[str]) -> str:
    if not errors:
        return ""
    first = errors[0]
    m = re.match(r"^([A-Z]\w*(Error|Exception|Warning))\b", first)
    if m and m.group(1) != "AssertionError":
        return f"{m.group(1)} is raised"
    if first.startswith(("assert", "AssertionError")):
        return "wrong result"
    return ""


def names_file(text: str, file: str) -> bool:
    """True when `text` names `file` by its path or its file name (`test_core.py` does not name `core.py`)."""
    base = re.escape(file.rsplit("/", 1)[-1])
    return file in text or re.search(rf"(?<![\w.-]){base}\b", text) is not None


def mentions(text: str, file: str, line: int) -> bool:
    """True when `text` names the mutated file or its line."""
    return names_file(text, file) or re.search(rf"\bline {line}\b|\.py:{line}\b", text) is not None


def rewrite(statement: str, llm_url: str, model: str) -> str:
    """Restate the report in a user's words through an OpenAI-compatible chat endpoint."""
    from swe_rl.policy.openai import OpenAIPolicy
    from swe_rl.types import SamplingParams

    policy = OpenAIPolicy(llm_url, model, mode="chat", max_workers=1)
    messages = [
        {"role": "system", "content": "You rewrite bug reports as a user of a Python library would file them on "
                                      "GitHub. Keep the reproduction code and the error verbatim. Never guess which "
                                      "file or line causes the bug. Answer with the report only, in Markdown."},
        {"role": "user", "content": statement},
    ]
    done = policy.chat(messages, SamplingParams(temperature=0.0, max_new_tokens=1024, seed=0))
    return done.text.strip() + "\n" if done.text.strip() else statement
