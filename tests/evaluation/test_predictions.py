import json

import pytest

from swe_rl.evaluation.predictions import read_preds, write_preds, write_run_preds
from tests.evaluation.conftest import trajectory

# A patch with everything that could break a line-based reader: newlines, quotes, non-ASCII, U+2028.
PATCH = 'diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-s = "a"\n+s = "é\u2028\\n"\n'


def harness_read(path):
    """What swebench.harness.utils.get_predictions_from_file does with a .jsonl file, then run_evaluation.main."""
    assert str(path).endswith(".jsonl")
    with open(path) as f:
        predictions = [json.loads(line) for line in f]
    return {p["instance_id"]: p for p in predictions}


def test_preds_file_is_what_the_harness_reads(tmp_path) -> None:
    ts = [trajectory("org__repo-1", 0, True, patch=PATCH), trajectory("org__repo-2", 0, False, patch="")]
    path = write_preds(ts, tmp_path / "preds.jsonl", "org/model")
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(line.isascii() for line in lines)
    preds = harness_read(path)
    assert preds == {
        "org__repo-1": {"instance_id": "org__repo-1", "model_name_or_path": "org/model", "model_patch": PATCH},
        "org__repo-2": {"instance_id": "org__repo-2", "model_name_or_path": "org/model", "model_patch": ""},
    }
    assert read_preds(path) == list(preds.values())


def test_one_file_per_run(tmp_path) -> None:
    ts = [trajectory(task, run, True, patch=f"{task}{run}") for run in (0, 1) for task in ("a", "b")]
    paths = write_run_preds(ts, tmp_path, "m")
    assert paths == {0: tmp_path / "run0" / "preds.jsonl", 1: tmp_path / "run1" / "preds.jsonl"}
    assert [p["model_patch"] for p in read_preds(paths[1])] == ["a1", "b1"]


@pytest.mark.parametrize(
    "name,model,ts,match",
    [
        ("preds.json", "m", [], "only reads names ending in .jsonl"),
        ("preds.jsonl", " ", [], "model_name is empty"),
        ("preds.jsonl", "m", [trajectory("a", 0, True), trajectory("a", 1, True)], "two trajectories for task 'a'"),
    ],
)
def test_write_preds_refuses_what_the_harness_would_misread(tmp_path, name, model, ts, match) -> None:
    with pytest.raises(ValueError, match=match):
        write_preds(ts, tmp_path / name, model)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    "text,match",
    [
        ('{"instance_id": "a", "model_name_or_path": "m", "model_patch": ""}\n\n', r"preds.jsonl:2: blank line"),
        ('{"instance_id": "a", "model_patch": ""}\n', r"preds.jsonl:1: missing model_name_or_path"),
        ('{"instance_id": "a", "model_name_or_path": "m", "model_patch": 3}\n', r":1: model_patch must be a string"),
        ('[1]\n', r":1: a prediction must be a JSON object"),
        ('{"instance_id": "a"\n', r":1: not valid JSON"),
        ('{"instance_id": "a", "model_name_or_path": "m", "model_patch": ""}\n' * 2, r":2: duplicate instance_id 'a' \(first at .*:1\)"),
    ],
)
def test_read_preds_names_the_bad_line(tmp_path, text, match) -> None:
    path = tmp_path / "preds.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_preds(path)


def test_read_preds_accepts_the_json_forms_and_null_patches(tmp_path) -> None:
    record = {"instance_id": "a", "model_name_or_path": "m", "model_patch": None}
    for data in ([record], {"a": record}):
        path = tmp_path / "preds.json"
        path.write_text(json.dumps(data))
        assert read_preds(path) == [{**record, "model_patch": ""}]


def test_the_swebench_harness_accepts_the_file(tmp_path) -> None:
    """With the `swebench` extra installed, the harness's own reader and dataset filter take the file as is."""
    utils = pytest.importorskip("swebench.harness.utils", reason="the swebench extra is not installed (pip install -e .[swebench])")
    run_evaluation = pytest.importorskip("swebench.harness.run_evaluation")
    dataset = tmp_path / "tasks.jsonl"
    dataset.write_text("".join(json.dumps({"instance_id": i, "repo": "org/repo", "version": "1"}) + "\n" for i in ("a", "b", "c")))
    path = write_preds([trajectory("a", 0, True, patch=PATCH), trajectory("b", 0, False, patch="")], tmp_path / "preds.jsonl", "org/m")
    preds = {p["instance_id"]: p for p in utils.get_predictions_from_file(str(path), str(dataset), "test")}
    assert preds["a"]["model_patch"] == PATCH
    selected = run_evaluation.get_dataset_from_preds(str(dataset), "test", [], preds, "run-id", False)
    assert [i["instance_id"] for i in selected] == ["a"]  # b's empty patch is unresolved without a run
