"""The agent's patch: `git diff` of the sandbox's workspace against the base commit, new files included.

Taken at the end of every episode (submitted or not, PAPER.md section 1). A temporary
index inside the sandbox stages untracked files without touching the repository's own
index, so the agent's `git status` / `git diff` look the same before and after.
"""

from __future__ import annotations

import shlex

from swe_rl.agent.observation import STATE_DIR
from swe_rl.sandbox.protocol import Sandbox, SandboxError

# Build and cache artefacts that running code or tests leaves behind: never part of a patch.
EXCLUDES = ("**/__pycache__/**", "**/*.pyc", "**/*.pyo", "**/.pytest_cache/**", "**/*.egg-info/**", "**/.mypy_cache/**")
PATCH_FILE = f"{STATE_DIR}/patch.diff"  # the diff goes through a file: command output is capped
_END = "<<SWE_RL_PATCH_END>>"


def patch_command(workdir: str, out: str = PATCH_FILE) -> str:
    specs = " ".join(shlex.quote(f":(exclude,glob){g}") for g in EXCLUDES)
    q = shlex.quote(out)
    # A subshell, so nothing leaks into the agent's persistent shell (cwd, variables, `set -e`).
    return (
        f"( cd {shlex.quote(workdir)} || exit 1; mkdir -p \"$(dirname {q})\"; idx=$(mktemp) || exit 1; "
        f'cp "$(git rev-parse --git-dir)/index" "$idx" 2>/dev/null; '
        f'export GIT_INDEX_FILE="$idx"; '
        f"if err=$(git add -A -- . {specs} 2>&1); then git diff --cached --no-color --no-ext-diff HEAD > {q}; rc=$?; "
        f'else echo "git add: $err"; rc=1; fi; '
        f'rm -f "$idx"; echo "{_END} $rc" )'
    )


def workspace_patch(sandbox: Sandbox, timeout: float = 120.0) -> str:
    """The diff of the workspace against HEAD (the task's base commit); "" when nothing changed."""
    res = sandbox.run(patch_command(sandbox.workdir), timeout=timeout)
    errors, sep, rc = res.output.rpartition(_END)
    if not sep or res.timed_out:
        raise SandboxError(f"taking the patch failed (timed out: {res.timed_out}): {res.output[-500:]!r}")
    if rc.strip() != "0":
        raise SandboxError(f"taking the patch failed: git exited {rc.strip()}: {errors[-500:]!r}")
    try:
        return sandbox.read_file(PATCH_FILE)
    except FileNotFoundError as e:
        raise SandboxError(f"taking the patch failed: {e}") from e
