"""One SWE-bench / SWE-bench Verified / SWE-rebench record -> a validated `Task`, and back.

This is the boundary where task data enters swe-rl (DESIGN.md, Contracts: Task):
records are accepted exactly as the public datasets publish them, every problem is
reported with the task (or record) and the field it concerns, and what swe-rl does
not map is kept unchanged in `Task.extra` so nothing of the source is lost.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from swe_rl.types import InstallConfig, Task


class TaskValidationError(ValueError):
    """Invalid task records. `.errors` holds one message per problem, each naming task/record and field."""

    def __init__(self, errors: list[str], header: str = "invalid tasks") -> None:
        self.errors = list(errors)
        n = len(self.errors)
        super().__init__(f"{header} ({n} error{'s' * (n != 1)}):\n" + "\n".join(f"  - {e}" for e in self.errors))


# Fields of the record that map onto Task attributes (everything else goes to Task.extra).
_TEXT_FIELDS = ("patch", "test_patch", "version", "hints_text")
_INSTALL_KEYS = ("python", "pre_install", "install", "pip_packages", "test_cmd", "log_parser")
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")  # abbreviated or full SHA-1 / SHA-256
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)  # https://, ssh://, file://, git://
_SCP = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@host:owner/name.git


def default_repo_url(repo: str) -> str:
    return f"https://github.com/{repo}.git"


def is_remote_url(url: str) -> bool:
    """True for URLs git fetches over a transport; False for local repository paths and bundle files."""
    return bool(_URL.match(url) and not url.lower().startswith("file://")) or bool(_SCP.match(url))


def validate_task(record: Mapping[str, Any], *, where: str = "record", base_dir: Path | None = None) -> Task:
    """Turn one source record into a `Task`, or raise `TaskValidationError` listing all its problems.

    `where` names the record when its instance_id is unusable ("record 7 (line 8)");
    `base_dir` resolves a relative local `repo_url` (the tasks file's directory).
    """
    if not isinstance(record, Mapping):
        raise TaskValidationError([f"{where}: expected an object, got {type(record).__name__}"])
    iid = record.get("instance_id")
    name = f"task {iid}" if isinstance(iid, str) and iid.strip() else where
    errors: list[str] = []

    def err(msg: str) -> None:
        errors.append(f"{name}: {msg}")

    def text(key: str, required: bool = False) -> str:
        value = record.get(key)
        if value is None:
            if required:
                err(f"missing field {key}")
            return ""
        if not isinstance(value, str):
            err(f"{key} must be a string, got {type(value).__name__}")
            return ""
        if required and not value.strip():
            err(f"{key} is empty")
        return value

    instance_id = text("instance_id", required=True)
    repo = text("repo", required=True)
    base_commit = text("base_commit", required=True)
    problem_statement = text("problem_statement", required=True)
    env_commit = text("environment_setup_commit")
    for key, value in (("base_commit", base_commit), ("environment_setup_commit", env_commit)):
        if value and not _COMMIT.match(value):
            err(f"{key} {value!r} is not a commit hash (7-64 lowercase hex digits)")
    values = {key: text(key) for key in _TEXT_FIELDS}

    fail_to_pass = _test_ids(record, "FAIL_TO_PASS", err, required=True)
    pass_to_pass = _test_ids(record, "PASS_TO_PASS", err, required=False)
    repo_url = _repo_url(record, repo, base_dir, err)
    install, install_extra = _install_config(record.get("install_config"), err)

    image_name = record.get("image_name") or record.get("docker_image") or ""
    if not isinstance(image_name, str):
        err(f"image_name must be a string, got {type(image_name).__name__}")
        image_name = ""

    known = {f.name for f in fields(Task)} - {"extra"} | {"docker_image"}
    extra = {k: v for k, v in record.items() if k not in known}
    if record.get("docker_image") not in (None, "", image_name):  # both given and different: keep the other one
        extra["docker_image"] = record["docker_image"]
    if install_extra:
        extra["install_config"] = install_extra
    if errors:
        raise TaskValidationError(errors, header=f"{name} is invalid")
    return Task(
        instance_id=instance_id,
        repo=repo,
        base_commit=base_commit,
        problem_statement=problem_statement,
        FAIL_TO_PASS=fail_to_pass,
        PASS_TO_PASS=pass_to_pass,
        environment_setup_commit=env_commit,
        repo_url=repo_url,
        install_config=install,
        image_name=image_name,
        extra=extra,
        **values,
    )


def task_to_record(task: Task) -> dict[str, Any]:
    """The inverse of `validate_task`: a SWE-bench-shaped dict (test ids as lists) that loads back equal."""
    record: dict[str, Any] = dict(task.extra)
    unmapped = dict(record.pop("install_config", None) or {})
    ic = task.install_config
    record.update(
        instance_id=task.instance_id,
        repo=task.repo,
        base_commit=task.base_commit,
        problem_statement=task.problem_statement,
        patch=task.patch,
        test_patch=task.test_patch,
        FAIL_TO_PASS=list(task.FAIL_TO_PASS),
        PASS_TO_PASS=list(task.PASS_TO_PASS),
        version=task.version,
        environment_setup_commit=task.environment_setup_commit,
        hints_text=task.hints_text,
        install_config={
            **unmapped,
            "python": ic.python,
            "pre_install": list(ic.pre_install),
            "install": ic.install,
            "pip_packages": list(ic.pip_packages),
            "test_cmd": ic.test_cmd,
            "log_parser": ic.log_parser,
        },
    )
    if task.repo_url:
        record["repo_url"] = task.repo_url
    if task.image_name:
        record["image_name"] = task.image_name
    return record


def _test_ids(record: Mapping[str, Any], key: str, err, *, required: bool) -> tuple[str, ...]:
    """FAIL_TO_PASS / PASS_TO_PASS: a list, or a JSON string of a list (SWE-bench), of test ids."""
    value = record.get(key)
    if value is None:
        if required:
            err(f"missing field {key}")
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            err(f"{key} is a string but not a JSON list of test ids ({e.msg} at char {e.pos})")
            return ()
    if not isinstance(value, (list, tuple)):
        err(f"{key} must be a list of test ids, got {type(value).__name__}")
        return ()
    bad = [i for i, t in enumerate(value) if not isinstance(t, str) or not t.strip()]
    if bad:
        err(f"{key}[{bad[0]}] is not a non-empty string: {value[bad[0]]!r}")
        return ()
    if required and not value:
        err(f"{key} is empty")
    return tuple(value)


def _repo_url(record: Mapping[str, Any], repo: str, base_dir: Path | None, err) -> str:
    """A git URL as given; a local repository or bundle resolved to an absolute path that exists."""
    url = record.get("repo_url")
    if url is None or url == "":
        if repo and not re.match(r"^[\w.-]+/[\w.-]+$", repo):
            err(f"repo {repo!r} is not 'owner/name' and no repo_url says where to clone it from")
        return default_repo_url(repo) if repo else ""
    if not isinstance(url, str):
        err(f"repo_url must be a string, got {type(url).__name__}")
        return ""
    if is_remote_url(url):
        return url
    local = Path(url[len("file://"):] if url.lower().startswith("file://") else url).expanduser()
    if not local.is_absolute():
        local = (base_dir or Path.cwd()) / local
    local = local.resolve()
    if not local.exists():
        err(f"repo_url {url!r} does not exist (resolved to {local})")
    return str(local)


def _install_config(value: Any, err) -> tuple[InstallConfig, dict[str, Any]]:
    """SWE-rebench's install_config (dict or JSON string; None values mean absent) -> InstallConfig + unmapped keys."""
    if value is None or value == "":
        return InstallConfig(), {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            err(f"install_config is a string but not JSON ({e.msg} at char {e.pos})")
            return InstallConfig(), {}
    if not isinstance(value, Mapping):
        err(f"install_config must be an object, got {type(value).__name__}")
        return InstallConfig(), {}
    given = {k: v for k, v in value.items() if k in _INSTALL_KEYS and v is not None}
    unmapped = {k: v for k, v in value.items() if k not in _INSTALL_KEYS}
    out: dict[str, Any] = {}

    def string(key: str, joiner: str) -> None:
        v = given.get(key)
        if v is None:
            return
        if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            v = joiner.join(x for x in v if x.strip())
        if not isinstance(v, str):
            err(f"install_config.{key} must be a string or a list of strings, got {type(v).__name__}")
            return
        out[key] = v.strip()

    def items(key: str, split) -> None:
        v = given.get(key)
        if v is None:
            return
        if isinstance(v, str):
            v = split(v)
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            err(f"install_config.{key} must be a list of strings or a string, got {v!r}")
            return
        out[key] = tuple(x.strip() for x in v if x.strip())

    python = given.get("python")
    if isinstance(python, (int, float)) and not isinstance(python, bool):
        err(f"install_config.python must be a string like \"3.11\", got the number {python!r} (3.10 would read as 3.1)")
    elif python is not None:
        string("python", "")
        if out.get("python") and not re.match(r"^3\.\d+(\.\d+)?$", out["python"]):
            err(f"install_config.python {out['python']!r} is not a Python version like \"3.11\"")
    string("install", " && ")
    string("test_cmd", " && ")  # a list of commands runs in order; test ids are appended to the last
    string("log_parser", "")
    items("pre_install", lambda s: s.splitlines())  # commands: one per line (spaces belong to the command)
    items("pip_packages", shlex.split)  # requirement specifiers: whitespace separated
    if "test_cmd" in out and not out["test_cmd"]:
        del out["test_cmd"]  # an empty test command means "use the default", not "run nothing"
    if "log_parser" in out and not out["log_parser"]:
        del out["log_parser"]
    return InstallConfig(**out), unmapped
