"""The docker sandbox backend: one fresh container per sandbox, from a task's SWE-bench / SWE-rebench image.

Owns image naming (`image_for`), the container's isolation (no network, no host mounts, no host
environment, memory/CPU/pids limits, dropped capabilities) and a persistent shell driven through
`docker exec`, with the same protocol and semantics as the local backend (shell.py). Also the
backend switch `task_sandbox_for("local" | "docker")` that grading and the Ray actors use.
"""

from __future__ import annotations

import io
import os
import secrets
import shlex
import tarfile
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping

from swe_rl.sandbox.docker_exec import ExecStream
from swe_rl.sandbox.protocol import Limits, Sandbox, SandboxError, SandboxUnavailable
from swe_rl.sandbox.shell import PersistentShell, ShellReader
from swe_rl.types import Task

BACKENDS = ("local", "docker")
WORKDIR = "/testbed"  # where SWE-bench and SWE-rebench images keep the repository
CTL = "/run/swe-rl"  # control directory inside the container: command and data files
TOOLS_MOUNT = "/opt/swe-rl/tools"  # same path as the local backend, so prompts and tools agree
START_TIMEOUT_S = 60.0
LABEL = {"swe-rl": "sandbox"}  # `docker rm -f $(docker ps -aq --filter label=swe-rl=sandbox)` cleans up
# The images' Python lives in the conda env "testbed" (SWE-bench's harness activates it before every
# test run); images without conda keep their own PATH.
ACTIVATE = "if [ -f /opt/miniconda3/bin/activate ]; then . /opt/miniconda3/bin/activate testbed >/dev/null 2>&1; fi"
# PID 1 of the container: bash reaps the orphans of killed commands (no zombie fills the pids limit),
# and the kernel never delivers `kill -9 -1` to a namespace's init, so it survives every timeout.
KEEPER = ["/bin/bash", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]

# Arguments: $1 = start directory, $2 = nonce, $3 = activation snippet, $4 = control directory
# (writable by the shell's user). Each request is one line
# `<n> <base64 of the command>` on fd 3, so command text never meets a command's stdin (/dev/null).
DRIVER = r"""
exec 3<&0 </dev/null
eval "$3"
[ -n "$SWE_RL_PATH_PREPEND" ] && export PATH="$SWE_RL_PATH_PREPEND:$PATH"
cd -- "$1" 2>/dev/null || cd /testbed 2>/dev/null || cd /
__swe_rl_nonce=$2
printf '\036%s:0:0:%s\0' "$__swe_rl_nonce" "$PWD"
__swe_rl_ctl=$4
while IFS=' ' read -r __swe_rl_n __swe_rl_b64 <&3; do
    printf '%s' "$__swe_rl_b64" | command base64 -d > "$__swe_rl_ctl/cmd"
    source "$__swe_rl_ctl/cmd" 3<&- 2>&1
    printf '\036%s:%s:%s:%s\0' "$__swe_rl_nonce" "$__swe_rl_n" "$?" "$PWD"
done
"""

def swebench_image(instance_id: str, *, namespace: str = "swebench", arch: str = "x86_64", tag: str = "latest") -> str:
    """The SWE-bench harness's remote instance image: `<ns>/sweb.eval.<arch>.<id lowercased>:<tag>`, `__` -> `_1776_`.

    SWE-rebench publishes its images the same way under the namespace `swerebench`.
    """
    key = f"sweb.eval.{arch}.{instance_id.lower()}:{tag}"
    return f"{namespace}/{key}".replace("__", "_1776_") if namespace else key


def image_for(task: Task, *, namespace: str = "swebench", arch: str = "x86_64") -> str:
    """The image a task runs in: its own `image_name` (SWE-rebench records carry one), else the SWE-bench name."""
    return task.image_name or swebench_image(task.instance_id, namespace=namespace, arch=arch)


