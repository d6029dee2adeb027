"""Task environments of the local backend: built once with the network, used offline ever after.

`prepare_environment` builds, per (repo_url, environment_setup_commit, install_config), a venv
filled inside a networked LocalSandbox with the repository at /repo and the venv at /venv, the
very paths every later sandbox uses, so editable installs resolve to the episode's own /repo
(SWE-bench's /testbed). `prepare_workspace` caches the task's base state as a one-commit
repository (git_source.py); `task_sandbox` copies it and starts an offline sandbox on it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from swe_rl.paths import TOOLS_DIR, cache_dir
from swe_rl.sandbox.cache import building, digest, locked, slug
from swe_rl.sandbox.git_source import GitError, checkout, mirror, write_base_repo
from swe_rl.sandbox.local import SYSTEM_DIRS, LocalSandbox
from swe_rl.sandbox.protocol import Limits, SandboxUnavailable
from swe_rl.tasks.schema import default_repo_url
from swe_rl.types import Task

TOOLS_MOUNT = "/opt/swe-rl/tools"
SHM_MIN_FREE = 4 << 30  # use /dev/shm for episode workspaces only while it has this much room
# Installing is trusted, slow and large (compilers, big wheels): far wider limits than an episode's.
BUILD_LIMITS = Limits(command_timeout_s=3600, cpu_seconds=7200, memory_mb=16384, processes=1024,
                      file_size_mb=16384, tmp_size_mb=4096, output_bytes=2_000_000)
# The local backend cannot install system packages; such pre_install lines are skipped (and logged).
_SYSTEM_PACKAGER = re.compile(r"^\s*(sudo\s+)?(apt-get|apt|yum|dnf|apk)\b")


class EnvironmentBuildError(RuntimeError):
    """Preparing a task's environment or workspace failed; the message names the task and the step."""


class EnvironmentNotPrepared(SandboxUnavailable):
    """An episode or a grading asked for a task whose environment was never prepared (they run offline)."""


@dataclass(frozen=True)
class Environment:
    """A prepared environment: `<cache>/envs/<key>/{repo,venv,build.log,done}`."""

    key: str
    path: Path
    built: bool = False  # True when this call built it, False when it was already there

    @property
    def venv(self) -> Path:
        return self.path / "venv"

    @property
    def repo(self) -> Path:
        return self.path / "repo"

    @property
    def log(self) -> Path:
        return self.path / "build.log"


@dataclass(frozen=True)
class Interpreter:
    executable: str  # host path of the interpreter the venv is made from
    prefix: str  # its sys.base_prefix (bound read-only into the sandbox)
    version: str  # "3.11.7"


def repo_url(task: Task) -> str:
    return task.repo_url or default_repo_url(task.repo)


def env_key(task: Task) -> str:
    ic = task.install_config
    recipe = json.dumps([ic.python, ic.pre_install, ic.pip_packages, ic.install])
    return f"{slug(task.repo)}-{task.env_commit[:12]}-{digest(repo_url(task), task.env_commit, recipe)}"


def workspace_key(task: Task) -> str:
    return f"{slug(task.repo)}-{task.base_commit[:12]}-{digest(repo_url(task), task.base_commit)}"


