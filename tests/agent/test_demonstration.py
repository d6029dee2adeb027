"""Scripted turns from gold patches: hunk -> edit arithmetic on real diffs, and the rendered demonstration."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from swe_rl.agent.demonstration import (
    definition_hits,
    explore_actions,
    explore_plan,
    gold_patch_actions,
    hunk_edit,
    never_submit_actions,
    parse_patch,
    rejected_lines,
    render_demonstration,
    shell_quote,
    synthesized_function,
)
from swe_rl.agent.observation import REJECTED_EDIT
from swe_rl.agent.parser import parse_action
from swe_rl.paths import TOOLS_DIR
from swe_rl.types import Task

BASE = "".join(f"line {i}\n" for i in range(1, 41))


def git_diff(tmp_path: Path, files: dict[str, str | None]) -> str:
    """A real `git diff` of BASE in m.txt (plus `files`: content or None to delete)."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "m.txt").write_text(BASE)
    (repo / "gone.txt").write_text("bye\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "b"], cwd=repo, check=True)
    for name, content in files.items():
        if content is None:
            (repo / name).unlink()
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(content)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    return subprocess.run([*git, "diff", "--cached", "HEAD"], cwd=repo, check=True, capture_output=True, text=True).stdout


def apply_actions(tmp_path: Path, actions: list[str]) -> Path:
    """Run the actions' commands with the real tools on a fresh copy of the base files."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.txt").write_text(BASE)
    (work / "gone.txt").write_text("bye\n")
    env = {"PATH": f"{TOOLS_DIR}:/usr/bin:/bin", "SWE_RL_STATE": str(tmp_path / "state"), "PYTHONDONTWRITEBYTECODE": "1"}
    for text in actions:
        action = parse_action(text)
        assert action.error is None, text
        (tmp_path / "cmd.sh").write_text(action.command + "\n")
        r = subprocess.run(["bash", "-c", f"source {tmp_path / 'cmd.sh'}"], cwd=work, env=env, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, (action.command, r.stdout, r.stderr)
    return work


def test_multi_hunk_multi_file_patch_reproduced_with_the_tools(tmp_path):
    lines = BASE.splitlines(keepends=True)
    lines[2] = "changed 3\n"  # replace
    lines[19:21] = []  # delete 20-21
    lines.insert(30, "inserted\n")  # pure insertion
    lines[-1] = "last changed\n"
    new = "".join(lines)
    patch = git_diff(tmp_path, {"m.txt": new, "pkg/new.py": "A = 1\nB = 2\n", "gone.txt": None})
    task = Task(instance_id="t-1", repo="o/r", base_commit="x", problem_statement="p", patch=patch)
    actions = gold_patch_actions(task)
    assert parse_action(actions[-1]).command == "submit"
    work = apply_actions(tmp_path, actions[:-1])
    assert (work / "m.txt").read_text() == new
    assert (work / "pkg" / "new.py").read_text() == "A = 1\nB = 2\n"
    assert not (work / "gone.txt").exists()


def test_hunk_edit_trims_context():
    [f] = parse_patch("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -10,7 +10,7 @@ def f():\n a\n b\n c\n-d\n+D\n e\n f\n g\n")
    assert hunk_edit(f.hunks[0]) == (13, 13, ["D"])
    [f] = parse_patch("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -5,0 +6,2 @@\n+n1\n+n2\n")
    assert hunk_edit(f.hunks[0]) == (6, 5, ["n1", "n2"])  # insertion after line 5


def test_unsupported_and_empty_patches():
    with pytest.raises(ValueError, match="renames"):
        parse_patch("diff --git a/x b/y\nsimilarity index 100%\nrename from x\nrename to y\n")
    with pytest.raises(ValueError, match="no file changes"):
        gold_patch_actions(Task(instance_id="t-2", repo="o/r", base_commit="x", problem_statement="p", patch=""))


def test_never_submit_and_render():
    actions = never_submit_actions(3)
    assert len(actions) == 3 and all(parse_action(a).command == "ls" for a in actions)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "I"},
                {"role": "assistant", "content": actions[0]}, {"role": "user", "content": "a.py\n(status) bash-$"}]
    text = render_demonstration(messages)
    assert text.startswith("ASSISTANT:\nLet me look around (step 1).") and text.endswith("OBSERVATION:\na.py\n(status) bash-$")


@pytest.mark.slow
def test_gold_actions_reproduce_every_bundled_gold_patch(tmp_path):
    """With the real tools, the scripted turns turn each bundled task's base commit into its gold patch."""
    from swe_rl.paths import BUNDLED_TASKS
    from swe_rl.tasks.loaders import load_tasks

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "advice.detachedHead=false"]
    for task in load_tasks(BUNDLED_TASKS):
        repo = tmp_path / task.instance_id
        subprocess.run([*git, "clone", "-q", task.repo_url, str(repo)], check=True)
        subprocess.run([*git, "checkout", "-q", task.base_commit], cwd=repo, check=True)
        state = tmp_path / f"{task.instance_id}-state"
        env = {"PATH": f"{TOOLS_DIR}:/usr/bin:/bin", "SWE_RL_STATE": str(state), "PYTHONDONTWRITEBYTECODE": "1"}
        for text in gold_patch_actions(task)[:-1]:
            cmd = parse_action(text).command
            r = subprocess.run(["bash", "-c", cmd], cwd=repo, env=env, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL)
            assert r.returncode == 0, (task.instance_id, cmd, r.stdout)
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        diff = subprocess.run([*git, "diff", "--cached", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
        assert diff == task.patch, task.instance_id


# ---- scripted:explore (search -> open -> edit -> submit, from what the context shows) -----------

def explore_task(tmp_path: Path, statement: str = "`test_is_even` fails: assert is_even(4)") -> Task:
    """A synthesized-looking task with a real diff: the fix is line 30 of m.txt (`def is_even(` is put at line 25)."""
    patch = git_diff(tmp_path, {"m.txt": BASE.replace("line 30\n", "line 30 fixed\n")})
    return Task("o__r-1", "o/r", "x", statement, patch=patch, extra={"synthesis": {"function": "Calc.is_even"}})


def test_explore_actions_search_open_edit_submit(tmp_path):
    task = explore_task(tmp_path)
    actions = explore_actions(task, [("m.txt", 25)], window=20)
    commands = [parse_action(a).command for a in actions]
    assert commands == ['search_file "def is_even(" .', "open m.txt 25", 'search_file "line 30"',
                        "edit 30:30 << 'EOF'\nline 30 fixed\nEOF", "submit"]
    assert synthesized_function(task) == "is_even"


FUNCTION = "def keep(d):\n    out = {}\n    for k in d:\n        if not k:\n            out[k] = 1\n    return out\n"


@pytest.mark.parametrize("path, source, fix, refused", [
    ("a.py", FUNCTION, "        if k:", ["    if k:"]),  # 4 spaces less: the for loop loses its body
    ("a.py", "def f():\n    x = 1\n    y = not x\n", "    y = x", ["        y = x"]),  # 4 less compiles (after f): 4 more
    ("a.py", "y = not x\n", "y = x", ["    y = x"]),  # no indentation to take away: 4 more
    ("a.py", "x = f(a,\n      not b)\n", "      b)", None),  # inside brackets, indentation is free
    ("a.txt", FUNCTION, "        if k:", None),  # the tools check only Python files
])
def test_rejected_lines_are_lines_the_edit_tool_refuses(path, source, fix, refused):
    line = next(i for i, text in enumerate(source.splitlines(), 1) if "not" in text)
    assert rejected_lines(source, path, line, line, [fix]) == refused


def test_explore_actions_stumble_then_fix_again(tmp_path):
    """With the real tools: the mis-indented edit is refused (file unchanged), the second one applies the fix."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.py").write_text(FUNCTION)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "b"], check=True)
    base = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (repo / "a.py").write_text(FUNCTION.replace("if not k:", "if k:"))
    patch = subprocess.run([*git, "diff"], check=True, capture_output=True, text=True).stdout
    subprocess.run([*git, "checkout", "-q", "a.py"], check=True)
    task = Task("o__r-2", "o/r", base, "`test_keep` fails: keep({1: 2})", patch=patch,
                repo_url=str(repo), extra={"synthesis": {"function": "keep"}})
    plain = explore_actions(task, [("a.py", 1)], window=20)
    actions = explore_actions(task, [("a.py", 1)], window=20, stumble=True)
    commands = [parse_action(a).command for a in actions]
    assert commands == [parse_action(a).command for a in plain[:3]] + [
        "edit 4:4 << 'EOF'\n    if k:\nEOF", "edit 4:4 << 'EOF'\n        if k:\nEOF", "submit"]
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.py").write_text(FUNCTION)
    env = {"PATH": f"{TOOLS_DIR}:/usr/bin:/bin", "SWE_RL_STATE": str(tmp_path / "state"), "PYTHONDONTWRITEBYTECODE": "1"}
    outputs = [subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True).stdout
               for command in commands[1:5]]
    assert outputs[2].startswith(REJECTED_EDIT) and not outputs[3].startswith(REJECTED_EDIT)
    assert (work / "a.py").read_text() == FUNCTION.replace("if not k:", "if k:")


@pytest.mark.parametrize("text, word", [
    ("if not (n < 0):", '"if not (n < 0):"'),
    ('if s == "a":', "'if s == \"a\":'"),
    ("if f'{x}' == y:", '"if f\'{x}\' == y:"'),
])
def test_shell_quote_gives_one_word_that_bash_reads_back(text, word):
    assert shell_quote(text) == word
    echoed = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, text=True, check=True).stdout
    assert echoed == text


def test_explore_plan_rejects_a_wrong_line_no_quote_can_hold():
    patch = "diff --git a/m.txt b/m.txt\n--- a/m.txt\n+++ b/m.txt\n@@ -30 +30 @@\n-line 30 $'x' \"y\"\n+line 30\n"
    task = Task("o__r-1", "o/r", "x", "`test_is_even` fails: assert is_even(4)", patch=patch,
                extra={"synthesis": {"function": "is_even"}})
    with pytest.raises(ValueError, match="the wrong line cannot be searched"):
        explore_plan(task, [("m.txt", 25)], 20)


@pytest.mark.parametrize("change, reason", [
    ({"statement": "`test_x` fails"}, "does not name the mutated function is_even"),
    ({"hits": [("m.txt", 25), ("n.py", 3)]}, "found 2 times \\(type stubs aside\\), not once"),
    ({"hits": [("other.py", 25)]}, "not one hunk in other.py"),
    ({"window": 6}, "lines 30-30 are not in the window that `open m.txt 25` shows"),  # 25 - 6 // 3 = 23 .. 28
    ({"hits": [("m.txt", 31)]}, "not in the window"),  # the fix must be in the function's body, below its def
])
def test_explore_plan_names_the_step_the_context_cannot_support(tmp_path, change, reason):
    task = explore_task(tmp_path, change.get("statement", "`test_is_even` fails: assert is_even(4)"))
    with pytest.raises(ValueError, match=reason):
        explore_plan(task, change.get("hits", [("m.txt", 25)]), change.get("window", 20))


def test_explore_skips_type_stubs(tmp_path):
    task = explore_task(tmp_path)
    assert explore_plan(task, [("m.txt", 25), ("m.pyi", 3)], 20) == explore_plan(task, [("m.txt", 25)], 20)


def test_explore_needs_a_synthesized_task(tmp_path):
    with pytest.raises(ValueError, match="not a synthesized task"):
        synthesized_function(Task("o__r-2", "o/r", "x", "bug"))


def test_definition_hits_reads_the_base_tree(tmp_path):
    repo = tmp_path / "r"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("x = 1\n\ndef is_even(n):\n    return n % 2 == 0\n\ndef is_even_all(v):\n    pass\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "b"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (repo / "pkg" / "a.py").write_text("def is_even(n):\n")  # the working tree is not the base tree
    task = Task("o__r-3", "o/r", head, "bug", repo_url=str(repo))
    assert definition_hits(task, "is_even") == [("pkg/a.py", 3)]
    assert definition_hits(task, "nowhere") == []


def precheck_repo(tmp_path: Path) -> Path:
    """A checkout: is_even defined once (its body ~30 lines), twice_defined twice, a test naming is_even only."""
    repo = tmp_path / "p"
    (repo / "pkg").mkdir(parents=True)
    body = "".join(f"    x{i} = {i}\n" for i in range(30))
    (repo / "pkg" / "a.py").write_text(f"def is_even(n):\n{body}    if not n % 2:\n        return True\n\n"
                                       "def twice_defined(n):\n    if not n:\n        return 1\n")
    (repo / "pkg" / "b.py").write_text("def twice_defined(n):\n    return n\n")
    (repo / "pkg" / "a.pyi").write_text("def is_even(n: int) -> bool: ...\n")  # stubs are not code
    (repo / "tests").mkdir()
    (repo / "tests" / "test_a.py").write_text("from pkg.a import is_even\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    return repo


@pytest.mark.parametrize("function, line, window, reason", [
    ("is_even", 32, 40, None),  # line 32 shows in `open pkg/a.py 1` (lines 1-40)
    ("is_even", 32, 20, "the mutated line is not in the window of its definition"),
    ("twice_defined", 37, 40, "the function is not defined once, in the mutated file"),
    ("Checker.is_odd", 32, 40, "the function is not defined once, in the mutated file"),
])
def test_explore_precheck_reads_the_checkout(tmp_path, function, line, window, reason):
    from swe_rl.agent.demonstration import explore_precheck
    from swe_rl.tasks.mutations import Mutation

    m = Mutation("pkg/a.py", "invert_condition", function, line, 0, 1, "n % 2", "not n % 2")
    assert explore_precheck(m, precheck_repo(tmp_path), window) == reason


def test_explore_precheck_wants_a_test_that_names_the_function(tmp_path):
    from swe_rl.agent.demonstration import explore_precheck
    from swe_rl.tasks.mutations import Mutation

    repo = precheck_repo(tmp_path)
    (repo / "tests" / "test_a.py").write_text("from pkg.a import *\n")  # is_even no longer named
    m = Mutation("pkg/a.py", "invert_condition", "is_even", 32, 0, 1, "n % 2", "not n % 2")
    assert explore_precheck(m, repo, 40) == "no test file names the function"
    with pytest.raises(ValueError, match="git grep"):
        explore_precheck(m, tmp_path / "missing", 40)
