"""The prompts of an episode: the system prompt (with the tools' docs) and the first user message (the issue).

Templates live in `configs/prompts/` (system.txt, instance.txt, demonstration.txt), or in another
directory of the same files (`AgentConfig.prompts_dir`); the tool docs are the tools' own `--help`
texts, collected once per process by running each tool on the host, so the prompt can never
disagree with the tools. A `tools.txt` beside the templates documents only the tools it lists.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from swe_rl.paths import CONFIGS_DIR, TOOLS_DIR
from swe_rl.types import Task

PROMPTS_DIR = CONFIGS_DIR / "prompts"
# Order in which the tools are documented (the test checks it lists every tool in TOOLS_DIR).
TOOL_NAMES = ("open", "goto", "scroll_up", "scroll_down", "create", "edit", "replace", "search_file", "submit")


def render(template: str, **values: str) -> str:
    """Fill `{name}` placeholders by plain replacement: braces elsewhere (code, issues) stay as they are."""
    for name, value in values.items():
        placeholder = "{" + name + "}"
        if placeholder not in template:
            raise ValueError(f"prompt template has no {placeholder} placeholder")
        template = template.replace(placeholder, value)
    return template


def load_template(name: str, prompts_dir: Path = PROMPTS_DIR) -> str:
    path = prompts_dir / name
    try:
        return path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt template not found: {path}") from None


def tool_help(name: str) -> str:
    """The `--help` text of one tool, run with this interpreter (the host has no sandbox PATH)."""
    path = TOOLS_DIR / name
    res = subprocess.run(
        [sys.executable, str(path), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if res.returncode != 0 or not res.stdout.strip():
        raise RuntimeError(f"tool {path}: --help failed (exit {res.returncode}): {res.stderr.strip()}")
    return res.stdout.strip()


@functools.cache
def tool_docs(names: tuple[str, ...] = TOOL_NAMES) -> str:
    return "\n\n".join(tool_help(name) for name in names)


def resolve_prompts_dir(prompts_dir: str | Path) -> Path:
    """"" = configs/prompts; a relative path that is not under the working directory is taken from the repo root."""
    if not str(prompts_dir):
        return PROMPTS_DIR
    path = Path(prompts_dir)
    if not path.is_absolute() and not path.is_dir() and (CONFIGS_DIR.parent / path).is_dir():
        path = CONFIGS_DIR.parent / path
    if not path.is_dir():
        raise FileNotFoundError(f"prompts_dir {prompts_dir}: not a directory")
    return path


def documented_tools(prompts_dir: Path = PROMPTS_DIR) -> tuple[str, ...]:
    """The tools the system prompt documents: those of `tools.txt` when the directory has one, else all."""
    listing = prompts_dir / "tools.txt"
    if not listing.exists():
        return TOOL_NAMES
    names = tuple(line.strip() for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#"))
    unknown = [n for n in names if n not in TOOL_NAMES]
    if unknown or not names:
        raise ValueError(f"{listing}: unknown tool(s) {', '.join(unknown) or '(none listed)'}; known: {', '.join(TOOL_NAMES)}")
    return names


def system_prompt(prompts_dir: Path = PROMPTS_DIR) -> str:
    docs = tool_docs(documented_tools(prompts_dir))
    return render(load_template("system.txt", prompts_dir), tool_docs=docs).strip()


def instance_prompt(task: Task, workdir: str, demonstration: str = "", prompts_dir: Path = PROMPTS_DIR) -> str:
    text = render(load_template("instance.txt", prompts_dir), workdir=workdir, problem_statement=task.problem_statement.strip())
    if demonstration:
        demo = render(load_template("demonstration.txt", prompts_dir), demonstration=demonstration.strip())
        text = demo + text
    return text.strip()


def build_messages(task: Task, workdir: str, demonstration: str = "", prompts_dir: Path = PROMPTS_DIR) -> list[dict[str, str]]:
    """The first two chat messages of an episode."""
    return [
        {"role": "system", "content": system_prompt(prompts_dir)},
        {"role": "user", "content": instance_prompt(task, workdir, demonstration, prompts_dir)},
    ]