def _docker_client(timeout: float = 120.0) -> Any:
    """A client for the daemon named by the environment (DOCKER_HOST, else the local socket); it answered a ping."""
    try:
        import docker
    except ImportError as e:
        raise SandboxUnavailable(f"docker sandbox: the docker SDK is not installed ({e}); "
                                 "install it with: pip install 'swe-rl[docker]'") from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure to reach the daemon means the backend cannot run here
        raise SandboxUnavailable(f"docker sandbox: no Docker daemon reachable at {where} ({type(e).__name__}: {e}); "
                                 "start dockerd, or point DOCKER_HOST at one") from None
    return client


def _is_docker_error(e: BaseException) -> bool:
    return type(e).__module__.startswith(("docker.", "requests.", "urllib3."))


def _tar(files: Mapping[str, tuple[bytes, int]], uid: int, gid: int) -> bytes:
    """A tar archive of {name: (content, mode)}, owned by uid:gid (put_archive keeps the header's owner)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, gid, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Container:
    """What a sandbox holds: the client, the container and its shell; `release` is safe twice and from a finalizer."""

    def __init__(self) -> None:
        self.client: Any = None
        self.container: Any = None
        self.shell: ExecStream | None = None

    def release(self) -> None:
        try:
            if self.shell is not None:
                self.shell.close()
            if self.container is not None:
                self.container.remove(force=True, v=True)  # kills every process; its /tmp tmpfs goes with it
        except Exception:  # noqa: BLE001 - the daemon vanished: nothing is left to free on our side
            pass
        finally:
            self.shell = self.container = None
            if self.client is not None:
                self.client.close()
                self.client = None


class DockerSandbox(PersistentShell):
    """A container from `image` with a persistent shell at `workdir`; see the module docstring and protocol.py.

    Limits: `memory_mb` bounds the whole container (a cgroup, unlike the local backend's per-process
    RLIMIT_AS), `processes` is its pids limit, `cpu_seconds` and `file_size_mb` are rlimits, /tmp is
    a tmpfs of `tmp_size_mb`; `cpus` caps CPU time per wall second (0: no cap). `user`: "auto" (the
    image's `nonroot` user when it can write the whole repository, else root), "root", or a user name.
    `activate`: shell code the shell runs first (default: the images' conda env `testbed`). `tools`:
    copy the agent's tools to /opt/swe-rl/tools, on PATH. `pull`: fetch a missing image, else fail.
    """

    def __init__(
        self,
        image: str,
        *,
        limits: Limits = Limits(),
        workdir: str = WORKDIR,
        user: str = "auto",
        cpus: float = 1.0,
        activate: str = ACTIVATE,
        tools: bool = False,
        env: Mapping[str, str] | None = None,
        pull: bool = True,
        name_hint: str = "",
    ) -> None:
        self.image, self.limits, self.workdir, self.cwd = image, limits, workdir, workdir
        self._activate = activate
        super().__init__()
        self._res = _Container()
        self._finalizer = weakref.finalize(self, self._res.release)
        try:
            self._res.client = client = _docker_client()
            self._ensure_image(client, pull)
            self._res.container = self._create(client, cpus, tools, env or {}, name_hint)
            self._res.container.start()
            self.user, self.uid, self.gid = self._setup(user)
            if tools:
                self._install_tools()
            self._start_shell()
        except BaseException as e:
            self.close()
            if _is_docker_error(e):  # the daemon refused (bad option, no room, image for another platform)
                raise SandboxUnavailable(f"docker sandbox ({image}): {type(e).__name__}: {e}") from e
            raise

    # ---- construction -------------------------------------------------------------------------

    def _ensure_image(self, client: Any, pull: bool) -> None:
        import docker.errors

        try:
            client.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            if not pull:
                raise SandboxUnavailable(f"docker sandbox: image {self.image} is not on this host (pull is off)") from None
        try:
            client.images.pull(self.image)
        except docker.errors.DockerException as e:
            raise SandboxUnavailable(f"docker sandbox: cannot pull image {self.image}: {e}") from None

    def _create(self, client: Any, cpus: float, tools: bool, env: Mapping[str, str], name_hint: str) -> Any:
        import docker.types

        L = self.limits
        environment = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "dumb", "PAGER": "cat", "GIT_PAGER": "cat",
                       "PYTHONDONTWRITEBYTECODE": "1",
                       # the repository belongs to root in the images; git refuses other owners' repositories
                       "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"}
        if tools:
            environment["SWE_RL_PATH_PREPEND"] = TOOLS_MOUNT
        environment.update(env)
        slug = "".join(c if c.isalnum() or c in "_.-" else "-" for c in name_hint)[:60].strip("-.")
        name = f"swe-rl-{slug + '-' if slug else ''}{secrets.token_hex(4)}"
        return client.containers.create(
            self.image, command=KEEPER, entrypoint=[], name=name, labels=LABEL, hostname="sandbox",
            user="0:0", working_dir=self.workdir, environment=environment,
            network_mode="none",  # no interface but loopback
            volumes={}, mounts=[],  # nothing of the host
            mem_limit=L.memory_mb << 20, memswap_limit=L.memory_mb << 20,  # equal: no swap on top
            nano_cpus=int(cpus * 1e9), pids_limit=L.processes,
            ulimits=[docker.types.Ulimit(name="cpu", soft=L.cpu_seconds, hard=L.cpu_seconds + 1),
                     docker.types.Ulimit(name="fsize", soft=L.file_size_mb << 20, hard=L.file_size_mb << 20),
                     docker.types.Ulimit(name="core", soft=0, hard=0)],
            # exec: docker mounts a tmpfs noexec by default, and tests run scripts from /tmp
            tmpfs={"/tmp": f"size={L.tmp_size_mb}m,mode=1777,exec", "/dev/shm": f"size={L.tmp_size_mb}m,mode=1777"},
            # Root in the container keeps only what installs and tests need; KILL ends a timed-out command.
            cap_drop=["ALL"], cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETUID", "SETGID"],
            security_opt=["no-new-privileges"], detach=True,
        )

    def _exec_root(self, cmd: list[str], what: str) -> str:
        code, out = self._res.container.exec_run(cmd, user="0:0", workdir="/", demux=False)
        text = (out or b"").decode("utf-8", "replace")
        if code != 0:
            raise SandboxUnavailable(f"docker sandbox ({self.image}): {what} failed with exit code {code}: {text.strip()[-1000:]}")
        return text

    def _setup(self, user: str) -> tuple[str, int, int]:
        """Pick the shell's user and give it the control directory; (name, uid, gid)."""
        if user == "auto":
            # The images' `nonroot` user, but only when it can write every file of the repository:
            # SWE-bench images make /testbed world-writable before `git reset` and the install,
            # which leave root-owned files behind; then the agent could not edit them, so root it is.
            user = "root"
            has = self._res.container.exec_run(["id", "-u", "nonroot"], user="0:0")[0] == 0
            if has:
                code, out = self._res.container.exec_run(["find", self.workdir, "!", "-writable", "-print", "-quit"],
                                                         user="nonroot")
                if code == 0 and not (out or b"").strip():
                    user = "nonroot"
        q = shlex.quote(user)
        out = self._exec_root(["/bin/sh", "-c", f"set -e; u=$(id -u {q}); g=$(id -g {q}); mkdir -p {CTL}; "
                               f'chown "$u:$g" {CTL}; chmod 700 {CTL}; echo "$u $g"'], f"setting up user {user!r}")
        uid, gid = out.strip().splitlines()[-1].split()
        return user, int(uid), int(gid)

    def _install_tools(self) -> None:
        from swe_rl.paths import TOOLS_DIR

        files = {p.name: (p.read_bytes(), 0o755) for p in sorted(Path(TOOLS_DIR).iterdir()) if p.is_file()}
        self._exec_root(["mkdir", "-p", TOOLS_MOUNT], "creating the tools directory")
        if not self._res.container.put_archive(TOOLS_MOUNT, _tar(files, 0, 0)):
            raise SandboxUnavailable(f"docker sandbox ({self.image}): copying the agent's tools failed")

    def _start_shell(self) -> None:
        """Start the driver as the sandbox user in `self.cwd`; raise SandboxUnavailable if it does not come up."""
        nonce = secrets.token_hex(8)
        api = self._res.client.api
        exec_id = api.exec_create(self._res.container.id, ["bash", "--noprofile", "--norc", "-c", DRIVER, "swe-rl-shell",
                                                          self.cwd, nonce, self._activate, CTL],
                                  stdin=True, stdout=True, stderr=True, tty=False, user=self.user)["Id"]
        self._res.shell = shell = ExecStream(api, exec_id)
        self._reader = ShellReader(shell.read_fd, nonce)
        reply = self._reader.read_until(0, time.monotonic() + START_TIMEOUT_S, 1 << 16)
        if reply.status != "done":
            raise SandboxUnavailable(f"docker sandbox ({self.image}): the shell did not start ({reply.status}): "
                                     f"{reply.text().strip()[-2000:]!r}")
        self.cwd = reply.cwd

    def _kill_all(self) -> None:
        # As root: every process of the container but its init (the kernel spares it) and this `sh`.
        self._res.container.exec_run(["/bin/sh", "-c", "kill -9 -1"], user="0:0", workdir="/")

    def _restart(self, why: str) -> str:
        try:
            self._kill_all()
            if self._res.shell is not None:
                self._res.shell.close()
                self._res.shell = None
            self._start_shell()
        except Exception as e:  # noqa: BLE001 - the container itself is gone (OOM-killed init, daemon restart)
            if not (isinstance(e, SandboxUnavailable) or _is_docker_error(e)):
                raise
            raise SandboxError(f"sandbox shell could not restart after {why}: {type(e).__name__}: {e}") from e
        return self._restarted(why)

    # ---- the transport of PersistentShell -------------------------------------------------------

    def _revive(self) -> str:
        return ""  # a shell that died between commands shows as the end of its stream: `_send` or the read

    def _send(self, n: int, command: str) -> None:
        import base64

        assert self._res.shell is not None
        self._res.shell.send(b"%d %s\n" % (n, base64.b64encode((command + "\n").encode())))

    def _shell_exit_code(self) -> int:
        assert self._res.shell is not None
        return self._res.shell.exit_code()

    # ---- the rest of the Sandbox protocol (run: PersistentShell) -------------------------------

    def read_file(self, path: str) -> str:
        inside = self._inside(path)
        return self._read_through_shell(inside)

    def write_file(self, path: str, content: str) -> None:
        # The data goes in by the daemon's archive upload, then the sandbox user copies it into place,
        # so permissions and symlinks are those the user's own `cat >` would meet.
        inside = self._inside(path)
        data = f"data-{secrets.token_hex(4)}"  # per call: two writers never share the upload
        with self._lock:
            if self._closed:
                raise SandboxError("sandbox is closed")
            if not self._res.container.put_archive(CTL, _tar({data: (content.encode(), 0o600)}, self.uid, self.gid)):
                raise SandboxError(f"sandbox: uploading the content of {inside} failed")
        q = shlex.quote(inside)
        r = self._exec(f"command mkdir -p -- \"$(command dirname -- {q})\" && command cat -- {CTL}/{data} > {q}; "
                       f"__swe_rl_rc=$?; command rm -f -- {CTL}/{data}; (exit $__swe_rl_rc)", None, self.limits.output_bytes)
        if r.exit_code != 0 or r.timed_out:
            raise OSError(f"sandbox: cannot write {inside}: {r.output.strip()[:500]}")


def docker_task_sandbox(task: Task, cache: Path | None = None, *, limits: Limits = Limits(), tools: bool = True,
                        namespace: str = "swebench") -> DockerSandbox:
    """A fresh container for `task` at its base state (`task_sandbox`'s twin; `cache` is unused: images hold all)."""
    return DockerSandbox(image_for(task, namespace=namespace), limits=limits, tools=tools, name_hint=task.instance_id)


SandboxFactory = Callable[..., Sandbox]  # (task, cache, *, limits, tools) -> a fresh sandbox at the base state


def task_sandbox_for(backend: str) -> SandboxFactory:
    """The task-sandbox factory of a backend: "local" (bubblewrap, prepared cache) or "docker" (task images)."""
    if backend == "local":
        from swe_rl.sandbox.environments import task_sandbox

        return task_sandbox
    if backend == "docker":
        return docker_task_sandbox
    raise ValueError(f"unknown sandbox backend {backend!r}: choose one of {', '.join(BACKENDS)}")
