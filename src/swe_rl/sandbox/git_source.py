"""A task's repository on the host: a cached mirror per `repo_url`, checkouts, and base-state repos.

The mirror (any git URL, local repository or bundle file) is the only place that holds the
whole history. What a sandbox sees is built from it by `write_base_repo`: the tree at
`base_commit` in a fresh repository with exactly one commit, so nothing after (or before)
the base commit is reachable inside (DESIGN.md, Contracts: Sandbox).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from swe_rl.sandbox.cache import building, digest, locked, slug

# Local operations ignore the user's and the system's git configuration (hooks, signing,
# autocrlf, templates would change what we write); clones and fetches keep it (proxies, credentials).
_ISOLATED = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}
BASE_AUTHOR = {
    "GIT_AUTHOR_NAME": "swe-rl",
    "GIT_AUTHOR_EMAIL": "swe-rl@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "swe-rl",
    "GIT_COMMITTER_EMAIL": "swe-rl@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}


BASE_MTIME = 946684800  # 2000-01-01, the base commit's date


class GitError(RuntimeError):
    """A git command failed; the message holds the command and git's own error text."""


def git(*args: str, cwd: Path | None = None, isolated: bool = True, input: bytes | None = None,
        env: dict[str, str] | None = None) -> bytes:
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(_ISOLATED if isolated else {}), **(env or {})}
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        where = f" (in {cwd})" if cwd else ""
        raise GitError(f"git {' '.join(args)}{where} failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def has_commit(repo: Path, commit: str) -> bool:
    try:
        git("cat-file", "-e", f"{commit}^{{commit}}", cwd=repo)
        return True
    except GitError:
        return False


def mirror(repo_url: str, cache: Path, commits: Sequence[str] = ()) -> Path:
    """`<cache>/git/<name>.git`: a bare mirror of `repo_url` holding every commit in `commits`.

    Cloned once (the network is used here only); fetched again when a commit is missing.
    """
    name = Path(repo_url.rstrip("/")).name.removesuffix(".git").removesuffix(".bundle")
    dest = cache / "git" / f"{slug(name)}-{digest(repo_url)}.git"
    with locked(cache / "locks" / f"git-{dest.name}.lock"):
        if not dest.exists():
            with building(dest) as tmp:
                git("clone", "--mirror", "--quiet", repo_url, str(tmp / "m"), isolated=False)
                for entry in (tmp / "m").iterdir():  # `building` hands us an existing dir; clone needs a new one
                    entry.rename(tmp / entry.name)
                (tmp / "m").rmdir()
        missing = [c for c in commits if not has_commit(dest, c)]
        if missing:
            git("fetch", "--quiet", "origin", cwd=dest, isolated=False)
            for c in [c for c in missing if not has_commit(dest, c)]:
                try:  # a commit no ref points to any more; servers allowing it send it by id
                    git("fetch", "--quiet", "origin", c, cwd=dest, isolated=False)
                except GitError:
                    pass
        still = [c for c in commits if not has_commit(dest, c)]
        if still:
            raise GitError(f"{repo_url}: commit {', '.join(still)} not found (mirror {dest})")
    return dest


def checkout(mirror_dir: Path, commit: str, dest: Path) -> None:
    """A full clone of the mirror at `dest` (must not exist) with `commit` checked out (detached).

    `--no-hardlinks`: the clone is later handed to a sandbox uid, and a chown of a hardlinked
    object would hand over the mirror's object too.
    """
    git("clone", "--quiet", "--no-checkout", "--no-hardlinks", str(mirror_dir), str(dest))
    git("checkout", "--quiet", "--detach", commit, cwd=dest)


def write_base_repo(mirror_dir: Path, commit: str, dest: Path, message: str) -> str:
    """Make `dest` (an empty directory) a repository whose only commit has the tree of `commit`.

    Only the objects of that tree are copied (no commit, tag or ref of the source), the
    commit's author, committer and date are fixed, and no reflog is kept. Returns the new
    commit id; its tree id equals `commit`'s (checked).
    """
    tree = git("rev-parse", f"{commit}^{{tree}}", cwd=mirror_dir).decode().strip()
    listing = git("ls-tree", "-r", "-t", "-z", commit, cwd=mirror_dir).decode("utf-8", "surrogateescape")
    objects = [tree]
    for entry in filter(None, listing.split("\0")):
        _mode, kind, sha = entry.split("\t", 1)[0].split()
        if kind != "commit":  # a submodule's commit lives in another repository
            objects.append(sha)
    pack = git("pack-objects", "--stdout", "-q", cwd=mirror_dir, input="\n".join(objects).encode() + b"\n")
    git("init", "--quiet", "--initial-branch=main", str(dest))
    git("index-pack", "--stdin", cwd=dest, input=pack)
    new = git("commit-tree", tree, "-m", message, cwd=dest, env=BASE_AUTHOR).decode().strip()
    git("update-ref", "refs/heads/main", new, cwd=dest)
    git("reset", "--hard", "--quiet", cwd=dest)
    # Each episode works on a copy (new inodes, ctimes, owner): compare only mtime and size, and
    # date every file long before the index so no entry is "racily clean". Then `git status` in a
    # fresh copy reads the index instead of re-hashing every file.
    git("config", "core.checkStat", "minimal", cwd=dest)
    git("config", "core.trustctime", "false", cwd=dest)
    for path in dest.rglob("*"):
        if ".git" not in path.relative_to(dest).parts[:1]:
            os.utime(path, (BASE_MTIME, BASE_MTIME), follow_symlinks=False)
    git("update-index", "-q", "--refresh", cwd=dest)
    git("config", "user.name", BASE_AUTHOR["GIT_AUTHOR_NAME"], cwd=dest)  # so `git commit` works inside
    git("config", "user.email", BASE_AUTHOR["GIT_AUTHOR_EMAIL"], cwd=dest)
    git("config", "gc.auto", "0", cwd=dest)  # no surprise repacking in the middle of an episode
    shutil.rmtree(dest / ".git" / "logs", ignore_errors=True)  # reflog: nothing to show but our own steps
    shutil.rmtree(dest / ".git" / "hooks", ignore_errors=True)
    got = git("rev-parse", "HEAD^{tree}", cwd=dest).decode().strip()
    if got != tree:
        raise GitError(f"base repo at {dest}: tree {got} differs from {commit}'s tree {tree}")
    return new
