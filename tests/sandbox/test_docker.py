"""The docker backend: image names, its failure messages and plumbing (no daemon needed), then real containers.

The container tests need a reachable Docker daemon (DOCKER_HOST or the local socket) and are
skipped, saying so, without one. They build a small task image from SWE_RL_DOCKER_TEST_BASE
(default python:3.11-slim) with a bundled task's repository at /testbed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from swe_rl.sandbox import docker as dk
from swe_rl.sandbox.protocol import Limits, SandboxError, SandboxUnavailable
from swe_rl.sandbox.shell import ShellReader
from swe_rl.tasks.schema import validate_task

NO_DAEMON = "unix:///nonexistent/docker.sock"


# ---- image names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("instance_id, image", [
    ("django__django-11099", "swebench/sweb.eval.x86_64.django_1776_django-11099:latest"),
    ("astropy__astropy-12907", "swebench/sweb.eval.x86_64.astropy_1776_astropy-12907:latest"),
    ("scikit-learn__scikit-learn-25570", "swebench/sweb.eval.x86_64.scikit-learn_1776_scikit-learn-25570:latest"),
    ("sphinx-doc__sphinx-8721", "swebench/sweb.eval.x86_64.sphinx-doc_1776_sphinx-8721:latest"),
    # Upper case is lowered (image references must be lower case), as the SWE-bench harness does.
    ("Automattic__wp-calypso-21648", "swebench/sweb.eval.x86_64.automattic_1776_wp-calypso-21648:latest"),
])
def test_swebench_image_names(instance_id, image):
    assert dk.swebench_image(instance_id) == image


@pytest.mark.parametrize("instance_id, image", [
    ("tox-dev__tox-3846", "swerebench/sweb.eval.x86_64.tox-dev_1776_tox-3846:latest"),
    ("astronomer__astronomer-cosmos-2332", "swerebench/sweb.eval.x86_64.astronomer_1776_astronomer-cosmos-2332:latest"),
])
def test_swe_rebench_image_names(instance_id, image):
    assert dk.swebench_image(instance_id, namespace="swerebench") == image


def test_image_name_variants():
    assert dk.swebench_image("psf__requests-2317", arch="arm64", tag="v2") == "swebench/sweb.eval.arm64.psf_1776_requests-2317:v2"
    # No namespace: the harness's locally built image, whose name keeps the double underscore.
    assert dk.swebench_image("psf__requests-2317", namespace="") == "sweb.eval.x86_64.psf__requests-2317:latest"


def _record(**extra):
    return {"instance_id": "tox-dev__tox-3846", "repo": "tox-dev/tox", "base_commit": "a" * 40, "problem_statement": "p",
            "FAIL_TO_PASS": ["tests/test_a.py::test_a"], **extra}


def test_a_record_naming_its_image_wins_over_the_derived_name():
    # SWE-rebench records carry the reference as `image_name` (or `docker_image`): used as given.
    named = "swerebench/sweb.eval.x86_64.tox-dev_1776_tox-3846@sha256:" + "0" * 64
    assert dk.image_for(validate_task(_record(image_name=named))) == named
    assert dk.image_for(validate_task(_record(docker_image=named))) == named
    bare = validate_task(_record())
    assert dk.image_for(bare) == "swebench/sweb.eval.x86_64.tox-dev_1776_tox-3846:latest"
    assert dk.image_for(bare, namespace="swerebench").startswith("swerebench/")


# ---- failures without a daemon ----------------------------------------------------------------------


def test_no_daemon_is_sandbox_unavailable_naming_where_it_looked(monkeypatch):
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    with pytest.raises(SandboxUnavailable, match=r"no Docker daemon reachable at unix:///nonexistent/docker.sock"):
        dk.DockerSandbox("swebench/sweb.eval.x86_64.django_1776_django-11099:latest")


def test_missing_sdk_is_sandbox_unavailable_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "docker", None)  # what `import docker` meets where the package is absent
    with pytest.raises(SandboxUnavailable, match=r"docker SDK is not installed.*swe-rl\[docker\]"):
        dk.DockerSandbox("busybox")


def test_backend_factories():
    from swe_rl.sandbox.environments import task_sandbox

    assert dk.task_sandbox_for("local") is task_sandbox
    assert dk.task_sandbox_for("docker") is dk.docker_task_sandbox
    with pytest.raises(ValueError, match="unknown sandbox backend 'podman': choose one of local, docker"):
        dk.task_sandbox_for("podman")


def test_grading_on_docker_without_a_daemon_is_an_error_grade_never_a_zero(monkeypatch, bundled_tasks):
    pytest.importorskip("docker")
    from swe_rl.rewards.grading import grade

    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    g = grade(bundled_tasks[0], bundled_tasks[0].patch, backend="docker")
    assert g.status == "error" and not g.patch_applied
    assert "SandboxUnavailable" in g.reason and "no Docker daemon" in g.reason


def test_swe_rl_grade_sandbox_docker_reaches_the_backend(monkeypatch, bundled_tasks, tmp_path, capsys):
    pytest.importorskip("docker")
    from swe_rl.cli import main

    task = bundled_tasks[0]
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"instance_id": task.instance_id, "model_name_or_path": "gold", "model_patch": task.patch}) + "\n")
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    code = main(["grade", "--tasks", "bundled", "--preds", str(preds), "--out", str(tmp_path / "out"), "--sandbox", "docker"])
    assert code == 1  # an infrastructure error is reported as such
    report = json.loads((tmp_path / "out" / task.instance_id / "report.json").read_text())
    assert report["status"] == "error" and "no Docker daemon" in report["reason"]


# ---- the shell protocol, without a daemon ---------------------------------------


@pytest.fixture
def local_driver(tmp_path):
    """The container's shell driver under a plain local bash: same script, same protocol, no container."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    nonce = "n0nce"
    proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-c", dk.DRIVER, "swe-rl-shell", str(tmp_path), nonce,
                             "export ACTIVATED=yes", str(ctl)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                            env={"PATH": os.environ["PATH"], "SWE_RL_PATH_PREPEND": "/opt/tools"})
    reader = ShellReader(proc.stdout.fileno(), nonce)
    assert reader.read_until(0, time.monotonic() + 10, 1 << 16).status == "done"
    n = [0]

    def run(command: str):
        n[0] += 1
        proc.stdin.write(b"%d %s\n" % (n[0], base64.b64encode((command + "\n").encode())))
        return reader.read_until(n[0], time.monotonic() + 10, 1 << 20)

    yield run
    proc.stdin.close()
    proc.wait(5)


