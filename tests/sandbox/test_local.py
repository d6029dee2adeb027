"""LocalSandbox (real bubblewrap): every guarantee is attacked from inside and checked from the host."""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from swe_rl.sandbox.protocol import Limits, SandboxError, SandboxUnavailable
from swe_rl.sandbox.uids import UID_BASE, processes_of

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0,
    reason="the local sandbox needs bubblewrap (apt-get install bubblewrap) and root (it runs each sandbox as its own uid)",
)


@pytest.fixture
def make_sandbox(tmp_path):
    """make_sandbox(**kwargs) -> LocalSandbox on a fresh workspace, always closed after the test."""
    from swe_rl.sandbox.local import LocalSandbox

    made = []

    def make(workspace: Path | None = None, **kw):
        if workspace is None:
            workspace = tmp_path / f"ws{len(made)}"
            workspace.mkdir()
        sb = LocalSandbox(workspace, **kw)
        made.append(sb)
        return sb

    yield make
    for sb in made:
        sb.close()


@pytest.fixture(scope="module")
def small_venv(tmp_path_factory) -> Path:
    """A real venv without pip (fast to create) on the interpreter that runs the tests."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv


def cmdlines(uid: int) -> list[str]:
    out = []
    for pid in processes_of(uid):
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return out


# ---- the shell -------------------------------------------------------------------------------


def test_cwd_and_exports_persist_and_exit_codes(make_sandbox):
    sb = make_sandbox()
    assert sb.run("pwd").output == "/repo\n"
    assert sb.run("mkdir d && cd d && export FOO=bar").exit_code == 0
    r = sb.run("pwd; echo $FOO; exit_code_probe() { return 7; }; exit_code_probe")
    assert (r.output, r.exit_code, r.timed_out, r.truncated) == ("/repo/d\nbar\n", 7, False, False)
    assert sb.run("echo err >&2").output == "err\n"  # stderr is interleaved with stdout


def test_command_reading_stdin_does_not_eat_the_protocol(make_sandbox):
    sb = make_sandbox()
    r = sb.run("cat; read x; echo got=$x")
    assert r.output == "got=\n" and r.exit_code == 0
    assert sb.run("echo still").output == "still\n"


def test_runs_as_unprivileged_per_sandbox_uid(make_sandbox):
    a, b = make_sandbox(), make_sandbox()
    assert a.uid != b.uid and min(a.uid, b.uid) >= UID_BASE
    out = a.run("id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status").output.split("\n")
    assert out[0] == str(a.uid)
    assert "CapEff:\t0000000000000000" in out and "CapBnd:\t0000000000000000" in out and "NoNewPrivs:\t1" in out


def test_exit_restarts_the_shell_in_the_last_cwd(make_sandbox):
    sb = make_sandbox()
    sb.run("cd /tmp && echo state > /tmp/tool_state")
    r = sb.run("exit 3")
    assert r.exit_code == 3 and "shell exited with code 3" in r.output and "restarted in /tmp" in r.output
    assert sb.run("pwd; cat tool_state").output == "/tmp\nstate\n"


def test_shell_killed_between_commands_is_restarted(make_sandbox):
    sb = make_sandbox()
    (shell,) = processes_of(sb.uid)
    os.kill(shell, 9)  # e.g. the host's OOM killer
    time.sleep(0.2)
    r = sb.run("echo hi")
    assert r.output.endswith("hi\n") and "shell had exited" in r.output


# ---- isolation: network, files, environment, processes, descriptors --------------------------


def test_no_network(make_sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    sb = make_sandbox()
    r = sb.run(f"echo hello > /dev/tcp/127.0.0.1/{port} && echo CONNECTED", timeout=10)
    assert "CONNECTED" not in r.output and r.exit_code != 0
    with pytest.raises(socket.timeout):
        server.accept()  # nothing reached the host's listener
    server.close()
    r = sb.run("getent hosts github.com || echo DNS_FAILED; echo x > /dev/tcp/1.1.1.1/443 || echo NET_FAILED", timeout=10)
    assert "DNS_FAILED" in r.output and "NET_FAILED" in r.output
    assert sb.run("ls /sys/class/net 2>/dev/null; cat /proc/net/dev").output.count(":") <= 2  # only lo


def test_host_files_outside_workspace_are_invisible(make_sandbox, tmp_path):
    secret = secrets.token_hex(8)
    outside = tmp_path / "host_secret.txt"
    outside.write_text(secret)
    under_root = Path("/root") / f".swe_rl_test_secret_{secrets.token_hex(4)}"
    under_root.write_text(secret)
    try:
        sb = make_sandbox()
        r = sb.run(f"cat {outside} {under_root}; ls -a / /root; cat /etc/shadow; grep -r {secret[:8]}''{secret[8:]} /etc /tmp /run 2>/dev/null")
        assert secret not in r.output
        assert f"cat: {outside}: No such file" in r.output and f"cat: {under_root}: No such file" in r.output
        top = set(sb.run("ls /").output.split())
        assert not top & {"work", "home", "opt", "var", "root", "srv", "mnt"}
        with pytest.raises(FileNotFoundError):
            sb.read_file(str(outside))
    finally:
        under_root.unlink()


def test_host_files_are_read_only(make_sandbox, tmp_path, small_venv):
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "open").write_text("#!/bin/sh\necho open\n")
    passwd_before = Path("/etc/passwd").read_bytes()
    venv_listing = sorted(p.name for p in small_venv.iterdir())
    sb = make_sandbox(venv=small_venv, ro_binds={str(tools): "/tools"})
    marker = f"swe_rl_probe_{secrets.token_hex(4)}"
    r = sb.run(
        f"for d in /usr /usr/bin /etc /venv /venv/bin /tools /run/swe-rl /; do touch $d/{marker} && echo WROTE $d; done; "
        "echo x >> /etc/passwd; rm -f /tools/open /venv/pyvenv.cfg; echo x > /tools/open"
    )
    assert "WROTE" not in r.output
    for d in ("/usr", "/usr/bin", "/etc", "/", str(tools), str(small_venv), str(small_venv / "bin")):
        assert not (Path(d) / marker).exists()
    assert Path("/etc/passwd").read_bytes() == passwd_before
    assert (tools / "open").read_text() == "#!/bin/sh\necho open\n"
    assert sorted(p.name for p in small_venv.iterdir()) == venv_listing
    # the venv works inside, with only its interpreter prefix bound from /root
    prefix = Path(os.path.realpath(small_venv / "bin" / "python")).parent.parent
    r = sb.run(f"python -c 'import sys; print(sys.prefix)'; ls -A / {prefix.parent}")
    lines = r.output.split("\n")
    assert lines[0] == "/venv", r.output
    assert lines[lines.index(f"{prefix.parent}:") + 1] == prefix.name  # the prefix's siblings stay hidden


def test_writable_venv_for_environment_preparation(make_sandbox, tmp_path, small_venv):
    venv = tmp_path / "venv_rw"
    shutil.copytree(small_venv, venv, symlinks=True)
    sb = make_sandbox(venv=venv, venv_writable=True)
    assert sb.run("touch /venv/installed && echo ok").output == "ok\n"
    sb.close()
    assert (venv / "installed").stat().st_uid == os.stat(venv).st_uid == 0  # ownership given back


def test_host_environment_is_not_visible(make_sandbox, monkeypatch):
    secret = f"s3cr3t_{secrets.token_hex(8)}"
    monkeypatch.setenv("SWE_RL_TEST_SECRET", secret)
    sb = make_sandbox(env={"TASK_VAR": "visible"})
    r = sb.run("env; cat /proc/1/environ /proc/self/environ /proc/$$/environ /proc/*/environ 2>/dev/null; echo")
    assert secret not in r.output and "SWE_RL_TEST_SECRET" not in r.output
    assert "TASK_VAR=visible" in r.output and "HOME=/tmp" in r.output
    # bwrap itself (outside, as root) was started under the sandbox's environment only
    proc_env = Path(f"/proc/{sb._res.proc.pid}/environ").read_bytes()
    assert secret.encode() not in proc_env


def test_inherited_file_descriptors_are_closed(make_sandbox, tmp_path):
    secret_file = tmp_path / "fd_secret.txt"
    secret_file.write_text("fd secret")
    fd = os.open(secret_file, os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        sb = make_sandbox()
        r = sb.run("ls -l /proc/[0-9]*/fd/")
        assert "fd_secret" not in r.output and "-> /run/swe-rl/driver.sh" in r.output  # the shell's fds were listed
        host_pids = processes_of(sb.uid) + [sb._res.proc.pid]
        for pid in host_pids:
            for link in Path(f"/proc/{pid}/fd").iterdir():
                assert os.readlink(link) != str(secret_file), f"pid {pid} holds {secret_file}"
    finally:
        os.close(fd)


def test_no_controlling_terminal_reachable(make_sandbox):
    sb = make_sandbox()
    # /dev/tty would be the caller's terminal (keystroke injection with TIOCSTI): it is /dev/null inside
    assert sb.run("stat -c %t:%T /dev/tty /dev/null").output == "1:3\n1:3\n"
    assert sb.run("ls /dev/pts").output.split() == ["ptmx"]  # a private devpts instance


def test_host_processes_invisible_and_unkillable(make_sandbox):
    host = subprocess.Popen(["sleep", "60"])
    try:
        sb = make_sandbox()
        pids = [p for p in sb.run("ls /proc").output.split() if p.isdigit()]
        assert str(host.pid) not in pids and len(pids) < 8, pids
        r = sb.run(f"kill -9 {host.pid}; kill -9 1; kill -9 -1; echo done")
        assert "done" in r.output
        time.sleep(0.1)
        assert host.poll() is None
    finally:
        host.kill()
        host.wait()


def test_symlinks_do_not_reach_host_files(make_sandbox, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    ws = tmp_path / "linkws"
    ws.mkdir()
    (ws / "leak").symlink_to(secret)
    (ws / "leakdir").symlink_to(tmp_path)
    (ws / "shadow").symlink_to("/etc/shadow")
    shadow_owner = (os.stat("/etc/shadow").st_uid, os.stat("/etc/shadow").st_gid)
    sb = make_sandbox(ws)
    r = sb.run("cat leak leakdir/secret.txt shadow; echo pwned > leak; echo pwned > leakdir/secret.txt; echo pwned > leakdir/new")
    assert "TOP SECRET" not in r.output
    for p in ("leak", "leakdir/secret.txt", "shadow"):
        with pytest.raises(FileNotFoundError):
            sb.read_file(p)
    for p in ("leak", "leakdir/new2"):
        try:
            sb.write_file(p, "pwned")
        except OSError:
            pass
    sb.close()
    assert secret.read_text() == "TOP SECRET"
    assert not (tmp_path / "new").exists() and not (tmp_path / "new2").exists()
    # chown of the workspace (on create and on close) never followed the links
    assert secret.stat().st_uid == 0
    assert (os.stat("/etc/shadow").st_uid, os.stat("/etc/shadow").st_gid) == shadow_owner


# ---- limits ----------------------------------------------------------------------------------


def test_process_limit_holds_against_fork_bomb(make_sandbox):
    limit = 12
    sb = make_sandbox(limits=Limits(processes=limit))
    seen = []
    stop = threading.Event()

    def sample():  # until shortly before the timeout, whose kill helper briefly runs as the uid too
        end = time.monotonic() + 1.5
        while not stop.is_set() and time.monotonic() < end:
            seen.append(len(processes_of(sb.uid)))
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    try:
        r = sb.run("bomb() { bomb | bomb & }; bomb; sleep 10", timeout=2)
    finally:
        stop.set()
        t.join()
    assert r.timed_out
    assert max(seen) <= limit and max(seen) >= limit // 2, seen
    assert sb.run("echo alive").output == "alive\n"
    assert len(processes_of(sb.uid)) == 1  # only the restarted shell


def test_memory_limit(make_sandbox, small_venv):
    sb = make_sandbox(venv=small_venv, limits=Limits(memory_mb=256))
    assert sb.run("python -c 'b = bytearray(64 << 20); print(len(b))'").output == f"{64 << 20}\n"
    r = sb.run("python -c 'b = bytearray(512 << 20)'")
    assert r.exit_code == 1 and "MemoryError" in r.output


def test_file_size_limit(make_sandbox):
    sb = make_sandbox(limits=Limits(file_size_mb=2))
    r = sb.run("head -c 10M /dev/zero > big; echo rc=$?")
    assert "rc=153" in r.output  # killed by SIGXFSZ
    assert (sb.workspace / "big").stat().st_size <= 2 << 20


def test_cpu_time_limit(make_sandbox):
    sb = make_sandbox(limits=Limits(cpu_seconds=1))
    t0 = time.monotonic()
    r = sb.run("bash -c 'while :; do :; done'; echo rc=$?", timeout=30)
    assert r.output.endswith("rc=152\n"), r.output  # SIGXCPU
    assert time.monotonic() - t0 < 30


def test_timeout_kills_daemonised_tree_and_sandbox_stays_usable(make_sandbox):
    sb = make_sandbox()
    sb.run("cd /tmp && echo kept > state")
    r = sb.run(
        "setsid nohup sleep 1001 >/dev/null 2>&1 & (sleep 1002 >/dev/null 2>&1 &); "
        "( (setsid sleep 1003 >/dev/null 2>&1 &) & ); echo started; sleep 1004",
        timeout=1,
    )
    assert (r.exit_code, r.timed_out) == (-1, True)
    assert r.output.startswith("started\n") and "command timed out after 1 s" in r.output
    assert not [c for c in cmdlines(sb.uid) if "sleep 100" in c]
    assert sb.run("pwd; cat state").output == "/tmp\nkept\n"


def test_output_is_capped_with_marker(make_sandbox):
    sb = make_sandbox(limits=Limits(output_bytes=1000))
    r = sb.run("head -c 5000 /dev/zero | tr '\\0' a; echo; echo tail")
    assert r.truncated and r.exit_code == 0
    assert r.output == "a" * 1000 + "\n[... output truncated: 4006 bytes omitted ...]"
    assert not sb.run("echo short").truncated


def test_output_floods_do_not_grow_host_memory(make_sandbox):
    sb = make_sandbox(limits=Limits(output_bytes=10_000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for flood in ("yes", "cat /dev/urandom", "while :; do echo yyyyyyyyyyyyyyyyyyyyyyyy; done"):
        r = sb.run(flood, timeout=1)
        assert r.timed_out and r.truncated, flood
        assert len(r.output) < 12_000 + 200
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50
    assert sb.run("echo ok").output == "ok\n"


# ---- files, lifecycle ------------------------------------------------------------------------


def test_read_and_write_file(make_sandbox):
    sb = make_sandbox(limits=Limits(command_timeout_s=5))
    sb.write_file("pkg/mod.py", "x = 1\n")
    sb.write_file("/repo/top.txt", "é\n")
    sb.write_file("/tmp/notes/n.txt", "tmp note")
    assert (sb.workspace / "pkg" / "mod.py").stat().st_uid == sb.uid
    assert (sb.workspace / "pkg").stat().st_uid == sb.uid
    assert sb.run("echo 'y = 2' >> pkg/mod.py && cat pkg/mod.py /tmp/notes/n.txt").output == "x = 1\ny = 2\ntmp note"
    assert sb.read_file("pkg/mod.py") == "x = 1\ny = 2\n"
    assert sb.read_file("/repo/top.txt") == "é\n"
    assert sb.read_file("/tmp/notes/n.txt") == "tmp note"
    sb.run("ln -s pkg/mod.py inner_link; mkfifo fifo")
    assert sb.read_file("inner_link") == "x = 1\ny = 2\n"  # a link inside the sandbox's view is fine
    with pytest.raises(FileNotFoundError):
        sb.read_file("missing.txt")
    with pytest.raises(FileNotFoundError):
        sb.read_file("fifo")  # neither the host nor the shell blocks on a fifo
    assert sb.run("pwd").output == "/repo\n"


def test_close_removes_everything(make_sandbox, tmp_path):
    ws = tmp_path / "owned"
    ws.mkdir()
    (ws / "f.txt").write_text("x")
    sb = make_sandbox(ws, owns_workspace=True)
    uid, state = sb.uid, sb._res.state
    sb.run("setsid nohup sleep 1000 >/dev/null 2>&1 & sleep 1001 >/dev/null 2>&1 & echo bg")
    assert len(processes_of(uid)) >= 3
    sb.close()
    sb.close()  # idempotent
    assert processes_of(uid) == []
    assert not ws.exists() and not state.exists()
    with pytest.raises(SandboxError):
        sb.run("true")


def test_close_gives_a_borrowed_workspace_back(make_sandbox, tmp_path):
    ws = tmp_path / "borrowed"
    ws.mkdir()
    (ws / "f.txt").write_text("x")
    sb = make_sandbox(ws)
    sb.run("echo new > created.txt; mkdir sub; touch sub/g")
    sb.close()
    owners = {p.stat().st_uid for p in [ws, *ws.rglob("*")]}
    assert owners == {0} and (ws / "created.txt").read_text() == "new\n"


def test_timeout_in_one_sandbox_does_not_touch_another(make_sandbox):
    a, b = make_sandbox(), make_sandbox()
    b.run("sleep 1000 >/dev/null 2>&1 &")
    assert a.run("sleep 10", timeout=0.5).timed_out
    assert [c for c in cmdlines(b.uid) if "sleep 1000" in c]


def test_missing_bwrap_is_unavailable_not_a_fallback(make_sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="bwrap"):
        make_sandbox()


def test_bad_workspace_is_an_error(make_sandbox, tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        make_sandbox(tmp_path / "nope")


# ---- swe-rl sandbox run ----------------------------------------------------------------------


def test_cli_runs_one_command(tmp_path, capsys):
    from swe_rl.cli import main

    ws = tmp_path / "cli_ws"
    ws.mkdir()
    rc = main(["sandbox", "run", "--workspace", str(ws), "--json", "--", "sh", "-c", "echo out; echo hi > f; exit 3"])
    assert rc == 3
    assert json.loads(capsys.readouterr().out) == {"output": "out\n", "exit_code": 3, "timed_out": False, "truncated": False}
    assert (ws / "f").read_text() == "hi\n" and (ws / "f").stat().st_uid == 0
    assert main(["sandbox", "run", "--workspace", str(ws), "--", "cat", "f"]) == 0
    assert capsys.readouterr().out == "hi\n"
    assert main(["sandbox", "run", "--workspace", str(ws), "--timeout", "0.5", "--", "sleep", "5"]) == 124
    assert "timed out after 0.5 s" in capsys.readouterr().out


def test_cli_missing_workspace(tmp_path, capsys):
    from swe_rl.cli import main

    assert main(["sandbox", "run", "--workspace", str(tmp_path / "nope"), "--", "true"]) == 2
    assert "not an existing directory" in capsys.readouterr().err


def test_failed_start_is_unavailable_and_keeps_the_workspace(make_sandbox, tmp_path):
    ws = tmp_path / "kept"
    ws.mkdir()
    (ws / "f.txt").write_text("x")
    with pytest.raises(SandboxUnavailable, match="did not start"):
        make_sandbox(ws, owns_workspace=True, ro_binds={str(tmp_path): "/dev/null/inside"})
    assert (ws / "f.txt").read_text() == "x" and {p.stat().st_uid for p in (ws, ws / "f.txt")} == {0}
