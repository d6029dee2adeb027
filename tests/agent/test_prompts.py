"""Prompts: tool docs from the tools' --help, templates from configs/prompts/."""

from __future__ import annotations

import pytest

from swe_rl.agent.prompts import PROMPTS_DIR, TOOL_NAMES, build_messages, render, system_prompt, tool_docs, tool_help
from swe_rl.types import Task

TASK = Task(instance_id="o__r-1", repo="o/r", base_commit="x", problem_statement="  Crash on {empty} input.\n")


def test_tool_docs_are_the_help_texts():
    docs = tool_docs()
    for name in TOOL_NAMES:
        assert tool_help(name) in docs
    assert "edit <start>:<end> << 'EOF'" in docs
    assert "{tool_docs}" not in system_prompt() and docs in system_prompt()


def test_messages_and_demonstration():
    system, user = build_messages(TASK, "/repo")
    assert system["role"] == "system" and user["role"] == "user"
    assert "Crash on {empty} input." in user["content"]  # braces in issues are left alone
    assert user["content"].endswith("(Current directory: /repo, current file: none) bash-$")
    _, with_demo = build_messages(TASK, "/repo", demonstration="ASSISTANT:\nhello")
    assert with_demo["content"].index("ASSISTANT:\nhello") < with_demo["content"].index("Crash on")


def test_render_and_templates():
    with pytest.raises(ValueError, match="no {x} placeholder"):
        render("hello", x="1")
    assert {p.name for p in PROMPTS_DIR.iterdir()} >= {"system.txt", "instance.txt", "demonstration.txt"}
    assert len(system_prompt()) < 3000  # the CPU demo's small model pays for every token
