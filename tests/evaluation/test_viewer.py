import json
import re
import subprocess
import tempfile
from pathlib import Path

import matplotlib.image
import pytest

from swe_rl.cli import main
from swe_rl.evaluation.viewer import embed_json, episode_record, render_html, write_viewer
from swe_rl.rollouts.store import append_trajectory
from tests.evaluation.conftest import trajectory
from tests.evaluation.test_report import PATCH, three_runs

CHROMIUM = Path("/usr/bin/chromium")
# Model output is untrusted: each of these would run script if the page parsed it as HTML.
EVIL = (
    "</script><script>document.body.setAttribute('data-xss','script')</script>"
    "<img src=x onerror=\"document.body.setAttribute('data-xss','img')\"><!-- \u2028 &amp;"
)


def episodes() -> list:
    return [trajectory("org__evil-1", 0, False, tokens=(30, 12, 40), format_errors=1, patch=PATCH, observation=EVIL)] + three_runs()


def test_embedded_json_cannot_close_its_script_element() -> None:
    data = {"observation": EVIL + "\ud800"}  # with a lone surrogate, which UTF-8 cannot encode
    text = embed_json(data)
    assert text.isascii() and not set("<>&") & set(text)
    assert json.loads(text) == data
    page = render_html(episodes(), title="</title><script>alert(1)</script>")
    # However hostile the data, the page holds exactly its own two script elements.
    assert len(re.findall(r"<script", page, re.I)) == 2 and len(re.findall(r"</script", page, re.I)) == 2
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page


def test_episode_record_splits_reasoning_and_keeps_format_errors_whole() -> None:
    t = trajectory("a", 2, True, tokens=(5, 7), format_errors=1, patch=PATCH, observation="x" * 50)
    r = episode_record(0, t, max_chars=30)
    assert (r["task"], r["run"], r["outcome"], r["exit"], r["turns"], r["format_errors"], r["tokens"]) == ("a", 2, "resolved", "submitted", 2, 1, 12)
    bad, good = r["steps"]
    assert bad == {"thought": "thinking 0, no command", "command": None, "observation": "cannot extract command",
                   "format_error": "cannot extract command", "tokens": 5}
    assert (good["thought"], good["command"]) == ("Let me look.", "ls 1")
    assert good["observation"] == "x" * 30 + "\n[... 20 more characters not shown by the viewer]"
    assert r["grade"]["f2p"] == {"tests/test_x.py::test_bug": "PASSED"}
    assert r["issue"] == "Fix the bug in a."
    assert episode_record(0, trajectory("b", 0, None, tokens=(), exit_reason="sandbox_error"))["outcome"] == "error"
    assert episode_record(0, trajectory("b", 0, None))["outcome"] == "ungraded"


def test_view_command_writes_the_page(tmp_path, capsys) -> None:
    traj = tmp_path / "traj.jsonl"
    for t in episodes():
        append_trajectory(traj, t)
    out = tmp_path / "out" / "viewer.html"
    assert main(["view", str(traj), "-o", str(out)]) == 0
    assert "13 episodes" in capsys.readouterr().out
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "org__evil-1" in page
    # Self-contained: no URL the browser would fetch.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    with pytest.raises(SystemExit, match="no such trajectory file"):
        main(["view", str(tmp_path / "missing.jsonl"), "-o", str(out)])


def chromium(url: str, *args: str) -> str:
    """Run headless Chromium the way the probe does; returns stdout (the DOM with --dump-dom)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1280,900", "--virtual-time-budget=3000", *args, url],
            capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (scripts/setup.sh installs it as root)")
def test_viewer_renders_in_headless_chromium(tmp_path) -> None:
    ts = episodes()
    page = write_viewer(ts, tmp_path / "viewer.html", title="eval run")
    url = page.as_uri()

    # Open the hostile episode (the last one: the page sorts by task, and "A" < "org") by its #index.
    hostile = sorted(t.instance_id for t in ts).index("org__evil-1")
    shot = tmp_path / "shot.png"
    dom = chromium(f"{url}#{hostile}", f"--screenshot={shot}", "--dump-dom")
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (900, 1280)
    # A real render: a light page with dark text and the colored badges, not one flat color.
    assert pixels[..., :3].std() > 0.1
    assert len({tuple(p) for p in (pixels[::7, ::7, :3] * 255).astype(int).reshape(-1, 3)}) > 50

    assert 'data-rendered="1"' in dom, "the script did not finish"
    assert dom.count('class="ep-row') == len(ts)  # rows exist only if the script drew them
    assert "data-xss" not in dom.split("<body", 1)[1].split(">", 1)[0], "injected script ran"
    # The hostile observation is on the page as text.
    assert '&lt;/script&gt;&lt;script&gt;document.body.setAttribute(\'data-xss\',\'script\')&lt;/script&gt;' in dom
    assert 'class="turn fmt"' in dom and "format error: cannot extract command" in dom
    assert '<span class="d-add">+a = 2</span>' in dom and '<span class="d-del">-a = 1</span>' in dom

    # Filters preset from the query string: resolved, submitted, a command mentioning "ls 2"
    # (a third turn: B in run 1 and D in runs 1 and 2; A's episodes have two turns).
    filtered = chromium(url + "?outcome=resolved&exit=submitted&q=ls%202", "--dump-dom")
    expected = [t for t in ts if t.grade is not None and t.grade.resolved and t.exit_reason == "submitted"
                and any(turn.command == "ls 2" for turn in t.turns)]
    assert filtered.count('class="ep-row') == len(expected) == 3


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (scripts/setup.sh installs it as root)")
def test_viewer_pages_thousands_of_episodes(tmp_path) -> None:
    ts = [trajectory(f"org__task-{i:04d}", r, (i + r) % 3 == 0, tokens=(20, 30, 40), observation="output line\n" * 20)
          for i in range(1000) for r in range(3)]
    page = write_viewer(ts, tmp_path / "viewer.html")
    dom = chromium(page.as_uri(), "--dump-dom")
    assert dom.count('class="ep-row') == 500  # one page of rows, then a button for the rest
    assert 'id="more"' in dom and "show 500 more of 2500" in dom
