"""The local sandbox backend: bubblewrap + an unprivileged per-sandbox uid + rlimits + a persistent shell.

Layout inside: the workspace at /repo (read-write, cwd), the venv at /venv, a private host-backed
/tmp (it survives shell restarts), the host's system directories read-only, nothing else of the
host. The shell runs as a leased uid (uids.py), so RLIMIT_NPROC binds and "kill every process of
the uid" ends the whole sandbox. Protocol and output capping: shell.py. `run_cli` backs
`swe-rl sandbox run`.
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Mapping, Sequence

from swe_rl.sandbox import uids
from swe_rl.sandbox.hostfs import open_beneath, workspace_parts
from swe_rl.sandbox.protocol import Limits, SandboxError, SandboxUnavailable
from swe_rl.sandbox.shell import CTL_INSIDE, DRIVER, PersistentShell, ShellReader

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
START_TIMEOUT_S = 20.0
# The terminal's Ctrl-C goes to the caller, which closes its sandboxes, not straight to the sandboxes.
_OWN_PROCESS_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {}


def _venv_home_prefix(venv: Path) -> Path | None:
    """The interpreter prefix a venv runs on (`home = <prefix>/bin` in pyvenv.cfg), or None."""
    cfg = venv / "pyvenv.cfg"
    if not cfg.is_file():
        raise ValueError(f"venv {venv}: no pyvenv.cfg (not a virtual environment)")
    for line in cfg.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "home":
            home = Path(value.strip())
            return home.parent if home.name == "bin" else home
    return None


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    # -h and -R (implying -P): change links themselves and never follow one out of the tree.
    r = subprocess.run(["chown", "-R", "-h", f"{uid}:{gid}", "--", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SandboxError(f"chown -R {uid}:{gid} {path} failed: {r.stderr.strip()}")


class _Resources:
    """Everything a sandbox holds on the host; `release` is safe to call twice and from a finalizer."""

    def __init__(self) -> None:
        self.lease: uids.UidLease | None = None
        self.proc: subprocess.Popen | None = None
        self.state: Path | None = None
        self.remove: list[Path] = []  # directories to delete (owned workspace)
        self.restore: list[tuple[Path, int, int]] = []  # trees to give back to their owner

    def stop_shell(self, *, graceful: bool = True) -> None:
        if self.lease is None:
            return
        if self.proc is None:
            uids.kill_all(self.lease.uid)
            return
        # The shell is the namespace's pid 1: once it dies the kernel kills the rest, and bwrap exits
        # only after every process of the namespace is reaped. So bwrap's exit proves the sandbox is
        # empty, without the slow /proc scan of kill_all. An idle shell exits on EOF.
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        try:
            if not graceful:
                raise subprocess.TimeoutExpired(self.proc.args, 0)
            self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:  # busy, or deaf (a command replaced the driver loop)
            uids.kill_once(self.lease.uid)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                uids.kill_all(self.lease.uid)
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def release(self) -> None:
        try:
            self.stop_shell()
            for path, uid, gid in self.restore:
                _chown_tree(path, uid, gid)
            for path in self.remove + ([self.state] if self.state else []):
                shutil.rmtree(path, ignore_errors=True)
        finally:
            self.restore, self.remove, self.state = [], [], None
            if self.lease is not None:
                self.lease.release()  # last: no one may get the uid while files still belong to it
                self.lease = None


class LocalSandbox(PersistentShell):
    """A bubblewrap sandbox with a persistent shell; see the module docstring and sandbox/protocol.py."""

    workdir = "/repo"

    def __init__(
        self,
        workspace: Path,
        *,
        venv: Path | None = None,
        limits: Limits = Limits(),
        network: bool = False,
        venv_writable: bool = False,
        ro_binds: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        path_prepend: Sequence[str] = (),
        owns_workspace: bool = False,
    ) -> None:
        self.limits = limits
        super().__init__()
        self.cwd = self.workdir
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.release)
        workspace = Path(workspace).resolve()
        if not workspace.is_dir():
            raise ValueError(f"sandbox workspace {workspace} is not a directory")
        self.workspace = workspace
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable("local sandbox: bubblewrap (bwrap) is not on PATH; install it (apt-get install bubblewrap)")
        if os.geteuid() != 0:
            raise SandboxUnavailable(
                "local sandbox: must run as root, to run each sandbox under its own unprivileged uid "
                "(process limits do not bind a shared uid, and root is exempt from them)"
            )
        try:
            self._res.lease = uids.UidLease()
            self.uid = self._res.lease.uid
            self._res.state = Path(tempfile.mkdtemp(prefix="swe-rl-sandbox-"))
            self._args = self._bwrap_args(bwrap, venv, venv_writable, network, ro_binds or {})
            self._env = self._sandbox_env(venv, path_prepend, env or {})
            st = workspace.stat()
            self._res.restore.append((workspace, st.st_uid, st.st_gid))
            _chown_tree(workspace, self.uid, self.uid)
            if venv is not None and venv_writable:
                vst = Path(venv).stat()
                self._res.restore.append((Path(venv).resolve(), vst.st_uid, vst.st_gid))
                _chown_tree(Path(venv).resolve(), self.uid, self.uid)
            self._start_shell()
        except BaseException:
            self.close()  # an owned workspace is given back, not deleted: the caller may retry or inspect it
            raise
        if owns_workspace:
            self._res.restore.remove((workspace, st.st_uid, st.st_gid))
            self._res.remove.append(workspace)

    # ---- construction -------------------------------------------------------------------------

    @staticmethod
    def _bind(a: list[str], made: set[str], how: str, src: str, dest: str) -> None:
        # bwrap creates missing parents of a mount point with mode 0700, which the sandbox uid could
        # not traverse: create them first, world-traversable.
        parts = dest.strip("/").split("/")[:-1]
        for i in range(len(parts)):
            d = "/" + "/".join(parts[: i + 1])
            if d not in made and parts[0] not in SYSTEM_DIRS:
                a += ["--perms", "0755", "--dir", d]
                made.add(d)
        a += [how, src, dest]

    def _bwrap_args(self, bwrap: str, venv: Path | None, venv_writable: bool, network: bool,
                    ro_binds: Mapping[str, str]) -> list[str]:
        state = self._res.state
        assert state is not None
        ctl, tmp = state / "ctl", state / "tmp"
        ctl.mkdir(mode=0o755)
        tmp.mkdir()
        os.chown(tmp, self.uid, self.uid)
        tmp.chmod(0o1777)
        (ctl / "driver.sh").write_text(DRIVER)
        # Our own passwd/group: tools that look up the uid work, and the host's user list stays hidden.
        (ctl / "passwd").write_text(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"sandbox:x:{self.uid}:{self.uid}:swe-rl sandbox:/tmp:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (ctl / "group").write_text(f"root:x:0:\nsandbox:x:{self.uid}:\nnogroup:x:65534:\n")
        (ctl / "cmd").touch()
        for f in ctl.iterdir():
            f.chmod(0o644)
        # No --new-session: setsid puts the shell in a new scheduler autogroup, which on a busy host
        # costs ~4 ms of wake-up latency per command (measured: 3.9 ms vs 0.3 ms). Instead /dev/tty is
        # /dev/null inside, so the caller's controlling terminal (TIOCSTI injection) stays out of reach.
        # --as-pid-1: the shell is the namespace's init, so when it dies (EOF, timeout kill) the kernel
        # kills every process left in the namespace before bwrap sees it exit. With bwrap's own init
        # instead, bwrap would exit with the shell while daemonised children lived on.
        a = [bwrap, "--unshare-pid", "--as-pid-1", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--hostname", "sandbox"]
        if not network:
            a.append("--unshare-net")
        for name in SYSTEM_DIRS:
            host = Path("/") / name
            if host.is_symlink():
                a += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                a += ["--ro-bind", str(host), f"/{name}"]
        a += ["--ro-bind", str(ctl / "passwd"), "/etc/passwd", "--ro-bind", str(ctl / "group"), "/etc/group"]
        if network and Path("/etc/resolv.conf").is_symlink():
            real = os.path.realpath("/etc/resolv.conf")
            a += ["--ro-bind-try", real, real]
        a += ["--proc", "/proc", "--dev", "/dev", "--dev-bind", "/dev/null", "/dev/tty",
              "--perms", "1777", "--size", str(self.limits.tmp_size_mb << 20), "--tmpfs", "/dev/shm",
              "--bind", str(self.workspace), self.workdir, "--bind", str(tmp), "/tmp"]
        made: set[str] = set()
        self._bind(a, made, "--ro-bind", str(ctl), CTL_INSIDE)
        if venv is not None:
            venv = Path(venv).resolve()
            prefix = _venv_home_prefix(venv)
            if prefix is not None and not any(prefix.is_relative_to(f"/{d}") for d in SYSTEM_DIRS):
                self._bind(a, made, "--ro-bind", str(prefix), str(prefix))
            self._bind(a, made, "--bind" if venv_writable else "--ro-bind", str(venv), "/venv")
        for host_path, inside in ro_binds.items():
            if not Path(host_path).exists():
                raise ValueError(f"sandbox ro_binds: host path {host_path} does not exist")
            if not posixpath.isabs(inside):
                raise ValueError(f"sandbox ro_binds: inside path {inside!r} for {host_path} is not absolute")
            self._bind(a, made, "--ro-bind", str(Path(host_path).resolve()), posixpath.normpath(inside))
        # Limits bind because the shell drops to the leased uid first (root ignores RLIMIT_NPROC).
        # RLIMIT_AS is per process, so memory is bounded by processes x memory_mb in all; a memory
        # cgroup would bound the sum, but the cgroup v1 hierarchy here belongs to the machine's
        # process manager, so none is used. /tmp is host-backed (it must survive shell restarts):
        # tmp_size_mb bounds /dev/shm only, and each file is bounded by file_size_mb.
        L = self.limits
        u = str(self.uid)
        a += ["--chdir", self.workdir, "--",
              "setpriv", f"--reuid={u}", f"--regid={u}", "--clear-groups", "--inh-caps=-all",
              "--bounding-set=-all", "--no-new-privs",
              "prlimit", f"--nproc={L.processes}", f"--as={L.memory_mb << 20}", f"--fsize={L.file_size_mb << 20}",
              f"--cpu={L.cpu_seconds}:{L.cpu_seconds + 1}", "--core=0", "--",
              "bash", "--noprofile", "--norc", f"{CTL_INSIDE}/driver.sh"]
        return a

    def _sandbox_env(self, venv: Path | None, path_prepend: Sequence[str], extra: Mapping[str, str]) -> dict[str, str]:
        path = (["/venv/bin"] if venv is not None else []) + list(path_prepend) + ["/usr/local/bin", "/usr/bin", "/bin"]
        env = {"PATH": ":".join(path), "HOME": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "dumb",
               "USER": "sandbox", "PYTHONDONTWRITEBYTECODE": "1"}
        if venv is not None:
            env["VIRTUAL_ENV"] = "/venv"
        env.update(extra)
        return env

    def _start_shell(self) -> None:
        """Start bwrap + the driver in `self.cwd`; raise SandboxUnavailable if it does not come up."""
        nonce = secrets.token_hex(8)
        # bwrap itself gets only the sandbox's environment (--clearenv would still leave ours readable
        # at /proc/1/environ) and no inherited descriptors (close_fds; bwrap passes them through).
        self._res.proc = proc = subprocess.Popen(
            self._args + [self.cwd, nonce], env=self._env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, close_fds=True, bufsize=0, **_OWN_PROCESS_GROUP)
        assert proc.stdout is not None
        self._reader = ShellReader(proc.stdout.fileno(), nonce)
        reply = self._reader.read_until(0, time.monotonic() + START_TIMEOUT_S, 1 << 16)
        if reply.status != "done":
            self._res.stop_shell()
            raise SandboxUnavailable(f"local sandbox: the shell did not start ({reply.status}): "
                                     f"{reply.text().strip()[-2000:]!r}; command: {shlex.join(self._args[:6])} ...")
        self.cwd = reply.cwd

    def _restart(self, why: str) -> str:
        self._res.stop_shell(graceful=False)
        try:
            self._start_shell()
        except SandboxUnavailable as e:
            raise SandboxError(f"sandbox shell could not restart after {why}: {e}") from e
        return self._restarted(why)

    # ---- the transport of PersistentShell -------------------------------------------------------

    def _revive(self) -> str:
        proc = self._res.proc
        assert proc is not None
        if proc.poll() is not None:  # died between commands (e.g. a background job killed it)
            return self._restart(f"the shell had exited with code {proc.returncode}")
        return ""

    def _send(self, n: int, command: str) -> None:
        state, proc = self._res.state, self._res.proc
        assert state is not None and proc is not None and proc.stdin is not None
        try:
            (state / "ctl" / "cmd").write_text(command + "\n")
        except OSError as e:  # the host side, not the shell: not an "eof"
            raise SandboxError(f"sandbox: cannot write the command file: {e}") from e
        proc.stdin.write(b"%d\n" % n)

    def _shell_exit_code(self) -> int:
        proc = self._res.proc
        assert proc is not None
        return proc.wait()

    # ---- the rest of the Sandbox protocol (run: PersistentShell) -------------------------------

    def read_file(self, path: str) -> str:
        inside = self._inside(path)
        parts = workspace_parts(inside, self.workdir)
        fd = None
        if parts is not None:
            try:
                fd = open_beneath(self.workspace, parts, os.O_RDONLY)
            except FileNotFoundError:
                raise FileNotFoundError(f"sandbox: no such file {inside}") from None
        if fd is not None:
            with os.fdopen(fd, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        return self._read_through_shell(inside)

    def write_file(self, path: str, content: str) -> None:
        inside = self._inside(path)
        parts = workspace_parts(inside, self.workdir)
        fd = None
        if parts is not None:
            fd = open_beneath(self.workspace, parts, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, create_dirs_as=self.uid)
        if fd is not None:
            with os.fdopen(fd, "wb") as f:
                f.write(content.encode())
            return
        state = self._res.state
        assert state is not None
        data = state / "ctl" / "data"
        data.write_bytes(content.encode())
        data.chmod(0o644)
        q = shlex.quote(inside)
        try:
            r = self._exec(f"command mkdir -p -- \"$(command dirname -- {q})\" && command cat -- {CTL_INSIDE}/data > {q}",
                           None, self.limits.output_bytes)
        finally:
            data.unlink(missing_ok=True)
        if r.exit_code != 0 or r.timed_out:
            raise OSError(f"sandbox: cannot write {inside}: {r.output.strip()[:500]}")


def run_cli(workspace: Path, command: list[str], *, timeout: float, as_json: bool) -> int:
    """`swe-rl sandbox run`: one command in a fresh sandbox whose writable workspace is `workspace`."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        print(f"swe-rl sandbox run: --workspace {workspace} is not an existing directory", file=sys.stderr)
        return 2
    limits = Limits(command_timeout_s=timeout)
    try:
        # owns_workspace=False: close() gives the directory back to its owner.
        with LocalSandbox(workspace, limits=limits) as sb:
            r = sb.run(shlex.join(command), timeout=timeout)
    except SandboxUnavailable as e:
        print(f"swe-rl sandbox run: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps({"output": r.output, "exit_code": r.exit_code, "timed_out": r.timed_out, "truncated": r.truncated}))
    else:
        sys.stdout.write(r.output)
        sys.stdout.flush()
    return r.exit_code if r.exit_code >= 0 else 124