def test_driver_keeps_state_and_passes_any_command_text_intact(local_driver, tmp_path):
    r = local_driver("mkdir -p sub && cd sub && export FOO='a b'")
    assert (r.status, r.exit_code, r.cwd) == ("done", 0, str(tmp_path / "sub"))
    r = local_driver('echo "$FOO|$ACTIVATED|${PATH%%:*}"; false')
    assert r.text() == "a b|yes|/opt/tools\n" and r.exit_code == 1
    tricky = "cat << 'EOF'\nquotes ' \" $HOME `x` \\n ünïcode\n  indented\nEOF"
    assert local_driver(tricky).text() == "quotes ' \" $HOME `x` \\n ünïcode\n  indented\n"
    r = local_driver("read -r line; echo \"got:[$line] $?\"")  # stdin is /dev/null, never the protocol
    assert r.text() == "got:[] 1\n"
    assert local_driver("echo err >&2; exit 0 2>/dev/null; echo unreachable").status == "eof"


# ---- real containers ----------------------------------------------------------------------------------


def _client_or_skip():
    docker = pytest.importorskip("docker", reason="the docker SDK is not installed (pip install 'swe-rl[docker]')")
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no Docker daemon reachable ({type(e).__name__}): the container tests need one")
    return client


BASE = os.environ.get("SWE_RL_DOCKER_TEST_BASE", "python:3.11-slim")
DOCKERFILE = """FROM {base}
RUN command -v git >/dev/null || (apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*)
RUN python -c 'import pytest' 2>/dev/null || pip install --no-cache-dir pytest==8.3.3
RUN id -u nonroot >/dev/null 2>&1 || useradd -m nonroot
COPY testbed /testbed
RUN cd /testbed && pip install --no-build-isolation --no-deps -e . && chmod -R a+rwX /testbed
"""


