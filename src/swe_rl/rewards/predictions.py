"""Grade a SWE-bench predictions file: `swe-rl grade --tasks FILE --preds PREDS --out DIR`.

Reads predictions the way the SWE-bench harness does (JSONL, or a JSON list, or a JSON
object keyed by instance id), grades each in its own fresh sandbox (grading.py) on a small
thread pool, and writes every result as soon as it exists, so a crash loses nothing done.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from swe_rl.rewards.grading import GradeRun, grade_run
from swe_rl.types import Task

KEYS = ("instance_id", "model_name_or_path", "model_patch")


def load_predictions(path: Path) -> list[dict[str, Any]]:
    """Predictions as dicts with KEYS; `model_patch` None becomes "". Errors name the file and record."""
    text = Path(path).read_text()
    records: list[Any]
    if str(path).endswith(".jsonl") or not text.lstrip().startswith(("[", "{")) or _is_jsonl(text):
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {n} is not JSON: {e}") from None
    else:
        data = json.loads(text)
        if isinstance(data, dict) and "instance_id" in data:
            records = [data]
        elif isinstance(data, dict):  # {instance_id: prediction}, as the harness accepts
            records = [{"instance_id": k, **v} if isinstance(v, dict) else v for k, v in data.items()]
        else:
            records = data
    preds, seen = [], set()
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict) or not isinstance(rec.get("instance_id"), str):
            raise ValueError(f"{path}: prediction {n} has no string instance_id")
        iid = rec["instance_id"]
        if iid in seen:
            raise ValueError(f"{path}: instance_id {iid!r} is predicted twice")
        seen.add(iid)
        patch = rec.get("model_patch")
        if patch is not None and not isinstance(patch, str):
            raise ValueError(f"{path}: prediction {iid!r}: model_patch must be a string, got {type(patch).__name__}")
        preds.append({"instance_id": iid, "model_name_or_path": str(rec.get("model_name_or_path") or ""),
                      "model_patch": patch or ""})
    return preds


def _is_jsonl(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return False
    try:
        json.loads(text)
        return False
    except json.JSONDecodeError:
        return True


def _write_json(path: Path, data: Any) -> None:
    """Write-then-rename, so a reader (or a crash) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


class Summary:
    """The running totals of `summary.json`, rewritten after every graded prediction."""

    def __init__(self, out: Path, total: int, submitted: int, unknown: list[str]) -> None:
        self.out, self.lock = out, threading.Lock()
        self.data: dict[str, Any] = {"total": total, "submitted": submitted, "resolved": 0, "unresolved": 0,
                                     "error": 0, "empty": 0, "resolved_ids": [], "unresolved_ids": [],
                                     "error_ids": [], "empty_patch_ids": [], "unknown_ids": unknown}
        self.save()

    def add(self, iid: str, kind: str) -> None:
        key = {"resolved": "resolved_ids", "unresolved": "unresolved_ids", "error": "error_ids",
               "empty": "empty_patch_ids"}[kind]
        with self.lock:
            self.data[key] = sorted([*self.data[key], iid])
            self.data[kind] += 1
            self.save()

    def save(self) -> None:
        _write_json(self.out / "summary.json", self.data)


def write_instance(out: Path, pred: dict[str, Any], run: GradeRun | None) -> None:
    """DIR/<instance_id>/{report.json, test_output.txt, patch.diff}."""
    d = out / pred["instance_id"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "patch.diff").write_text(pred["model_patch"])
    if run is None:
        _write_json(d / "report.json", {"instance_id": pred["instance_id"], "model_name_or_path": pred["model_name_or_path"],
                                        "status": "empty", "patch_is_empty": True})
        return
    (d / "test_output.txt").write_text(run.log)
    report = {**run.grade.to_dict(), "resolved": run.grade.resolved, "model_name_or_path": pred["model_name_or_path"],
              "test_command": run.test_command, "restored_paths": run.restored}
    _write_json(d / "report.json", report)


def grade_predictions(tasks: list[Task], preds: list[dict[str, Any]], out: Path, *, cache: Path | None = None,
                      jobs: int = 2, progress: bool = True,
                      grader: Callable[[Task, str], GradeRun] | None = None) -> dict[str, Any]:
    """Grade every prediction whose task is known; returns the summary (also in `out/summary.json`).

    `grader` replaces `grade_run(task, patch, cache=cache)` (e.g. to grade on another backend)."""
    by_id = {t.instance_id: t for t in tasks}
    unknown = sorted(p["instance_id"] for p in preds if p["instance_id"] not in by_id)
    known = [p for p in preds if p["instance_id"] in by_id]
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(out, total=len(tasks), submitted=len(preds), unknown=unknown)
    todo = []
    for pred in known:
        if pred["model_patch"].strip():
            todo.append(pred)
        else:  # as the SWE-bench harness: an empty patch is reported, not run
            write_instance(out, pred, None)
            summary.add(pred["instance_id"], "empty")

    def one(pred: dict[str, Any]) -> tuple[dict[str, Any], GradeRun]:
        task = by_id[pred["instance_id"]]
        return pred, (grader(task, pred["model_patch"]) if grader else grade_run(task, pred["model_patch"], cache=cache))

    from rich.progress import Progress

    with Progress(disable=not progress, transient=False) as bar, ThreadPoolExecutor(max(1, jobs)) as pool:
        task_bar = bar.add_task("grading", total=len(todo))
        for fut in as_completed([pool.submit(one, p) for p in todo]):
            pred, run = fut.result()
            write_instance(out, pred, run)
            summary.add(pred["instance_id"], run.grade.status)
            bar.advance(task_bar)
    return summary.data


def print_summary(summary: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"grading summary ({out / 'summary.json'})")
    for col in ("total", "submitted", "resolved", "unresolved", "error", "empty"):
        table.add_column(col, justify="right")
    table.add_row(*(str(summary[c]) for c in ("total", "submitted", "resolved", "unresolved", "error", "empty")))
    console = Console()
    console.print(table)
    if summary["unknown_ids"]:
        console.print(f"[bold red]{len(summary['unknown_ids'])} predictions name no task in the tasks file:[/] "
                      + ", ".join(summary["unknown_ids"]))
    if summary["error_ids"]:
        console.print("[bold red]infrastructure errors (see their report.json):[/] " + ", ".join(summary["error_ids"]))


def grade_cli(tasks: str, preds: Path, out: Path, *, cache: Path | None = None, skip_invalid: bool = False,
              jobs: int = 2) -> int:
    """`swe-rl grade`: 0 when every prediction was graded and named a known task, else 1."""
    from swe_rl.tasks.loaders import load_tasks

    task_list = load_tasks(tasks, skip_invalid=skip_invalid)
    summary = grade_predictions(task_list, load_predictions(preds), Path(out), cache=cache, jobs=jobs)
    print_summary(summary, Path(out))
    return 1 if summary["error_ids"] or summary["unknown_ids"] else 0
