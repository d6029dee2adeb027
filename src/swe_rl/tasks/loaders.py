"""Reading task sets: JSONL, JSON, parquet, Hugging Face `datasets` (local or hub) and `bundled`.

`load_tasks` is the one entry every recipe uses to get `Task`s (DESIGN.md data flow:
tasks/ -> rollouts/). Sources are read as plain records, validated one by one by
`schema.validate_task`, and every problem of the whole set is reported at once.

Accepted sources (`source` argument, also the `FILE` of `swe-rl tasks ...`):
  - `bundled`: the tasks shipped with swe-rl (`swe_rl.paths.BUNDLED_TASKS`);
  - `*.jsonl` / `*.ndjson`: one record per line (blank lines ignored);
  - `*.json`: a list of records, or an object whose `instances` key holds that list;
  - `*.parquet`: one record per row (the SWE-bench / SWE-rebench hub files, unchanged);
  - `*.arrow`: a `datasets` cache file; a directory written by `Dataset.save_to_disk`;
    any other directory is read by `datasets.load_dataset(dir)` (e.g. `data/test-*.parquet`);
  - `owner/name[:split]` that is not a local path: a Hugging Face hub dataset (needs network).
A `:split` suffix picks the split of a multi-split dataset. Relative local `repo_url`s are
resolved against the directory that holds the tasks file (or dataset directory).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from swe_rl.paths import BUNDLED_TASKS
from swe_rl.tasks.schema import TaskValidationError, is_remote_url, validate_task
from swe_rl.types import Task

log = logging.getLogger(__name__)

_HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")
_FILE_SUFFIXES = {".jsonl", ".ndjson", ".json", ".parquet", ".arrow"}
Records = list[tuple[str, Any]]  # (where, record) pairs; `where` names the record in errors


def load_tasks(source: str | Path, *, skip_invalid: bool = False) -> list[Task]:
    """Load and validate every task of `source`.

    Without `skip_invalid`, any invalid record (or duplicate instance_id) fails the whole
    load with one `TaskValidationError` listing every problem; with it, the valid tasks
    are returned and each problem is logged as a warning (`load_tasks_report` returns them).
    """
    tasks, errors = load_tasks_report(source)
    if errors and not skip_invalid:
        raise TaskValidationError(errors, header=f"{source}: invalid tasks")
    for e in errors:
        log.warning("skipped invalid task: %s", e)
    return tasks


def load_tasks_report(source: str | Path) -> tuple[list[Task], list[str]]:
    """The valid tasks of `source` and one message per invalid record. Raises only if the source is unreadable."""
    records, errors, base_dir = read_records(source)
    tasks: list[Task] = []
    first_seen: dict[str, str] = {}
    for where, record in records:
        try:
            task = validate_task(record, where=where, base_dir=base_dir)
        except TaskValidationError as e:
            errors.extend(e.errors)
            continue
        if task.instance_id in first_seen:
            errors.append(f"task {task.instance_id}: duplicate instance_id ({where}; first seen in {first_seen[task.instance_id]})")
            continue
        first_seen[task.instance_id] = where
        tasks.append(task)
    return tasks, errors


def read_records(source: str | Path) -> tuple[Records, list[str], Path]:
    """Raw records of `source`, errors of records that could not even be parsed, and the base directory."""
    text = str(source)
    path = BUNDLED_TASKS if text == "bundled" else Path(text).expanduser()
    split = None
    if not path.exists() and ":" in text:
        head, _, tail = text.rpartition(":")
        if Path(head).expanduser().exists() or _HUB_NAME.match(head):
            path, split = Path(head).expanduser(), tail
    if path.exists():
        path = path.resolve()
        records, errors = _read_local(path, split)
        return records, errors, path.parent
    name = text.rpartition(":")[0] if split else text
    if _HUB_NAME.match(name) and Path(name).suffix not in _FILE_SUFFIXES:
        return _read_hub(name, split), [], Path.cwd()
    raise TaskValidationError([f"{source}: no such file or directory, and not a hub dataset name 'owner/name[:split]'"], header="cannot read tasks")


def _read_local(path: Path, split: str | None) -> tuple[Records, list[str]]:
    suffix = path.suffix.lower()
    if path.is_dir():
        import datasets

        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            return _rows(datasets.load_from_disk(str(path)), path, split), []
        return _rows(_guard(path, lambda: datasets.load_dataset(str(path))), path, split), []
    if split:
        raise TaskValidationError([f"{path}: a ':{split}' split applies only to datasets, not to a {suffix} file"], header="cannot read tasks")
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path), []
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = _guard(path, lambda: pq.read_table(path).to_pylist())
        return [(f"record {i}", r) for i, r in enumerate(rows)], []
    if suffix == ".arrow":
        import datasets

        return _rows(_guard(path, lambda: datasets.Dataset.from_file(str(path))), path, None), []
    raise TaskValidationError(
        [f"{path}: unknown tasks file type {suffix!r} (expected .jsonl, .json, .parquet, .arrow or a datasets directory)"],
        header="cannot read tasks",
    )


def _read_jsonl(path: Path) -> tuple[Records, list[str]]:
    records: Records = []
    errors: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"record {len(records) + len(errors)} (line {line_no})"
            try:
                records.append((where, json.loads(line)))
            except json.JSONDecodeError as e:
                errors.append(f"{where}: invalid JSON ({e.msg} at column {e.colno})")
    return records, errors


def _read_json(path: Path) -> Records:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TaskValidationError([f"{path}: invalid JSON ({e.msg} at line {e.lineno}, column {e.colno})"], header="cannot read tasks") from e
    if isinstance(data, dict) and isinstance(data.get("instances"), list):
        data = data["instances"]
    if not isinstance(data, list):
        raise TaskValidationError(
            [f"{path}: expected a JSON list of task records or an object with an 'instances' list, got {type(data).__name__}"],
            header="cannot read tasks",
        )
    return [(f"record {i}", r) for i, r in enumerate(data)]


def _read_hub(name: str, split: str | None) -> Records:
    import datasets

    return _rows(_guard(name, lambda: datasets.load_dataset(name, split=split)), name, None)


def _rows(data: Any, origin: Path | str, split: str | None) -> Records:
    """Rows of a `datasets.Dataset`, or of the chosen (or only) split of a `DatasetDict`."""
    if isinstance(data, dict):  # DatasetDict is a dict of split name -> Dataset
        splits = sorted(data.keys())
        if split is None and len(splits) == 1:
            split = splits[0]
        if split not in splits:
            wanted = f"split {split!r} not found" if split else "several splits; pick one with ':SPLIT'"
            raise TaskValidationError([f"{origin}: {wanted} (splits: {', '.join(splits)})"], header="cannot read tasks")
        data = data[split]
    elif split is not None:
        raise TaskValidationError([f"{origin}: has a single split; remove ':{split}'"], header="cannot read tasks")
    return [(f"record {i}", r) for i, r in enumerate(data.to_list())]


def _guard(origin: Path | str, read) -> Any:
    """Run a third-party reader; turn its failure into an error that names the source."""
    try:
        return read()
    except TaskValidationError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure means "this source cannot be read"
        raise TaskValidationError([f"{origin}: cannot read ({type(e).__name__}: {e})"], header="cannot read tasks") from e


def list_cli(file: str, skip_invalid: bool = False) -> int:
    """`swe-rl tasks list FILE`: a table of the tasks, then every invalid record. Exit 1 if any (unless skipped)."""
    from rich.console import Console
    from rich.table import Table

    out, err = Console(), Console(stderr=True)
    try:
        tasks, errors = load_tasks_report(file)
    except TaskValidationError as e:
        err.print(str(e), style="red", highlight=False, markup=False)
        return 1
    table = Table(title=f"{len(tasks)} tasks from {file}")
    for col in ("instance_id", "base_commit", "F2P", "P2P", "python", "source"):
        table.add_column(col, no_wrap=col != "source", overflow="fold")
    for t in tasks:
        table.add_row(
            t.instance_id, t.base_commit[:10], str(len(t.FAIL_TO_PASS)), str(len(t.PASS_TO_PASS)),
            t.install_config.python or "-", _short(t.repo_url),
        )
    out.print(table)
    if errors:
        verdict = "skipped" if skip_invalid else "invalid (use --skip-invalid to load the rest)"
        err.print(f"{len(errors)} records {verdict}:", highlight=False)
        for e in errors:
            err.print(f"  - {e}", highlight=False, markup=False)
    return 1 if errors and not skip_invalid else 0


def _short(url: str) -> str:
    """A local repository or bundle by its file name (the full path is long and the same for a whole set)."""
    return url if is_remote_url(url) else Path(url).name