@pytest.fixture(scope="module")
def task_image(bundled_tasks, tmp_path_factory):
    """(task, image): the first bundled task, its prepared base state at /testbed of an image built from BASE."""
    from swe_rl.paths import cache_dir
    from swe_rl.sandbox.environments import workspace_key

    client = _client_or_skip()
    try:
        client.images.get(BASE)
    except Exception:  # noqa: BLE001
        try:
            client.images.pull(BASE)
        except Exception as e:  # noqa: BLE001 - no registry reachable: the tests cannot get their base image
            pytest.skip(f"base image {BASE} is not on the Docker host and cannot be pulled ({type(e).__name__}); "
                        "set SWE_RL_DOCKER_TEST_BASE to a local image with bash and python")
    task = bundled_tasks[0]
    tag = f"swe-rl-test/{task.instance_id.lower()}:latest"
    ctx = tmp_path_factory.mktemp("docker-ctx")
    shutil.copytree(cache_dir() / "workspaces" / workspace_key(task), ctx / "testbed", symlinks=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=BASE))
    client.images.build(path=str(ctx), tag=tag, rm=True, network_mode="host")
    client.close()
    return replace(task, image_name=tag), tag




@pytest.fixture
def sandbox(task_image):
    sb = dk.DockerSandbox(task_image[1], limits=Limits(command_timeout_s=20, processes=128, memory_mb=512), tools=True)
    yield sb
    sb.close()


def _container(sb):
    return sb._res.container


@pytest.mark.slow
def test_container_shell_semantics(sandbox):
    assert sandbox.workdir == "/testbed" and sandbox.user == "nonroot"  # the image lets nonroot write the repository
    r = sandbox.run("cd inflection && export X=42 && git rev-parse --show-toplevel")  # root's repository, no complaint
    assert r.exit_code == 0 and r.output.strip() == "/testbed"
    r = sandbox.run('pwd; echo "$X"; id -un; command -v edit')
    assert r.output.split() == ["/testbed/inflection", "42", "nonroot", "/opt/swe-rl/tools/edit"]
    assert sandbox.run("exit 7").exit_code == 7
    r = sandbox.run("pwd")
    assert r.output.strip() == "/testbed/inflection"  # restarted where it was


@pytest.mark.slow
def test_container_timeout_kills_every_process_and_leaves_no_zombie(sandbox):
    t0 = time.monotonic()
    r = sandbox.run("(setsid sleep 300 &) ; nohup sleep 301 >/dev/null 2>&1 & sleep 302", timeout=2)
    assert r.timed_out and r.exit_code == -1 and time.monotonic() - t0 < 10
    assert "every process in the sandbox was killed" in r.output
    procs = sandbox.run("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo \" $(cut -d' ' -f3 $p/stat)\"; done")
    assert "sleep 30" not in procs.output, procs.output
    assert " Z" not in procs.output, procs.output


@pytest.mark.slow
def test_container_output_cap_and_files(sandbox):
    r = sandbox.run("yes 0123456789 | head -c 1000000")
    assert r.truncated and "output truncated" in r.output and len(r.output) < sandbox.limits.output_bytes + 200
    sandbox.write_file("new/dir/a.txt", "line 1\nünï\n")
    assert sandbox.read_file("/testbed/new/dir/a.txt") == "line 1\nünï\n"
    assert sandbox.run("stat -c %U new/dir/a.txt").output.strip() == "nonroot"
    with pytest.raises(FileNotFoundError, match="cannot read /testbed/missing"):
        sandbox.read_file("missing")


FORKS = """import os, time
n = 0
try:
    while n < 300:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        n += 1
    print("all", n)
except OSError as e:
    print("stopped at", n, e)
"""


@pytest.mark.slow
def test_container_isolation_no_network_no_host_env_limits(sandbox, monkeypatch):
    attrs = _container(sandbox).attrs
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none" and not host.get("Binds") and not attrs.get("Mounts")
    assert host["Memory"] == 512 << 20 and host["PidsLimit"] == 128 and host["Privileged"] is False
    r = sandbox.run("python -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)\"")
    assert r.exit_code != 0 and ("unreachable" in r.output or "OSError" in r.output)
    monkeypatch.setenv("SWE_RL_HOST_SECRET", "s3cret")  # set after start, and never passed in any case
    assert "s3cret" not in sandbox.run("env").output
    r = sandbox.run("python -c \"b = bytearray(1 << 30); print('alloc' + 'ated')\"")
    assert r.exit_code != 0 and "allocated" not in r.output  # killed by the memory cgroup (137) or MemoryError
    sandbox.write_file("/tmp/forks.py", FORKS)
    r = sandbox.run("python /tmp/forks.py")
    assert r.output.startswith("stopped at "), r.output
    assert int(r.output.split()[2]) < 128  # the pids limit, whatever already ran


