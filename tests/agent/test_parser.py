"""parse_action: exactly one fenced command block per assistant turn (PAPER.md section 2)."""

from __future__ import annotations

import pytest

from swe_rl.agent.parser import CANNOT_EXTRACT, MULTIPLE_COMMANDS, parse_action


@pytest.mark.parametrize("fence", ["```", "```bash", "```sh", "``` bash  "])
def test_one_block_is_the_command(fence):
    text = f"The bug is in utils.\n{fence}\nopen src/utils.py 10\n```\nThat should show it."
    action = parse_action(text)
    assert action.error is None
    assert action.command == "open src/utils.py 10"
    assert action.thought == "The bug is in utils.\nThat should show it."


def test_multi_line_command_with_heredoc_kept_verbatim():
    body = "edit 3:4 << 'EOF'\n    if x:\n        return `y` $z\nEOF"
    action = parse_action(f"Fix it.\n```bash\n{body}\n```")
    assert action.command == body


def test_fence_inside_a_block_is_content():
    # A closing fence has no info string, so a heredoc may carry a ```python line.
    body = "cat > README.md << 'EOF'\n```python\nprint(1)\nEOF"
    assert parse_action(f"Docs.\n```bash\n{body}\n```").command == body


@pytest.mark.parametrize("text", ["", "   \n", "I think the bug is in utils.py, let me look.", "run `ls` please",
                                  "```bash\n\n```", "```\n   \n```"])
def test_no_command_cannot_extract(text):
    action = parse_action(text)
    assert (action.command, action.error) == (None, CANNOT_EXTRACT)


def test_two_blocks_are_multiple_commands():
    text = "First\n```bash\nls\n```\nthen\n```bash\ncat a.py\n```"
    assert parse_action(text).error == MULTIPLE_COMMANDS
    text = "Look:\n```python\nprint(1)\n```\nRun:\n```bash\npython a.py\n```"
    assert parse_action(text).error == MULTIPLE_COMMANDS


def test_unterminated_fence():
    # Typically a generation cut by max_new_tokens: a half-written command is never run.
    assert parse_action("Let me edit.\n```bash\nedit 1:2 << 'EOF'\nx = 1").error == CANNOT_EXTRACT
    assert parse_action("A\n```\nls\n```\nB\n```bash\nrm -rf").error == MULTIPLE_COMMANDS


def test_indented_fences_up_to_three_spaces():
    assert parse_action("x\n   ```bash\n   ls\n   ```").command == "   ls"
    assert parse_action("x\n    ```bash\n    ls\n    ```").error == CANNOT_EXTRACT  # 4 spaces: code, not a fence


def test_huge_output_is_parsed_quickly():
    reasoning = "word " * 200_000  # ~1 MB of rambling
    action = parse_action(reasoning + "\n```bash\nsubmit\n```")
    assert action.command == "submit"
    many = "\n".join("```\nls\n```" for _ in range(10_000))
    assert parse_action(many).error == MULTIPLE_COMMANDS
    assert parse_action("```bash\n" + "x" * 1_000_000).error == CANNOT_EXTRACT
