"""Task environments: real git, real bubblewrap, real pip. One editable-install environment is built
for the whole module; the other builds (concurrency, failure) install nothing but a bare venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from swe_rl.sandbox.environments import (
    EnvironmentBuildError,
    EnvironmentNotPrepared,
    env_key,
    find_python,
    pip_settings,
    prepare_cli,
    prepare_environment,
    prepare_workspace,
    task_sandbox,
)
from swe_rl.tasks.loaders import load_tasks
from swe_rl.tasks.schema import task_to_record

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    # FIX: add, do not subtract\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"
PYPROJECT = textwrap.dedent("""\
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "calc"
    version = "0.1.0"
""")


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.org",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit_files(repo: Path, files: dict[str, str], message: str) -> str:
    for name, content in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def calc(tmp_path_factory):
    """A package repo: env commit (correct), base commit (bug), a later FIX commit on main and a tag; and its bundle."""
    root = tmp_path_factory.mktemp("calc")
    repo = root / "calc"
    repo.mkdir()
    git(repo, "init", "-q", "--initial-branch=main")
    env = commit_files(repo, {"pyproject.toml": PYPROJECT, "src/calc/__init__.py": FIXED.replace("    # FIX: add, do not subtract\n", ""),
                              "tests/test_calc.py": TESTS}, "initial")
    base = commit_files(repo, {"src/calc/__init__.py": BUGGY}, "refactor add")
    fix = commit_files(repo, {"src/calc/__init__.py": FIXED, "NOTES": "FIX landed\n"}, "FIX add")
    git(repo, "tag", "v-fix", fix)
    git(repo, "bundle", "create", str(root / "calc.bundle"), "--all")
    record = {"instance_id": "local__calc-1", "repo": "local/calc", "repo_url": "calc", "base_commit": base,
              "environment_setup_commit": env, "problem_statement": "add() subtracts",
              "FAIL_TO_PASS": '["tests/test_calc.py::test_add"]', "PASS_TO_PASS": '["tests/test_calc.py::test_zero"]',
              "install_config": {"python": "", "pip_packages": ["pytest"], "install": "pip install -e .",
                                 "test_cmd": "pytest -rA", "reqs_path": None}}
    (root / "tasks.jsonl").write_text(json.dumps(record) + "\n")
    (task,) = load_tasks(root / "tasks.jsonl")  # repo_url "calc" resolves against the file's directory
    assert task.repo_url == str(repo)
    return {"root": root, "repo": repo, "env": env, "base": base, "fix": fix, "task": task, "cache": root / "cache"}


@pytest.fixture(scope="module")
def prepared(calc):
    task, cache = calc["task"], calc["cache"]
    env = prepare_environment(task, cache)
    workspace = prepare_workspace(task, cache)
    return {**calc, "environment": env, "workspace": workspace}


def bare(task, **changes):
    """The same repository with an install_config that builds only a venv (a cheap, distinct environment)."""
    return replace(task, install_config=replace(task.install_config, **{"pip_packages": (), "install": "", **changes}))


@pytest.mark.slow
def test_environment_is_built_once_and_cached(prepared):
    env, task = prepared["environment"], prepared["task"]
    assert env.built and (env.path / "done").exists() and env.log.exists()
    assert json.loads((env.path / "done").read_text())["steps"][-1] == "pip install -e ."
    assert env.path.name == env_key(task)
    stamp = (env.path / "done").stat().st_mtime_ns
    again = prepare_environment(task, prepared["cache"])
    assert not again.built and again.path == env.path and (env.path / "done").stat().st_mtime_ns == stamp
    assert prepare_workspace(task, prepared["cache"]) == prepared["workspace"]
    assert not list((prepared["cache"] / "envs").glob(".tmp-*"))


@pytest.mark.slow
def test_sandbox_runs_the_installed_package_from_repo_offline(prepared):
    with task_sandbox(prepared["task"], prepared["cache"]) as sb:
        assert sb.run("python -c 'import calc; print(calc.__file__)'").output.strip() == "/repo/src/calc/__init__.py"
        assert sb.run("head -1 /venv/bin/pip /venv/bin/pytest").output.count("#!/venv/bin/python") == 2
        assert sb.run("pip --version").output.startswith("pip ")
        before = sb.run("pytest -q -p no:cacheprovider tests")
        assert before.exit_code == 1 and "1 failed, 1 passed" in before.output
        sb.write_file("src/calc/__init__.py", FIXED)  # the editable install follows /repo
        after = sb.run("pytest -q -p no:cacheprovider tests")
        assert after.exit_code == 0 and "2 passed" in after.output
        offline = sb.run("python -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=3)\"")
        assert offline.exit_code != 0 and "Network is unreachable" in offline.output
        assert sb.run("command -v submit").output.strip() == "/opt/swe-rl/tools/submit"
    with task_sandbox(prepared["task"], prepared["cache"], tools=False) as sb:
        assert sb.run("command -v submit").exit_code != 0
        assert "return a - b" in sb.read_file("src/calc/__init__.py")  # a fresh copy: the fix above is gone


@pytest.mark.slow
def test_workspace_reveals_nothing_after_base(prepared):
    with task_sandbox(prepared["task"], prepared["cache"]) as sb:
        def sh(cmd: str) -> str:
            r = sb.run(cmd)
            assert r.exit_code == 0, (cmd, r.output)
            return r.output

        assert sh("git log --all --format='%an <%ae> %ad %s' --date=iso") == "swe-rl <swe-rl@localhost> 2000-01-01 00:00:00 +0000 base\n"
        assert sh("git rev-list --all --reflog").count("\n") == 1
        assert sh("git reflog") == "" and sh("git tag") == "" and sh("git stash list") == ""
        assert sh("git for-each-ref --format='%(refname)'") == "refs/heads/main\n"
        assert "dangling" not in sh("git fsck --lost-found --no-reflogs 2>&1")
        assert sh("git status --porcelain") == ""
        objects = sh("git cat-file --batch-all-objects --batch-check").splitlines()
        assert len(objects) == len(sh("git ls-tree -r -t HEAD").splitlines()) + 2  # + root tree + the commit
        assert "FIX" not in sh("git cat-file --batch-all-objects --batch")
        assert sh("grep -r FIX . || true") == ""
        head_tree = sh("git rev-parse HEAD^{tree}").strip()
    assert head_tree == git(prepared["repo"], "rev-parse", f"{prepared['base']}^{{tree}}")


def test_workspace_from_a_bundle_is_the_same_repository(calc, tmp_path):
    task = replace(calc["task"], repo_url=str(calc["root"] / "calc.bundle"))
    a = prepare_workspace(task, tmp_path / "cache")
    b = prepare_workspace(calc["task"], tmp_path / "cache")
    assert a != b  # different sources, different cache entries ...
    assert git(a, "rev-parse", "HEAD") == git(b, "rev-parse", "HEAD")  # ... same one fixed commit
    assert git(a, "rev-list", "--all").count("\n") == 0 and (a / "src/calc/__init__.py").read_text() == BUGGY


def test_missing_commit_is_an_error_naming_the_task(calc, tmp_path):
    task = replace(calc["task"], instance_id="local__calc-9", base_commit="0" * 40)
    with pytest.raises(EnvironmentBuildError, match=f"task local__calc-9: cannot build the workspace: .*commit {'0' * 40} not found"):
        prepare_workspace(task, tmp_path / "cache")


def test_unprepared_task_refuses_to_start(calc, tmp_path):
    with pytest.raises(EnvironmentNotPrepared, match="environment for task local__calc-1 not prepared.*swe-rl tasks prepare FILE"):
        task_sandbox(calc["task"], tmp_path / "empty-cache")


@pytest.mark.slow
def test_two_processes_preparing_one_environment_build_it_once(calc):
    task = bare(replace(calc["task"], repo_url=str(calc["root"] / "calc.bundle")))  # and from a bundle
    (calc["root"] / "bare.jsonl").write_text(json.dumps(task_to_record(task)) + "\n")
    script = ("import sys; from pathlib import Path; from swe_rl.tasks.loaders import load_tasks; "
              "from swe_rl.sandbox.environments import prepare_environment as p; "
              "(t,) = load_tasks(sys.argv[1]); print('built' if p(t, Path(sys.argv[2])).built else 'cached')")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(calc["root"] / "bare.jsonl"), str(calc["cache"])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sorted(out.strip() for out, _ in results) == ["built", "cached"]
    env = prepare_environment(task, calc["cache"])
    assert env.log.read_text().count("-m venv /venv") == 1
    prepare_workspace(task, calc["cache"])
    with task_sandbox(task, calc["cache"], tools=False) as sb:
        assert sb.run("python -c 'import sys; print(sys.prefix)'").output.strip() == "/venv"


@pytest.mark.slow
def test_failed_build_keeps_its_log_and_names_the_command(calc):
    task = bare(calc["task"], pre_install=("apt-get install -y libcalc-dev",), install="echo boom-from-install >&2; false")
    task = replace(task, instance_id="local__calc-broken")
    with pytest.raises(EnvironmentBuildError) as info:
        prepare_environment(task, calc["cache"])
    message = str(info.value)
    assert "task local__calc-broken: environment build failed: `echo boom-from-install >&2; false` exited with 1" in message
    assert "boom-from-install" in message.splitlines()[-1]
    log = calc["cache"] / "envs" / f"{env_key(task)}.failed.log"
    assert "apt-get install -y libcalc-dev\n[skipped" in log.read_text() and "boom-from-install" in log.read_text()
    assert not (calc["cache"] / "envs" / env_key(task)).exists()
    assert not list((calc["cache"] / "envs").glob(".tmp-*"))


def test_python_versions():
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert find_python("").prefix == sys.base_prefix
    assert find_python(running).version.startswith(running + ".")
    with pytest.raises(EnvironmentBuildError, match=r"no usable Python 3\.1 on this host .*apt-get install python3\.1 python3\.1-venv"):
        find_python("3.1")


def test_pip_settings_carry_host_config_into_the_sandbox(tmp_path, monkeypatch):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "index" / "simple").mkdir(parents=True)
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nfind-links = {tmp_path}/wheels\nextra-index-url = file://{tmp_path}/index/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "77")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)  # the variable would win over the file, as in pip
    env, binds = pip_settings([sys.executable])
    assert env["PIP_FIND_LINKS"] == f"{tmp_path}/wheels" and env["PIP_DEFAULT_TIMEOUT"] == "77"
    assert env["PIP_EXTRA_INDEX_URL"] == f"file://{tmp_path}/index/simple"
    assert env["PIP_CONFIG_FILE"] == os.devnull  # inside, only these variables count
    assert binds[f"{tmp_path}/wheels"] == f"{tmp_path}/wheels" and f"{tmp_path}/index" in binds


@pytest.mark.slow
def test_prepare_cli_summary_and_exit_code(prepared, capsys):
    good = task_to_record(prepared["task"])
    broken = {**good, "instance_id": "local__calc-2", "base_commit": "1" * 40}
    path = prepared["root"] / "cli.jsonl"
    path.write_text(json.dumps(good) + "\n")
    assert prepare_cli(str(path), cache=prepared["cache"], skip_invalid=False, jobs=2) == 0
    err = capsys.readouterr().err
    assert "environments: 0 built, 1 cached, 0 failed" in err and "workspaces: 0 built, 1 cached, 0 failed" in err
    path.write_text(json.dumps(good) + "\n" + json.dumps(broken) + "\n")
    assert prepare_cli(str(path), cache=prepared["cache"], skip_invalid=False, jobs=1) == 1
    err = capsys.readouterr().err
    assert "workspaces: 0 built, 1 cached, 1 failed" in err and "FAILED workspace of task local__calc-2" in err
    path.write_text(json.dumps({**good, "FAIL_TO_PASS": []}) + "\n")
    assert prepare_cli(str(path), cache=prepared["cache"], skip_invalid=False, jobs=1) == 1
    assert "task local__calc-1: FAIL_TO_PASS is empty" in capsys.readouterr().err
