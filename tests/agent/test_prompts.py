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


def test_a_prompts_dir_with_tools_txt_documents_only_those_tools(tmp_path):
    from swe_rl.agent.prompts import documented_tools, resolve_prompts_dir

    compact = resolve_prompts_dir("configs/prompts_compact")  # relative to the repo root from any cwd
    names = documented_tools(compact)
    assert names == ("search_file", "open", "edit", "submit")
    text = system_prompt(compact)
    assert all(tool_help(n) in text for n in names) and tool_help("replace") not in text
    assert len(text) < len(system_prompt())
    assert resolve_prompts_dir("") == PROMPTS_DIR and documented_tools(PROMPTS_DIR) == TOOL_NAMES
    (tmp_path / "tools.txt").write_text("open\nvim\n")
    with pytest.raises(ValueError, match="unknown tool\\(s\\) vim"):
        documented_tools(tmp_path)
    with pytest.raises(FileNotFoundError, match="prompts_dir nowhere/at/all: not a directory"):
        resolve_prompts_dir("nowhere/at/all")


def test_the_episode_uses_the_configured_prompts(agent_sandbox, tiny, tokenizer):
    from swe_rl.agent.loop import AgentConfig, Episode

    episode = Episode(tiny.task(), agent_sandbox, tokenizer, AgentConfig(prompts_dir="configs/prompts_compact"))
    system, user = episode.builder.messages[:2]
    assert system["content"] == system_prompt(PROMPTS_DIR.parent / "prompts_compact")
    assert user["content"].startswith("Fix this issue in /repo:")
