"""Loading task sets from every supported source, and reporting invalid records across a whole set."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swe_rl.tasks import loaders
from swe_rl.tasks.loaders import list_cli, load_tasks, load_tasks_report
from swe_rl.tasks.schema import TaskValidationError

from .test_schema import swebench_record, swerebench_record


def three_records():
    return [
        swebench_record(),
        swebench_record(instance_id="django__django-11133", FAIL_TO_PASS=["test_memoryview_content (httpwrappers.tests.HttpResponseTests)"]),
        swerebench_record(),
    ]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def assert_three(tasks):
    assert [t.instance_id for t in tasks] == ["django__django-11099", "django__django-11133", "0b01001001__spectree-64"]
    assert tasks[2].install_config.python == "3.9"


def test_jsonl(tmp_path):
    assert_three(load_tasks(write_jsonl(tmp_path / "tasks.jsonl", three_records())))


def test_json_list_and_instances_object(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(three_records()))
    (tmp_path / "b.json").write_text(json.dumps({"instances": three_records()}))
    assert_three(load_tasks(tmp_path / "a.json"))
    assert_three(load_tasks(str(tmp_path / "b.json")))


def test_json_of_wrong_shape(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"tasks": []}))
    with pytest.raises(TaskValidationError, match="expected a JSON list of task records"):
        load_tasks(tmp_path / "c.json")


def test_parquet_as_published(tmp_path):
    # SWE-bench parquet: test ids are strings; SWE-rebench parquet: lists and an install_config struct.
    swebench = [swebench_record(), swebench_record(instance_id="django__django-11133")]
    pq.write_table(pa.Table.from_pylist(swebench), tmp_path / "swebench.parquet")
    pq.write_table(pa.Table.from_pylist([swerebench_record()]), tmp_path / "rebench.parquet")
    assert [t.instance_id for t in load_tasks(tmp_path / "swebench.parquet")] == ["django__django-11099", "django__django-11133"]
    (task,) = load_tasks(tmp_path / "rebench.parquet")
    assert task.FAIL_TO_PASS == ("tests/test_utils.py::test_parse_params",)
    assert task.install_config.pip_packages == ("pytest",)
    assert task.extra["install_config"]["reqs_path"] == ["requirements.txt"]


def test_datasets_save_to_disk_and_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    swebench = [swebench_record(), swebench_record(instance_id="django__django-11133")]
    datasets.Dataset.from_list(swebench).save_to_disk(str(tmp_path / "single"))
    assert len(load_tasks(tmp_path / "single")) == 2
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_list(swebench), "dev": datasets.Dataset.from_list(swebench[:1])})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert len(load_tasks(f"{tmp_path / 'dict'}:dev")) == 1
    assert len(load_tasks(f"{tmp_path / 'dict'}:test")) == 2
    with pytest.raises(TaskValidationError, match="several splits; pick one with ':SPLIT' \\(splits: dev, test\\)"):
        load_tasks(tmp_path / "dict")
    with pytest.raises(TaskValidationError, match="split 'train' not found"):
        load_tasks(f"{tmp_path / 'dict'}:train")


def test_datasets_arrow_file_and_data_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([swerebench_record()])
    ds.save_to_disk(str(tmp_path / "saved"))
    (arrow,) = (tmp_path / "saved").glob("*.arrow")
    assert load_tasks(arrow)[0].instance_id == "0b01001001__spectree-64"
    # a hub snapshot laid out as data/<split>-*.parquet, read through datasets.load_dataset(dir)
    (tmp_path / "snapshot" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([swebench_record()]), tmp_path / "snapshot" / "data" / "test-00000-of-00001.parquet")
    assert load_tasks(tmp_path / "snapshot")[0].instance_id == "django__django-11099"


def test_bundled_names_the_packaged_file(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "BUNDLED_TASKS", write_jsonl(tmp_path / "bundled.jsonl", three_records()))
    assert_three(load_tasks("bundled"))


def test_real_bundled_set_is_valid():
    if not loaders.BUNDLED_TASKS.exists():
        pytest.skip(f"{loaders.BUNDLED_TASKS} not created yet")
    tasks = load_tasks("bundled")
    assert tasks and all(t.repo_url and not t.repo_url.startswith("https://") for t in tasks)


def test_hub_name_without_network_fails_naming_the_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", "/nonexistent-swe-rl-cache")
    with pytest.raises(TaskValidationError, match="SWE-bench/SWE-bench_Verified: cannot read"):
        load_tasks("SWE-bench/SWE-bench_Verified:test")


def test_missing_source(tmp_path):
    with pytest.raises(TaskValidationError, match="no such file or directory"):
        load_tasks(tmp_path / "missing.jsonl")
    (tmp_path / "tasks.csv").write_text("a,b\n")
    with pytest.raises(TaskValidationError, match="unknown tasks file type '.csv'"):
        load_tasks(tmp_path / "tasks.csv")


def bad_jsonl(tmp_path):
    records = three_records()
    lines = [json.dumps(r) for r in records]
    lines.insert(1, "")  # blank lines are not records
    lines.append("{not json")
    lines.append(json.dumps(swebench_record(FAIL_TO_PASS="[]", instance_id="django__django-1")))
    missing = swebench_record()
    del missing["instance_id"], missing["base_commit"]
    lines.append(json.dumps(missing))
    lines.append(json.dumps(swebench_record()))  # duplicate of record 0
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


EXPECTED_ERRORS = [
    "record 3 (line 5): invalid JSON (Expecting property name enclosed in double quotes at column 2)",
    "task django__django-1: FAIL_TO_PASS is empty",
    "record 5 (line 7): missing field instance_id",
    "record 5 (line 7): missing field base_commit",
    "task django__django-11099: duplicate instance_id (record 6 (line 8); first seen in record 0 (line 1))",
]


def test_all_errors_of_a_set_in_one_exception(tmp_path):
    with pytest.raises(TaskValidationError) as info:
        load_tasks(bad_jsonl(tmp_path))
    assert info.value.errors == EXPECTED_ERRORS
    assert "bad.jsonl: invalid tasks (5 errors)" in str(info.value)


def test_skip_invalid_loads_the_rest_and_reports(tmp_path, caplog):
    path = bad_jsonl(tmp_path)
    tasks, errors = load_tasks_report(path)
    assert_three(tasks)
    assert errors == EXPECTED_ERRORS
    with caplog.at_level(logging.WARNING, logger="swe_rl.tasks.loaders"):
        assert_three(load_tasks(path, skip_invalid=True))
    assert [r.getMessage() for r in caplog.records] == [f"skipped invalid task: {e}" for e in EXPECTED_ERRORS]


def test_relative_repo_url_resolves_against_the_tasks_file(tmp_path, monkeypatch):
    (tmp_path / "sets" / "repos").mkdir(parents=True)
    (tmp_path / "sets" / "repos" / "calc.bundle").write_bytes(b"# v2 git bundle\n")
    path = write_jsonl(tmp_path / "sets" / "tasks.jsonl", [swebench_record(repo_url="repos/calc.bundle")])
    monkeypatch.chdir(tmp_path)
    assert load_tasks("sets/tasks.jsonl")[0].repo_url == str(tmp_path / "sets" / "repos" / "calc.bundle")
    assert path.exists()


def test_list_cli(tmp_path, capsys):
    assert list_cli(str(write_jsonl(tmp_path / "ok.jsonl", three_records()))) == 0
    out = capsys.readouterr().out
    assert "3 tasks from" in out and "django__django-11133" in out and "0b01001001__spectree-64" in out
    bad = str(bad_jsonl(tmp_path))
    assert list_cli(bad) == 1
    captured = capsys.readouterr()
    assert "5 records invalid" in captured.err and "FAIL_TO_PASS is empty" in captured.err
    assert list_cli(bad, skip_invalid=True) == 0
    assert "5 records skipped" in capsys.readouterr().err
    assert list_cli(str(tmp_path / "missing.jsonl")) == 1
