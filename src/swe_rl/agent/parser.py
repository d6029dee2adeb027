"""Turn one assistant message into the shell command it asks for, or a format error (PAPER.md section 2).

A valid turn is free-text reasoning plus EXACTLY one fenced command block. Anything
else is a format error whose text goes back to the model as the observation; the
episode continues (agent/loop.py) and RFT masks that turn out of the loss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The paper's wording; the loop and the metrics match on these strings.
CANNOT_EXTRACT = "cannot extract command"
MULTIPLE_COMMANDS = "multiple commands extracted"

# An opening fence may carry an info string (```bash, ```sh, ``` or any other language: every fenced
# block counts as a command block, so a ```python block next to a ```bash one is two commands).
# A closing fence has none, as in CommonMark: inside a block, a "```python" line is content, which
# lets heredocs carry fenced text. Up to 3 spaces of indentation, as in CommonMark.
_OPEN = re.compile(r"^ {0,3}```\s*([\w+-]*)\s*$")
_CLOSE = re.compile(r"^ {0,3}```\s*$")


@dataclass(frozen=True)
class ParsedAction:
    command: str | None  # the command block's text (without the fences); None on a format error
    error: str | None  # CANNOT_EXTRACT or MULTIPLE_COMMANDS; None when `command` is set
    thought: str = ""  # the text outside the block


def find_blocks(text: str) -> tuple[list[tuple[int, int]], bool]:
    """Line spans (open, close) of the complete fenced blocks, and whether a fence is left open."""
    blocks: list[tuple[int, int]] = []
    lines = text.split("\n")
    opened: int | None = None
    for i, line in enumerate(lines):
        if opened is None:
            if _OPEN.match(line):
                opened = i
        elif _CLOSE.match(line):
            blocks.append((opened, i))
            opened = None
    return blocks, opened is not None


def parse_action(text: str) -> ParsedAction:
    """Extract the single command block of an assistant message.

    - no complete block, or an empty one -> CANNOT_EXTRACT;
    - two or more blocks -> MULTIPLE_COMMANDS;
    - a fence left open at the end (typically a generation cut by max_new_tokens) counts as a block
      that cannot be run: alone it is CANNOT_EXTRACT (a half-written command is never executed),
      after a complete block it makes MULTIPLE_COMMANDS.
    """
    blocks, unterminated = find_blocks(text)
    if len(blocks) + unterminated >= 2:
        return ParsedAction(None, MULTIPLE_COMMANDS)
    if not blocks:
        return ParsedAction(None, CANNOT_EXTRACT)
    lines = text.split("\n")
    start, end = blocks[0]
    command = "\n".join(lines[start + 1 : end]).strip("\n")
    if not command.strip():
        return ParsedAction(None, CANNOT_EXTRACT)
    thought = "\n".join(lines[:start] + lines[end + 1 :]).strip()
    return ParsedAction(command, None, thought)
