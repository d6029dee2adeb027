"""Record -> Task validation on records shaped exactly like SWE-bench, SWE-bench Verified and SWE-rebench rows."""

from __future__ import annotations

import json

import pytest

from swe_rl.tasks.schema import TaskValidationError, task_to_record, validate_task
from swe_rl.types import InstallConfig

SHA = "e7fd69d051eaa67cb17f172a39b57253e9cb831a"
ENV_SHA = "419a78300f7cd27611196e1e464d50fd0385ff27"


def swebench_record(**overrides):
    """A SWE-bench / Verified row: test ids are JSON strings, no install_config, no repo_url."""
    record = {
        "repo": "django/django",
        "instance_id": "django__django-11099",
        "base_commit": SHA,
        "patch": "diff --git a/django/contrib/auth/validators.py b/django/contrib/auth/validators.py\n",
        "test_patch": "diff --git a/tests/auth_tests/test_validators.py b/tests/auth_tests/test_validators.py\n",
        "problem_statement": "UsernameValidator allows trailing newline in usernames",
        "hints_text": "",
        "created_at": "2019-03-20T03:46:18Z",
        "version": "3.0",
        "FAIL_TO_PASS": '["test_ascii_validator (auth_tests.test_validators.UsernameValidatorsTests)"]',
        "PASS_TO_PASS": '["test_help_text (auth_tests.test_validators.UserAttributeSimilarityValidatorTest)"]',
        "environment_setup_commit": ENV_SHA,
        "difficulty": "<15 min fix",  # SWE-bench Verified only
    }
    record.update(overrides)
    return record


def swerebench_record(**overrides):
    """A SWE-rebench row: test ids are lists, install_config is a struct with None for absent keys."""
    record = {
        "instance_id": "0b01001001__spectree-64",
        "repo": "0b01001001/spectree",
        "base_commit": "a091fab020ac26548250c907bae0855273a98778",
        "patch": "diff --git a/spectree/utils.py b/spectree/utils.py\n",
        "test_patch": "diff --git a/tests/test_utils.py b/tests/test_utils.py\n",
        "problem_statement": "[BUG]description for query paramters can not show in swagger ui",
        "hints_text": "",
        "created_at": "2020-10-12 09:41:39",
        "version": "0.3",
        "environment_setup_commit": "a091fab020ac26548250c907bae0855273a98778",
        "meta": {"commit_name": "head_commit", "has_test_patch": True, "llm_score": {"difficulty_score": 1}},
        "install_config": {
            "env_vars": None,
            "env_yml_path": None,
            "install": "pip install -e .[flask,falcon,starlette]",
            "log_parser": "parse_log_pytest",
            "no_use_env": None,
            "packages": "requirements.txt",
            "pip_packages": ["pytest"],
            "pre_install": None,
            "python": "3.9",
            "reqs_path": ["requirements.txt"],
            "test_cmd": "pytest --no-header -rA --tb=line --color=no -p no:cacheprovider -W ignore::DeprecationWarning",
        },
        "requirements": "pytest==8.3.5 pydantic==2.11.1",
        "environment": "name: spectree channels: - defaults",
        "FAIL_TO_PASS": ["tests/test_utils.py::test_parse_params"],
        "FAIL_TO_FAIL": [],
        "PASS_TO_PASS": ["tests/test_utils.py::test_comments", "tests/test_utils.py::test_parse_code"],
        "PASS_TO_FAIL": [],
        "license_name": "Apache License 2.0",
        "docker_image": "swerebench/sweb.eval.x86_64.0b01001001_1776_spectree-64",
        "image_name": "swerebench/sweb.eval.x86_64.0b01001001_1776_spectree-64",
    }
    record.update(overrides)
    return record


def test_swebench_record_loads_unchanged():
    task = validate_task(swebench_record())
    assert task.instance_id == "django__django-11099"
    assert task.FAIL_TO_PASS == ("test_ascii_validator (auth_tests.test_validators.UsernameValidatorsTests)",)
    assert len(task.PASS_TO_PASS) == 1
    assert task.env_commit == ENV_SHA
    assert task.repo_url == "https://github.com/django/django.git"
    assert task.install_config == InstallConfig()
    assert task.extra == {"created_at": "2019-03-20T03:46:18Z", "difficulty": "<15 min fix"}


def test_swerebench_record_maps_install_config_and_keeps_the_rest():
    task = validate_task(swerebench_record())
    ic = task.install_config
    assert ic.python == "3.9"
    assert ic.install == "pip install -e .[flask,falcon,starlette]"
    assert ic.pip_packages == ("pytest",)
    assert ic.pre_install == ()
    assert ic.test_cmd.startswith("pytest --no-header -rA")
    assert ic.log_parser == "parse_log_pytest"
    assert task.image_name == "swerebench/sweb.eval.x86_64.0b01001001_1776_spectree-64"
    # keys swe-rl does not use are kept unchanged, None values included
    assert task.extra["install_config"] == {
        "env_vars": None, "env_yml_path": None, "no_use_env": None, "packages": "requirements.txt", "reqs_path": ["requirements.txt"],
    }
    assert task.extra["meta"]["llm_score"] == {"difficulty_score": 1}
    assert task.extra["FAIL_TO_FAIL"] == [] and task.extra["license_name"] == "Apache License 2.0"
    assert "docker_image" not in task.extra and "image_name" not in task.extra


