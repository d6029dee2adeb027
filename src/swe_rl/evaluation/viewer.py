"""The trajectory viewer: trajectory JSONL files -> ONE self-contained HTML file (`swe-rl view`).

Episodes are embedded as JSON in a `<script type="application/json">` element and drawn by a
small script (viewer_page.py) with DOM text nodes only: model output is untrusted, so it is
never parsed as HTML. In the embedded JSON every `<`, `>` and `&` is a \\u escape, which is
what keeps a `</script>` inside an observation from closing the data element.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from swe_rl.agent.parser import parse_action
from swe_rl.evaluation.report import completion_tokens
from swe_rl.evaluation.viewer_page import PAGE
from swe_rl.rollouts.engine import is_infra_failure
from swe_rl.rollouts.store import episode_order, read_trajectories
from swe_rl.types import Trajectory

MAX_FIELD_CHARS = 20_000  # per response / observation: thousands of episodes must stay a loadable file
MAX_PATCH_CHARS = 200_000


def _cap(text: str | None, limit: int) -> str:
    text = text or ""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit:,} more characters not shown by the viewer]"


def outcome(t: Trajectory) -> str:
    """resolved / unresolved / error (infrastructure) / ungraded."""
    if is_infra_failure(t):
        return "error"
    if t.grade is None:
        return "ungraded"
    return "resolved" if t.grade.resolved else "unresolved"


def _issue(t: Trajectory) -> str:
    # The first user message holds the issue (PAPER.md section 2).
    return next((m.get("content", "") for m in t.messages if m.get("role") == "user"), "")


def episode_record(index: int, t: Trajectory, max_chars: int = MAX_FIELD_CHARS) -> dict[str, Any]:
    """What the page needs of one episode (no token ids or log-probs: they would dwarf the rest)."""
    steps = []
    for turn in t.turns:
        # A valid turn is shown as reasoning + command; a format-error turn keeps its whole text,
        # since the point of looking at it is to see what the parser could not read.
        thought = turn.response if turn.format_error or turn.command is None else parse_action(turn.response).thought
        steps.append({
            "thought": _cap(thought, max_chars),
            "command": _cap(turn.command, max_chars) if turn.command is not None else None,
            "observation": _cap(turn.observation, max_chars),
            "format_error": turn.format_error,
            "tokens": turn.completion_tokens,
        })
    grade = None
    if t.grade is not None:
        grade = {
            "status": t.grade.status,
            "reason": t.grade.reason,
            "patch_applied": t.grade.patch_applied,
            "f2p": dict(t.grade.fail_to_pass),
            "p2p": dict(t.grade.pass_to_pass),
        }
    return {
        "i": index,
        "task": t.instance_id,
        "run": t.sample_index,
        "outcome": outcome(t),
        "exit": t.exit_reason,
        "turns": t.num_turns,
        "format_errors": sum(1 for turn in t.turns if turn.format_error),
        "tokens": completion_tokens(t),
        "reward": t.reward,
        "model": t.model,
        "error": t.error,
        "issue": _cap(_issue(t), max_chars),
        "patch": _cap(t.patch, MAX_PATCH_CHARS),
        "grade": grade,
        "steps": steps,
    }


def embed_json(data: Any) -> str:
    """JSON that is safe inside a <script> element: no `<`, `>` or `&` appears literally.

    ASCII-only too: a lone surrogate in model output cannot make the file unwritable as UTF-8.
    """
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)
    return text


def render_html(trajectories: Sequence[Trajectory], title: str = "swe-rl trajectories", max_chars: int = MAX_FIELD_CHARS) -> str:
    ordered = sorted(trajectories, key=episode_order)  # read task by task, runs in order
    episodes = [episode_record(i, t, max_chars) for i, t in enumerate(ordered)]
    data = {"title": title, "episodes": episodes}
    fill = {"TITLE": html.escape(title), "DATA": embed_json(data)}
    # One pass, so a title that contains a marker is never filled in a second time.
    return re.sub(r"__(TITLE|DATA)__", lambda m: fill[m.group(1)], PAGE)


def write_viewer(trajectories: Sequence[Trajectory], out: Path, title: str = "swe-rl trajectories", max_chars: int = MAX_FIELD_CHARS) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(trajectories, title, max_chars), encoding="utf-8")
    return out


def view_cli(paths: Iterable[Path], out: Path, title: str | None = None) -> int:
    """`swe-rl view traj.jsonl [...] -o viewer.html`."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise SystemExit(f"swe-rl view: no such trajectory file: {p}")
    trajectories = read_trajectories(paths)
    write_viewer(trajectories, out, title or ", ".join(p.name for p in paths))
    print(f"wrote {out} ({len(trajectories)} episodes, {out.stat().st_size / 1e6:.1f} MB)")
    return 0