def find_python(version: str) -> Interpreter:
    """The host interpreter for install_config.python ("3.X"; "" = the one running swe-rl).

    Tried in order: the running interpreter (if its version matches), /usr/bin/python3.X,
    python3.X on PATH. Each must be able to create a venv (ensurepip).
    """
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    want = ".".join(version.split(".")[:2]) or running
    candidates = [str(Path(sys.base_prefix) / "bin" / f"python{running}")] if want == running else []
    candidates += [f"/usr/bin/python{want}", shutil.which(f"python{want}") or f"python{want} (not on PATH)"]
    probe = "import sys, json, ensurepip, venv; print(json.dumps([sys.base_prefix, '%d.%d.%d' % sys.version_info[:3]]))"
    tried = []
    for cand in dict.fromkeys(candidates):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        try:
            r = subprocess.run([cand, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
        except OSError as e:
            tried.append(f"{cand}: {e.strerror}")
            continue
        if r.returncode != 0:
            tried.append(f"{cand}: {(r.stderr.strip().splitlines() or ['failed'])[-1]}")
            continue
        prefix, full = json.loads(r.stdout)
        if not full.startswith(want + "."):
            tried.append(f"{cand}: is Python {full}")
            continue
        exe = Path(prefix) / "bin" / f"python{want}"
        return Interpreter(str(exe if exe.exists() else Path(cand).resolve()), prefix, full)
    raise EnvironmentBuildError(
        f"no usable Python {want} on this host (tried {'; '.join(tried)}). Install Python {want} with venv "
        f"support, e.g. `apt-get install python{want} python{want}-venv`, `pyenv install {want}`, or "
        f"`uv python install {want}` and put python{want} on PATH."
    )


def pip_settings(pythons: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The host's effective pip configuration as PIP_* variables, and the local paths it names.

    Inside a sandbox HOME is /tmp and only system directories are visible, so per-user config
    files and local indexes or wheel directories (e.g. under /opt) would be lost. We pass the
    settings as variables (config files are then ignored: PIP_CONFIG_FILE=/dev/null) and bind
    every local path they name read-only at the same place.
    """
    env: dict[str, str] = {}
    for python in pythons:  # any interpreter with pip can report the host's config files
        try:
            r = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        if r.returncode == 0:
            for line in r.stdout.splitlines():  # global.find-links='/opt/wheels', :env:.cert='...'
                name, sep, value = line.partition("=")
                if sep:
                    env["PIP_" + name.rsplit(".", 1)[-1].upper().replace("-", "_")] = ast.literal_eval(value)
            break
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    binds: dict[str, str] = {}
    for value in env.values():
        for token in value.split():
            path = token[len("file://"):].rstrip("/") if token.startswith("file://") else token
            if token.startswith("file://") and path.endswith("/simple"):
                path = path[: -len("/simple")]  # a local index's pages link to files beside simple/
            system = any(path == f"/{d}" or path.startswith(f"/{d}/") for d in SYSTEM_DIRS)
            if path.startswith("/") and not system and path != os.devnull and Path(path).exists():
                binds[path] = path
    return env, binds


def build_steps(task: Task, python: Interpreter) -> tuple[list[str], list[str]]:
    """Shell commands that fill /venv (run in /repo, /venv/bin first on PATH), and the skipped ones."""
    ic = task.install_config
    steps = [f"{shlex.quote(python.executable)} -m venv /venv"]
    skipped = [c for c in ic.pre_install if _SYSTEM_PACKAGER.match(c)]
    steps += [c for c in ic.pre_install if not _SYSTEM_PACKAGER.match(c)]
    if ic.pip_packages:
        steps.append("python -m pip install " + " ".join(shlex.quote(p) for p in ic.pip_packages))
    if ic.install:
        steps.append(ic.install)
    return steps, skipped


def prepare_environment(task: Task, cache: Path) -> Environment:
    """Build (once) and return the environment of `task`. Safe to call from many processes at once."""
    cache = Path(cache)
    key = env_key(task)
    final = cache / "envs" / key
    if (final / "done").exists():
        return Environment(key, final)
    try:
        source = mirror(repo_url(task), cache, [task.env_commit])
        with locked(cache / "locks" / f"env-{key}.lock"):
            if (final / "done").exists():
                return Environment(key, final)  # another process built it while we waited
            failed_log = cache / "envs" / f"{key}.failed.log"
            with building(final) as tmp:
                checkout(source, task.env_commit, tmp / "repo")
                _fill_venv(task, tmp, failed_log)
            failed_log.unlink(missing_ok=True)
    except GitError as e:
        raise EnvironmentBuildError(f"task {task.instance_id}: cannot get the repository: {e}") from e
    return Environment(key, final, built=True)


def _fill_venv(task: Task, root: Path, failed_log: Path) -> None:
    python = find_python(task.install_config.python)
    steps, skipped = build_steps(task, python)
    env, binds = pip_settings([python.executable, sys.executable])
    venv = root / "venv"
    venv.mkdir()
    # A placeholder pyvenv.cfg tells LocalSandbox which interpreter prefix to bind; `venv` rewrites it.
    (venv / "pyvenv.cfg").write_text(f"home = {Path(python.executable).parent}\n")
    t0 = time.monotonic()
    with (root / "build.log").open("w") as log:
        log.write(f"# task {task.instance_id}: {repo_url(task)} @ {task.env_commit} with Python {python.version}\n")
        for cmd in skipped:
            log.write(f"$ {cmd}\n[skipped: system packages cannot be installed by the local backend; "
                      f"install them on the host or use the docker backend]\n")
        with LocalSandbox(root / "repo", venv=venv, network=True, venv_writable=True, ro_binds=binds,
                          env=env, limits=BUILD_LIMITS) as sb:
            for cmd in steps:
                r = sb.run(cmd)
                log.write(f"$ {cmd}\n{r.output}\n[exit {r.exit_code}{' (timed out)' if r.timed_out else ''} "
                          f"after {r.duration_s:.1f} s]\n")
                log.flush()
                if r.exit_code != 0:
                    shutil.copyfile(root / "build.log", failed_log)
                    tail = "\n".join(r.output.strip().splitlines()[-20:])
                    how = f"timed out after {r.duration_s:.0f} s" if r.timed_out else f"exited with {r.exit_code}"
                    raise EnvironmentBuildError(
                        f"task {task.instance_id}: environment build failed: `{cmd}` {how} "
                        f"(full log: {failed_log})\n{tail}")
    done = {"task": task.instance_id, "repo_url": repo_url(task), "env_commit": task.env_commit,
            "python": asdict(python), "install_config": asdict(task.install_config), "steps": steps,
            "skipped": skipped, "seconds": round(time.monotonic() - t0, 1)}
    (root / "done").write_text(json.dumps(done, indent=1) + "\n")


def prepare_workspace(task: Task, cache: Path) -> Path:
    """Build (once) and return `<cache>/workspaces/<key>`: the base state as a one-commit repository."""
    cache = Path(cache)
    final = cache / "workspaces" / workspace_key(task)
    if final.exists():  # published by rename: existing means complete
        return final
    try:
        source = mirror(repo_url(task), cache, [task.base_commit])
        with locked(cache / "locks" / f"workspace-{final.name}.lock"):
            if not final.exists():
                with building(final) as tmp:
                    write_base_repo(source, task.base_commit, tmp, message="base")
    except GitError as e:
        raise EnvironmentBuildError(f"task {task.instance_id}: cannot build the workspace: {e}") from e
    return final


def environment_for(task: Task, cache: Path) -> Environment:
    """The prepared environment of `task`, or EnvironmentNotPrepared (episodes never build)."""
    key = env_key(task)
    path = Path(cache) / "envs" / key
    if not (path / "done").exists():
        raise EnvironmentNotPrepared(
            f"environment for task {task.instance_id} not prepared (no {path}); run `swe-rl tasks prepare FILE`")
    home = json.loads((path / "done").read_text())["python"]["executable"]
    if not Path(home).exists():
        raise EnvironmentNotPrepared(
            f"environment for task {task.instance_id}: its interpreter {home} is gone; "
            f"delete {path} and run `swe-rl tasks prepare FILE` again")
    return Environment(key, path)


def require_prepared(tasks: list[Task], cache: Path | None = None) -> None:
    """Fail fast, naming every task whose environment or workspace is missing (a user error, not a flake)."""
    cache = Path(cache) if cache is not None else cache_dir()
    missing = [t.instance_id for t in tasks
               if not (cache / "envs" / env_key(t) / "done").exists() or not (cache / "workspaces" / workspace_key(t)).exists()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise EnvironmentNotPrepared(f"{len(missing)} task(s) not prepared in {cache}: {shown}; run `swe-rl tasks prepare FILE` first")


def scratch_dir(cache: Path) -> Path:
    """Where episode workspaces are copied: `$SWE_RL_SCRATCH`, else /dev/shm when it has room, else the cache.

    Copying a 50 MB tree into memory takes a third of the time it takes on a journaling disk
    (measured: benchmarks/task_sandbox.py); the cache's own file system is the fallback (and
    the fast path where it supports reflinks, e.g. XFS or btrfs).
    """
    if env := os.environ.get("SWE_RL_SCRATCH"):
        path = Path(env)
    else:
        shm = Path("/dev/shm")
        roomy = False
        if shm.is_dir() and os.access(shm, os.W_OK):
            st = os.statvfs(shm)  # noexec would stop the repository's own scripts and binaries
            roomy = st.f_bavail * st.f_frsize > SHM_MIN_FREE and not st.f_flag & os.ST_NOEXEC
        path = shm / "swe-rl-workspaces" if roomy else Path(cache) / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def task_sandbox(task: Task, cache: Path | None = None, *, limits: Limits = Limits(), tools: bool = True) -> LocalSandbox:
    """A fresh, offline sandbox on a private copy of the task's base state, with its venv at /venv.

    With `tools`, the agent's tools (swe_rl.paths.TOOLS_DIR) are at /opt/swe-rl/tools, on PATH.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    env = environment_for(task, cache)
    template = cache / "workspaces" / workspace_key(task)
    if not template.exists():
        raise EnvironmentNotPrepared(
            f"workspace for task {task.instance_id} not prepared (no {template}); run `swe-rl tasks prepare FILE`")
    ws = Path(tempfile.mkdtemp(prefix=f"{slug(task.instance_id)}-", dir=scratch_dir(cache)))
    try:
        r = subprocess.run(["cp", "-a", "--reflink=auto", f"{template}/.", str(ws)], capture_output=True, text=True)
        if r.returncode != 0:
            raise EnvironmentBuildError(f"task {task.instance_id}: copying {template} failed: {r.stderr.strip()}")
        ws.chmod(0o755)
        ro = {str(TOOLS_DIR): TOOLS_MOUNT} if tools else {}
        return LocalSandbox(ws, venv=env.venv, limits=limits, ro_binds=ro,
                            path_prepend=(TOOLS_MOUNT,) if tools else (), owns_workspace=True)
    except BaseException:
        shutil.rmtree(ws, ignore_errors=True)  # LocalSandbox removes it itself once constructed
        raise


def prepare_cli(file: str, *, cache: Path | None, skip_invalid: bool, jobs: int) -> int:
    """`swe-rl tasks prepare FILE`: every distinct environment and every workspace, with a progress bar."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from swe_rl.tasks.loaders import load_tasks
    from swe_rl.tasks.schema import TaskValidationError

    console = Console(stderr=True)
    cache = Path(cache) if cache is not None else cache_dir()
    try:
        tasks = load_tasks(file, skip_invalid=skip_invalid)
    except TaskValidationError as e:
        console.print(str(e), style="red", markup=False, highlight=False)
        return 1
    envs: dict[str, Task] = {}
    for t in tasks:
        envs.setdefault(env_key(t), t)
    workspaces: dict[str, Task] = {}
    for t in tasks:
        workspaces.setdefault(workspace_key(t), t)
    jobs_list = [("environment", t, prepare_environment) for t in envs.values()]
    jobs_list += [("workspace", t, prepare_workspace) for t in workspaces.values()]
    counts = {(kind, state): 0 for kind in ("environment", "workspace") for state in ("built", "cached", "failed")}
    failures: list[str] = []

    def one(kind: str, task: Task, fn) -> str:
        ready = (cache / "envs" / env_key(task) / "done").exists() if kind == "environment" else \
            (cache / "workspaces" / workspace_key(task)).exists()
        fn(task, cache)
        return "cached" if ready else "built"

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"preparing {len(tasks)} tasks in {cache}", total=len(jobs_list))
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(one, *job): job for job in jobs_list}
            for fut in as_completed(futures):
                kind, task, _ = futures[fut]
                try:
                    state = fut.result()
                except Exception as e:  # noqa: BLE001 - each failure is counted, shown, and fails the command
                    state = "failed"
                    what = "" if isinstance(e, EnvironmentBuildError) else f"{type(e).__name__}: "
                    failures.append(f"{kind} of task {task.instance_id}: {what}{e}")
                counts[kind, state] += 1
                progress.update(bar, advance=1, description=f"{kind} {task.instance_id}: {state}")
    for kind in ("environment", "workspace"):
        console.print(f"{kind}s: {counts[kind, 'built']} built, {counts[kind, 'cached']} cached, "
                      f"{counts[kind, 'failed']} failed", highlight=False)
    for f in failures:
        console.print(f"FAILED {f}", style="red", markup=False, highlight=False)
    return 1 if failures else 0
