"""Grade one patch: a fresh sandbox at the task's base state -> apply -> restore tests -> run -> Grade.

This is the reward's ground truth (DESIGN.md, Grading). The agent's sandbox is never
reused: the patch text is all that crosses over. Everything the patch does to test code,
test configuration or interpreter hooks (test_files.py) is undone before `test_patch` is
applied, and the run's log is parsed by the task's log parser (log_parsers.py).
Grading many predictions (`grade_cli`) lives in predictions.py.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from swe_rl.rewards import log_parsers, test_files
from swe_rl.sandbox.protocol import Limits, Sandbox
from swe_rl.types import Grade, Task

# Escalating apply strategies, as the SWE-bench harness tries them (run_evaluation.GIT_APPLY_CMDS);
# the tree is reset between attempts so a partial `--reject` never leaks into the next one.
APPLY_CMDS = (
    "git apply --verbose",
    "git apply --verbose --reject",
    "patch --batch --fuzz=5 -p1 --no-backup-if-mismatch -i",
)
GIT = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c safe.directory=* -c core.quotepath=off"
WORK = "/tmp/swe_rl_grade"  # the sandbox's private /tmp: patches and the test log live here
DONE = "__swe_rl_tests_done__="  # printed by the shell after the test command returns
MAX_DIRECTIVE_CHARS = 32_000  # beyond this, run the test files instead of the test ids
MAX_DIRECTIVES = 300
TEST_ENV = "export PYTHONDONTWRITEBYTECODE=1"  # a planted .pyc is never refreshed, and the run writes less


class GradingInfraError(RuntimeError):
    """Something on our side broke (not the patch): the grade is "error", never a reward of 0."""


@dataclass
class GradeRun:
    """A grade plus what a human needs to check it: the test log and what was restored."""

    grade: Grade
    log: str = ""
    restored: dict[str, str] = field(default_factory=dict)  # path -> why it was restored
    test_command: str = ""


def grade(task: Task, patch: str, *, cache: Path | None = None, timeout_s: float = 600.0, backend: str = "local") -> Grade:
    """Grade `patch` against `task` in a fresh sandbox of `backend` ("local" or "docker": a fresh container
    of the task's image). Never raises for a bad patch or a broken sandbox."""
    return grade_run(task, patch, cache=cache, timeout_s=timeout_s, backend=backend).grade


def grade_run(task: Task, patch: str, *, cache: Path | None = None, timeout_s: float = 600.0,
              sandbox: Sandbox | None = None, restore_tests: bool = True, backend: str = "local") -> GradeRun:
    """Like `grade`, keeping the log. `sandbox` (fresh, at the base state) replaces starting one;
    it is closed afterwards. `restore_tests=False` exists only to demonstrate reward hacks."""
    start = time.monotonic()
    try:
        if sandbox is None:
            from swe_rl.sandbox.docker import task_sandbox_for

            limits = Limits(command_timeout_s=timeout_s, cpu_seconds=int(timeout_s) + 60)
            sandbox = task_sandbox_for(backend)(task, cache, limits=limits, tools=False)
        with sandbox:
            run = _grade_in(sandbox, task, patch, timeout_s, restore_tests)
    except Exception as e:  # noqa: BLE001 - the boundary: any failure of ours is an "error" grade, with its cause
        reason = f"infrastructure: {type(e).__name__}: {e}"
        run = GradeRun(Grade(task.instance_id, "error", patch_applied=False, reason=reason))
    run.grade = Grade(**{**run.grade.to_dict(), "duration_s": round(time.monotonic() - start, 3)})
    return run


def grade_cli(tasks: str, preds: Path, out: Path, *, cache: Path | None = None, skip_invalid: bool = False,
              jobs: int = 2, backend: str = "local") -> int:
    """`swe-rl grade` (implemented in predictions.py, which builds on this module)."""
    from swe_rl.rewards import predictions

    if backend == "local":
        return predictions.grade_cli(tasks, preds, out, cache=cache, skip_invalid=skip_invalid, jobs=jobs)
    from swe_rl.tasks.loaders import load_tasks

    summary = predictions.grade_predictions(
        load_tasks(tasks, skip_invalid=skip_invalid), predictions.load_predictions(preds), Path(out), cache=cache,
        jobs=jobs, grader=lambda task, patch: grade_run(task, patch, cache=cache, backend=backend))
    predictions.print_summary(summary, Path(out))
    return 1 if summary["error_ids"] or summary["unknown_ids"] else 0


def _sh(sandbox: Sandbox, command: str, timeout: float = 60.0, *, what: str) -> tuple[int, str]:
    """Run one of our own commands; a timeout or a dead shell here is an infrastructure error."""
    res = sandbox.run(command, timeout=timeout)
    if res.timed_out:
        raise GradingInfraError(f"{what} timed out after {timeout:.0f}s")
    return res.exit_code, res.output


def _grade_in(sb: Sandbox, task: Task, patch: str, timeout_s: float, restore_tests: bool) -> GradeRun:
    iid = task.instance_id
    repo = shlex.quote(sb.workdir)
    code, out = _sh(sb, f"mkdir -p {WORK} && cd {repo} && {GIT} rev-parse --verify -q HEAD", what="setup")
    if code != 0:
        raise GradingInfraError(f"no git repository at {sb.workdir} in the sandbox: {out.strip()[-300:]}")
    baseline = _status(sb)

    applied, apply_log = True, ""
    if patch.strip():
        applied, apply_log = _apply_model_patch(sb, patch, baseline)
    if not applied:
        return GradeRun(Grade(iid, "unresolved", patch_applied=False, reason=f"patch does not apply: {apply_log}"),
                        log=apply_log)

    restored, problem = _restore_protected(sb, task, patch, baseline) if restore_tests else ({}, "")
    if problem:
        return GradeRun(Grade(iid, "unresolved", True, reason=problem), log=apply_log, restored=restored)

    if task.test_patch.strip():
        sb.write_file(f"{WORK}/test.patch", task.test_patch)
        code, out = _sh(sb, f"cd {repo} && {GIT} apply --verbose {WORK}/test.patch", what="applying test_patch")
        if code != 0:
            # Test files were restored first, so the task itself is at fault; the agent gains nothing by it.
            reason = f"test_patch does not apply after restoring test files: {out.strip()[-500:]}"
            return GradeRun(Grade(iid, "unresolved", True, reason=reason), log=out, restored=restored)

    command = command_for_tests(task)
    res = sb.run(f"cd {repo} && {TEST_ENV} && {{ {command}\n}} > {WORK}/test_output.txt 2>&1; echo {DONE}$?", timeout=timeout_s)
    if not res.timed_out and DONE not in res.output:
        # The shell running the tests died (its processes were killed): ours to retry, not the patch's 0.
        raise GradingInfraError(f"the sandbox shell died during the test run: {res.output.strip()[-300:]}")
    log = _read_partial(sb)
    parser = log_parsers.get_parser(task.install_config.log_parser)
    statuses = parser(log)
    f2p = {t: statuses.get(t, "MISSING") for t in task.FAIL_TO_PASS}
    p2p = {t: statuses.get(t, "MISSING") for t in task.PASS_TO_PASS}
    failed_f2p = [t for t, s in f2p.items() if s not in ("PASSED", "XFAIL")]
    failed_p2p = [t for t, s in p2p.items() if s not in ("PASSED", "XFAIL", "SKIPPED")]  # SWE-bench: skip = kept

    reasons = []
    if res.timed_out:
        reasons.append(f"tests timed out after {timeout_s:.0f}s")
    if failed_f2p:
        reasons.append(f"FAIL_TO_PASS not passing: {_short(failed_f2p, f2p)}")
    if failed_p2p:
        reasons.append(f"PASS_TO_PASS not passing: {_short(failed_p2p, p2p)}")
    status = "unresolved" if reasons else "resolved"
    grade_ = Grade(iid, status, True, reason="; ".join(reasons), fail_to_pass=f2p, pass_to_pass=p2p)
    header = f"$ {command}\n" + (f"# restored: {restored}\n" if restored else "")
    return GradeRun(grade_, log=header + log, restored=restored, test_command=command)


def _short(failed: list[str], statuses: dict[str, str], limit: int = 5) -> str:
    shown = ", ".join(f"{t} ({statuses[t]})" for t in failed[:limit])
    return shown + (f" and {len(failed) - limit} more" if len(failed) > limit else "")


def _read_partial(sb: Sandbox) -> str:
    """The test log; after a timeout it may be cut short or, if nothing was written, absent."""
    try:
        return sb.read_file(f"{WORK}/test_output.txt")
    except FileNotFoundError:
        return ""


def command_for_tests(task: Task) -> str:
    """`install_config.test_cmd` plus what to run: the F2P/P2P ids, or their files when too many or odd."""
    cfg = task.install_config
    parser = log_parsers.canonical_name(cfg.log_parser)
    tests = list(dict.fromkeys([*task.FAIL_TO_PASS, *task.PASS_TO_PASS]))
    if parser in log_parsers.PYTEST_FAMILY:
        directives = _pytest_directives(tests, task.test_patch)
    else:
        directives = test_files.swebench_directives(task.test_patch, django=parser == "django")
    return " ".join([cfg.test_cmd, *(shlex.quote(d) for d in directives)])


def _pytest_directives(tests: list[str], test_patch: str) -> list[str]:
    # Ids cut at a space by the log parser ("test_x[a") are not node ids pytest can find.
    node_ids = all("::" in t and t.split("::", 1)[0].endswith(".py") and t.count("[") == t.count("]")
                   and not any(c.isspace() for c in t) for t in tests)
    if tests and node_ids and len(tests) <= MAX_DIRECTIVES and sum(len(t) + 3 for t in tests) <= MAX_DIRECTIVE_CHARS:
        return tests
    files = list(dict.fromkeys(t.split("::", 1)[0] for t in tests if ".py" in t.split("::", 1)[0]))
    return files or test_files.swebench_directives(test_patch)


# --- applying the agent's patch ---------------------------------------------------------------


def _apply_model_patch(sb: Sandbox, patch: str, baseline: dict[str, str]) -> tuple[bool, str]:
    """Try each apply strategy on a clean tree; True and the log of the one that worked."""
    sb.write_file(f"{WORK}/model.patch", patch if patch.endswith("\n") else patch + "\n")
    unsafe = test_files.unsafe_paths(patch)
    logs = []
    for cmd in APPLY_CMDS:
        if cmd.startswith("patch") and unsafe:
            logs.append(f"{cmd}: not tried, the patch names paths outside the repository: {unsafe[:3]}")
            continue
        code, out = _sh(sb, f"cd {shlex.quote(sb.workdir)} && {cmd} {WORK}/model.patch", what=cmd)
        if code == 0:
            return True, f"$ {cmd}\n{out}"
        logs.append(f"$ {cmd} (exit {code})\n{out.strip()[-400:]}")
        _reset(sb, baseline)
    return False, "\n".join(logs)


def _reset(sb: Sandbox, baseline: dict[str, str]) -> None:
    """Back to the base state: tracked files from HEAD, files the attempt created removed."""
    created = [p for p, st in _status(sb).items() if st in ("??", "!!") and p not in baseline]
    cmd = f"cd {shlex.quote(sb.workdir)} && {GIT} checkout -q HEAD -- . 2>/dev/null; {GIT} reset -q"
    if created:
        cmd += " && rm -rf -- " + " ".join(shlex.quote(p) for p in created)
    _sh(sb, cmd, what="resetting the repository")


def _status(sb: Sandbox) -> dict[str, str]:
    """{path: two-letter porcelain status} of every modified, deleted, untracked or ignored file."""
    code, out = _sh(sb, f"cd {shlex.quote(sb.workdir)} && {GIT} status --porcelain=v1 -z --untracked-files=all --ignored",
                    what="git status")
    if code != 0:
        raise GradingInfraError(f"git status failed in the sandbox: {out.strip()[-300:]}")
    entries: dict[str, str] = {}
    items = out.split("\0")
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if len(item) < 4:
            continue
        code2, path = item[:2], item[3:]
        entries[path] = code2
        if code2[0] in "RC":  # a staged rename/copy is followed by its source path
            i += 1
    return entries


# --- restoring test code and configuration ----------------------------------------------------


def _restore_protected(sb: Sandbox, task: Task, patch: str, baseline: dict[str, str]) -> tuple[dict[str, str], str]:
    """Undo every change to protected paths; ({path: reason}, problem or "")."""
    tp_files = frozenset(test_files.paths_in_test_patch(task.test_patch))
    cmd_files = test_files.command_paths(task.install_config.test_cmd)
    for path in test_files.patch_paths(patch):
        # An ignored file of the prepared environment (an editable install's egg-info) has no base
        # version in git to restore, so a patch that touches one of those cannot be graded fairly.
        if baseline.get(path) == "!!" and test_files.protection_reason(path):
            return {}, f"patch modifies {path!r}, a protected file of the prepared environment"
    changed = {p: st for p, st in _status(sb).items() if baseline.get(p) != st}
    added = {p for p, st in changed.items() if st in ("??", "!!")}
    restore: dict[str, str] = {}
    for path in changed:
        why = test_files.protection_reason(path, test_patch_files=tp_files, command_files=cmd_files)
        if why:
            restore[path] = why
    for path, why in _shadowing_modules(sb, sorted(added - restore.keys())).items():
        restore[path] = why
    # A new file or symlink standing where a protected directory was must go too (`tests` -> elsewhere).
    for path in added - restore.keys():
        if any(r.startswith(path + "/") for r in restore):
            restore[path] = "replaces a protected directory"
    if not restore:
        return restore, ""
    remove = sorted(p for p in restore if p in added)
    checkout = sorted(p for p in restore if p not in added)
    q = shlex.quote
    parts = [f"cd {q(sb.workdir)}"]
    if remove:
        parts.append("rm -rf -- " + " ".join(q(p) for p in remove))
    if checkout:
        parts.append(f"{GIT} checkout -q HEAD -- " + " ".join(q(p) for p in checkout))
    code, out = _sh(sb, " && ".join(parts), what="restoring test files")
    if code != 0:
        return restore, f"could not restore protected files {sorted(restore)[:5]}: {out.strip()[-300:]}"
    left = {p for p, st in _status(sb).items() if p in restore and baseline.get(p) != st}
    if left:
        return restore, f"protected files still differ from the base state after restoring: {sorted(left)[:5]}"
    return restore, ""


_SHADOW_CHECK = (
    "import importlib.util as u, os, sys\n"
    "repo = sys.argv[1]\n"
    "sys.path = [p for p in sys.path if p and not os.path.realpath(p).startswith(os.path.realpath(repo))]\n"
    "names = set(sys.stdlib_module_names) | set(sys.builtin_module_names)\n"
    # What pytest imports only when present: absent here, a module of that name would still be used.
    "names |= {'pygments', 'colorama', 'exceptiongroup', 'tomli', 'argcomplete', 'pluggy', 'iniconfig', 'py'}\n"
    "for arg in sys.argv[2:]:\n"
    "    name, parent = arg.split(':', 1)\n"
    "    if os.path.exists(os.path.join(repo, parent, '__init__.py')):\n"
    "        continue\n"
    "    try:\n"
    "        found = name in names or u.find_spec(name) is not None\n"
    "    except Exception:\n"
    "        found = True\n"
    "    if found:\n"
    "        print(arg)\n"
)


def _shadowing_modules(sb: Sandbox, added: list[str]) -> dict[str, str]:
    """New modules outside a package whose name an installed or standard module already has.

    With the repository root, `src/` or a test's root directory on sys.path, `pytest.py`,
    `json.py` or `_pytest/__init__.py` there would be imported instead of the real one.
    """
    candidates = {}
    for path in added:
        c = test_files.shadow_candidate(path)
        if c:
            candidates[f"{c[0]}:{c[1]}"] = path
    if not candidates:
        return {}
    sb.write_file(f"{WORK}/shadow_check.py", _SHADOW_CHECK)
    args = " ".join(shlex.quote(a) for a in candidates)
    code, out = _sh(sb, f"cd / && python -I {WORK}/shadow_check.py {shlex.quote(sb.workdir)} {args}",
                    what="checking for shadowing modules")
    if code != 0:
        raise GradingInfraError(f"the shadowing-module check failed in the sandbox: {out.strip()[-300:]}")
    shadowing = {line.strip() for line in out.splitlines() if line.strip() in candidates}
    return {candidates[a]: f"shadows the installed module {a.split(':')[0]!r}" for a in shadowing}