@pytest.mark.slow
def test_container_auto_user_is_root_where_nonroot_cannot_write(task_image):
    with dk.DockerSandbox(task_image[1], workdir="/etc") as sb:
        assert sb.user == "root" and sb.run("id -u").output.strip() == "0"
        # root in the container still has no network and only a few capabilities
        assert sb.run("cat /proc/self/status | grep CapEff").output.split()[-1] != "000001ffffffffff"


@pytest.mark.slow
def test_close_removes_the_container(task_image):
    client = _client_or_skip()
    sb = dk.DockerSandbox(task_image[1])
    cid = _container(sb).id
    sb.close()
    sb.close()  # idempotent
    assert client.containers.list(all=True, filters={"id": cid}) == []
    with pytest.raises(SandboxError, match="closed"):
        sb.run("true")
    client.close()


@pytest.mark.slow
def test_a_container_killed_from_outside_is_a_sandbox_error(task_image):
    with dk.DockerSandbox(task_image[1]) as sb:
        _container(sb).kill()  # as the OOM killer or a daemon restart would
        with pytest.raises(SandboxError, match="could not restart"):
            sb.run("true")


@pytest.mark.slow
def test_grading_in_a_fresh_container(task_image):
    from swe_rl.rewards.grading import grade

    task, _ = task_image
    good = grade(task, task.patch, backend="docker")
    assert good.status == "resolved", good.reason
    assert all(s == "PASSED" for s in good.fail_to_pass.values())
    bad = grade(task, "", backend="docker")
    assert bad.status == "unresolved" and "FAIL_TO_PASS" in bad.reason


@pytest.mark.slow
def test_an_episode_with_the_tools_in_a_container(task_image):
    from swe_rl.agent.demonstration import gold_patch_actions
    from swe_rl.agent.loop import AgentConfig, run_episode
    from swe_rl.policy.models import smollm2_tokenizer
    from swe_rl.policy.scripted import ScriptedPolicy

    task, _ = task_image
    actions = gold_patch_actions(task)
    policy = ScriptedPolicy(smollm2_tokenizer(), lambda k, _: actions[min(k, len(actions) - 1)])
    with dk.docker_task_sandbox(task) as sb:
        traj = run_episode(task, sb, policy, AgentConfig(max_turns=len(actions) + 2))
    assert traj.exit_reason == "submitted", [t.observation[-300:] for t in traj.turns]
    assert traj.patch.strip() and "inflection/__init__.py" in traj.patch


@pytest.mark.slow
def test_ray_actors_and_gradings_on_the_docker_backend(task_image, tmp_path):
    ray = pytest.importorskip("ray")
    from swe_rl.agent.loop import AgentConfig
    from swe_rl.recipes.rollout import make_policy
    from swe_rl.rollouts.engine import RolloutConfig, collect
    from swe_rl.rollouts.ray_executor import RayPlacement, ray_episodes
    from swe_rl.rollouts.store import read_trajectories

    task, _ = task_image
    policy = make_policy("scripted:gold", [task])
    cfg = AgentConfig(max_turns=6)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with ray_episodes(policy.tokenizer, cfg, tmp_path / "no-cache", Limits(), max_active=2,
                          placement=RayPlacement(sandbox="docker")) as hooks:
            result = collect([task], policy, cfg.sampling(), hooks.start_episode, hooks.open_sandbox, hooks.grade,
                             tmp_path / "t.jsonl", RolloutConfig(samples=2, max_active=2, workers=2))
    finally:
        ray.shutdown()
    trajs = read_trajectories(tmp_path / "t.jsonl")
    assert not result.dropped_tasks and len(trajs) == 2
    assert all(t.exit_reason == "submitted" and t.grade.resolved for t in trajs), [t.error or t.grade.reason for t in trajs]