def test_install_config_string_forms():
    config = {
        "python": "3.11",
        "pre_install": "apt-get update\nexport FOO=1 && echo hi\n",
        "pip_packages": "pytest==8.3.3  hypothesis\nnumpy<2",
        "install": ["pip install -e .", "python setup.py build_ext -i"],
        "test_cmd": ["cd src", "pytest -rA"],
        "eval_commands": ["export LANG=C"],
    }
    task = validate_task(swerebench_record(install_config=json.dumps(config), docker_image="img:1", image_name=None))
    ic = task.install_config
    assert ic.pre_install == ("apt-get update", "export FOO=1 && echo hi")
    assert ic.pip_packages == ("pytest==8.3.3", "hypothesis", "numpy<2")
    assert ic.install == "pip install -e . && python setup.py build_ext -i"
    assert ic.test_cmd == "cd src && pytest -rA"
    assert task.image_name == "img:1"
    assert task.extra["install_config"] == {"eval_commands": ["export LANG=C"]}


def test_absent_test_cmd_keeps_the_default():
    task = validate_task(swerebench_record(install_config={"python": "", "test_cmd": None, "log_parser": ""}))
    assert task.install_config.test_cmd == InstallConfig().test_cmd
    assert task.install_config.log_parser == InstallConfig().log_parser


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"FAIL_TO_PASS": "[]"}, "task django__django-11099: FAIL_TO_PASS is empty"),
        ({"FAIL_TO_PASS": []}, "task django__django-11099: FAIL_TO_PASS is empty"),
        ({"FAIL_TO_PASS": "[not json"}, "task django__django-11099: FAIL_TO_PASS is a string but not a JSON list"),
        ({"FAIL_TO_PASS": {"a": 1}}, "task django__django-11099: FAIL_TO_PASS must be a list of test ids, got dict"),
        ({"PASS_TO_PASS": ["ok", ""]}, "task django__django-11099: PASS_TO_PASS[1] is not a non-empty string"),
        ({"base_commit": None}, "task django__django-11099: missing field base_commit"),
        ({"base_commit": "main"}, "task django__django-11099: base_commit 'main' is not a commit hash"),
        ({"environment_setup_commit": "XYZ"}, "task django__django-11099: environment_setup_commit 'XYZ' is not a commit hash"),
        ({"problem_statement": "  "}, "task django__django-11099: problem_statement is empty"),
        ({"version": 3.0}, "task django__django-11099: version must be a string, got float"),
        ({"repo": "django"}, "task django__django-11099: repo 'django' is not 'owner/name'"),
        ({"install_config": "{oops"}, "task django__django-11099: install_config is a string but not JSON"),
        ({"install_config": [1]}, "task django__django-11099: install_config must be an object, got list"),
        ({"install_config": {"python": 3.1}}, "task django__django-11099: install_config.python must be a string"),
        ({"install_config": {"python": "py3"}}, "task django__django-11099: install_config.python 'py3' is not a Python version"),
        ({"install_config": {"pip_packages": [1]}}, "task django__django-11099: install_config.pip_packages must be a list of strings"),
        ({"install_config": {"install": 5}}, "task django__django-11099: install_config.install must be a string"),
        ({"repo_url": "./nowhere.bundle"}, "task django__django-11099: repo_url './nowhere.bundle' does not exist"),
    ],
)
def test_each_error_names_task_and_field(overrides, message):
    with pytest.raises(TaskValidationError) as info:
        validate_task(swebench_record(**overrides))
    assert len(info.value.errors) == 1, info.value.errors
    assert info.value.errors[0].startswith(message), info.value.errors


def test_record_without_instance_id_is_named_by_position():
    record = swebench_record()
    del record["instance_id"], record["base_commit"]
    with pytest.raises(TaskValidationError) as info:
        validate_task(record, where="record 7 (line 8)")
    assert info.value.errors == [
        "record 7 (line 8): missing field instance_id",
        "record 7 (line 8): missing field base_commit",
    ]


def test_all_problems_of_a_record_are_listed():
    with pytest.raises(TaskValidationError) as info:
        validate_task(swebench_record(FAIL_TO_PASS="[]", base_commit="zz", problem_statement=None))
    assert len(info.value.errors) == 3
    assert "3 errors" in str(info.value)


def test_repo_url_forms(tmp_path):
    bundle = tmp_path / "repos" / "calc.bundle"
    bundle.parent.mkdir()
    bundle.write_bytes(b"# v2 git bundle\n")
    assert validate_task(swebench_record(repo_url="repos/calc.bundle"), base_dir=tmp_path).repo_url == str(bundle)
    assert validate_task(swebench_record(repo_url=f"file://{bundle}")).repo_url == str(bundle)
    for url in ("https://example.org/x/y.git", "ssh://git@example.org/x/y.git", "git@example.org:x/y.git"):
        assert validate_task(swebench_record(repo_url=url)).repo_url == url
    # a local repo needs no owner/name
    assert validate_task(swebench_record(repo="calc", repo_url=str(tmp_path))).repo_url == str(tmp_path)


def test_task_to_record_round_trips():
    for record in (swebench_record(), swerebench_record(docker_image="other:1")):
        task = validate_task(record)
        again = validate_task(json.loads(json.dumps(task_to_record(task))))
        assert again == task
