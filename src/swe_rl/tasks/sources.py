"""Where synthesized tasks come from: a local git repository or a PyPI sdist, as a task repository.

`prepare_source` copies the source's files into `<repos>/<name>` and commits them as a
parentless commit with fixed metadata (the environment commit); `commit_variant` adds a
base commit (the same tree with one file changed), also without parent, so nothing but the
buggy state is reachable from it (DESIGN.md, Contracts: Sandbox). Same input, same ids.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from swe_rl.sandbox.git_source import BASE_AUTHOR, git
from swe_rl.types import InstallConfig

DEFAULT_PIP = ("pytest==8.3.3",)
TEST_CMD = "python -m pytest -rA -p no:cacheprovider"  # `python -m` puts the repository root on sys.path


@dataclass(frozen=True)
class Project:
    name: str  # file-system friendly: "inflection"
    repo: str  # "owner/name" of the tasks: "pypi/inflection", "local/calc"
    version: str
    path: Path  # the task repository (a git work tree) that holds every commit
    env_commit: str
    install_config: InstallConfig


def prepare_source(source: str, repos_dir: Path, cache: Path, *, pip_packages: tuple[str, ...] = DEFAULT_PIP) -> Project:
    """`pypi:NAME==VERSION` (sdist fetched with pip into `cache`) or a local git repository's HEAD."""
    repos_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="swe-rl-source-") as tmp:
        files = Path(tmp) / "files"
        files.mkdir()
        if source.startswith("pypi:"):
            m = re.fullmatch(r"pypi:([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", source)
            if m is None:
                raise ValueError(f"source {source!r}: expected pypi:NAME==VERSION")
            name, version = m.group(1).lower().replace("_", "-"), m.group(2)
            extract_sdist(fetch_sdist(m.group(1), version, cache / "sdists"), files)
            repo = f"pypi/{name}"
        else:
            src = Path(source).expanduser().resolve()
            if not (src / ".git").exists():
                raise ValueError(f"source {source!r}: not a git repository (no {src / '.git'}) and not pypi:NAME==VERSION")
            archive = subprocess.run(["git", "-C", str(src), "archive", "--format=tar", "HEAD"], capture_output=True, check=True)
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(files, filter="data")
            name, version = src.name, git("rev-parse", "--short=12", "HEAD", cwd=src).decode().strip()
            repo = f"local/{name}"
        dest = repos_dir / name
        if not (dest / ".git").exists():
            git("init", "-q", "--initial-branch=main", str(dest))
        env_commit = _commit_tree(dest, files, f"{name} {version}")
        git("update-ref", "refs/heads/main", env_commit, cwd=dest)
        git("reset", "-q", "--hard", env_commit, cwd=dest)
    install = "pip install -e ." if any((dest / f).exists() for f in ("pyproject.toml", "setup.py", "setup.cfg")) else ""
    ic = InstallConfig(python=f"{sys.version_info.major}.{sys.version_info.minor}", pip_packages=tuple(pip_packages),
                       install=install, test_cmd=TEST_CMD, log_parser="pytest")
    return Project(name, repo, version, dest, env_commit, ic)


def _commit_tree(repo: Path, files: Path, message: str) -> str:
    """A parentless commit of every file under `files` (a separate index: the work tree is untouched)."""
    env = {"GIT_INDEX_FILE": str(files.parent / "index"), "GIT_DIR": str(repo / ".git"), "GIT_WORK_TREE": str(files)}
    git("add", "-A", "-f", ".", cwd=files, env=env)
    tree = git("write-tree", cwd=files, env=env).decode().strip()
    return git("commit-tree", tree, "-m", message, cwd=repo, env=BASE_AUTHOR).decode().strip()


def commit_variant(project: Project, file: str, content: str, message: str, ref: str) -> str:
    """A parentless commit: the environment commit's tree with `file` replaced by `content`; kept alive by `ref`."""
    with tempfile.TemporaryDirectory(prefix="swe-rl-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **BASE_AUTHOR}
        blob = git("hash-object", "-w", "--stdin", "--path", file, cwd=project.path, input=content.encode()).decode().strip()
        mode = git("ls-tree", project.env_commit, "--", file, cwd=project.path).decode().split()[0]
        git("read-tree", project.env_commit, cwd=project.path, env=env)
        git("update-index", "--cacheinfo", f"{mode},{blob},{file}", cwd=project.path, env=env)
        tree = git("write-tree", cwd=project.path, env=env).decode().strip()
        commit = git("commit-tree", tree, "-m", message, cwd=project.path, env=BASE_AUTHOR).decode().strip()
    git("update-ref", ref, commit, cwd=project.path)
    return commit


def fix_patch(project: Project, base_commit: str, file: str) -> str:
    """The gold patch: what turns the base commit back into the environment commit."""
    return git("diff", "--no-color", "--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/", base_commit,
               project.env_commit, "--", file, cwd=project.path).decode()


def fetch_sdist(name: str, version: str, dest: Path) -> Path:
    """`pip download` the sdist of NAME==VERSION into `dest` once; return its path."""
    dest = dest / f"{name}-{version}"
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".tgz")))
    if not found:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            f"{name}=={version}", "-d", str(dest)], capture_output=True, text=True, env=dict(os.environ))
        if r.returncode != 0:
            raise RuntimeError(f"pip download {name}=={version} failed: {r.stderr.strip()[-2000:]}")
        found = sorted(p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".tgz")))
    if len(found) != 1:
        shutil.rmtree(dest, ignore_errors=True)
        raise RuntimeError(f"{name}=={version}: expected one sdist (.tar.gz), pip gave {[p.name for p in found]}")
    return found[0]


def extract_sdist(sdist: Path, dest: Path) -> str:
    """Unpack the sdist (without its top folder) into dest; return PKG-INFO's time as ISO UTC."""
    with tarfile.open(sdist) as tar:
        members = tar.getmembers()
        top = members[0].name.split("/")[0]
        stamp = next((m.mtime for m in members if m.name == f"{top}/PKG-INFO"), 0)
        for m in members:
            if m.isfile() and "/" in m.name:
                rel = m.name.split("/", 1)[1]
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
                target.chmod(0o755 if m.mode & 0o111 else 0o644)
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
