"""SWE-bench predictions files: one `preds.jsonl` per evaluation run, readable by the official harness as is.

The harness (`swebench.harness.run_evaluation --predictions_path`) reads a `.jsonl` file with
`json.loads` on every line and keys the records by `instance_id`, so: no blank lines, one JSON
object per line, and at most one prediction per instance (a duplicate would silently replace the
first). `model_name_or_path` names the log directory ("/" becomes "__"); an empty `model_patch`
is counted as unresolved without running anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from swe_rl.types import Trajectory

KEYS = ("instance_id", "model_name_or_path", "model_patch")


def write_preds(trajectories: Iterable[Trajectory], path: Path, model_name: str) -> Path:
    """Write one run's predictions (one trajectory per task) to `path`, which must end in `.jsonl`."""
    path = Path(path)
    if path.suffix != ".jsonl":
        raise ValueError(f"predictions file {path}: the SWE-bench harness only reads names ending in .jsonl")
    if not model_name.strip():
        raise ValueError(f"predictions file {path}: model_name is empty (the harness names its log directory after it)")
    records: dict[str, dict[str, str]] = {}
    for t in trajectories:
        if t.instance_id in records:
            raise ValueError(
                f"predictions file {path}: two trajectories for task {t.instance_id!r} "
                f"(one run holds one prediction per task; group trajectories by sample_index first)"
            )
        records[t.instance_id] = {"instance_id": t.instance_id, "model_name_or_path": model_name, "model_patch": t.patch or ""}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # ensure_ascii keeps every line pure ASCII: a patch with odd bytes or U+2028 cannot split a line.
    tmp.write_text("".join(json.dumps(r, ensure_ascii=True) + "\n" for r in records.values()), encoding="utf-8")
    tmp.replace(path)
    return path


def write_run_preds(trajectories: Iterable[Trajectory], out_dir: Path, model_name: str) -> dict[int, Path]:
    """Split trajectories by run (`sample_index`) and write `out_dir/run{r}/preds.jsonl` for each run."""
    runs: dict[int, list[Trajectory]] = {}
    for t in trajectories:
        runs.setdefault(t.sample_index, []).append(t)
    return {r: write_preds(ts, Path(out_dir) / f"run{r}" / "preds.jsonl", model_name) for r, ts in sorted(runs.items())}


def read_preds(path: Path) -> list[dict[str, str]]:
    """Read and validate a predictions file (.jsonl, or .json as a list or an {instance_id: pred} map).

    Returns the records in file order with `model_patch` as a string ("" for null). Every problem
    names the file and line; a duplicate instance id is an error rather than a silent overwrite.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        items = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a list of predictions or an {{instance_id: prediction}} object")
        located = [(f"{path}[{i}]", item) for i, item in enumerate(items)]
    else:
        located = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                raise ValueError(f"{path}:{number}: blank line (the SWE-bench harness cannot read it)")
            try:
                located.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not valid JSON: {e}") from None
    preds: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for where, record in located:
        if not isinstance(record, dict):
            raise ValueError(f"{where}: a prediction must be a JSON object, got {type(record).__name__}")
        missing = [k for k in KEYS if k not in record]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        patch = "" if record["model_patch"] is None else record["model_patch"]
        for key, value in (("instance_id", record["instance_id"]), ("model_name_or_path", record["model_name_or_path"]), ("model_patch", patch)):
            if not isinstance(value, str):
                raise ValueError(f"{where}: {key} must be a string, got {type(value).__name__}")
        iid = record["instance_id"]
        if iid in seen:
            raise ValueError(f"{where}: duplicate instance_id {iid!r} (first at {seen[iid]})")
        seen[iid] = where
        preds.append({**record, "model_patch": patch})
    return preds
