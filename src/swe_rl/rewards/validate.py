"""Check a task set with its own gold patches: `swe-rl tasks validate FILE [--reruns N]`.

A task is valid iff its gold `patch` resolves on every rerun and the empty patch does not
(PAPER.md section 3: the paper dropped tests that flipped over 50 reruns of the gold patch).
Each grade is a full, fresh grading run (grading.py), exactly what RL rewards will see.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from swe_rl.rewards.grading import GradeRun, grade_run
from swe_rl.types import Task


@dataclass
class Validation:
    instance_id: str
    valid: bool
    gold_resolved: int  # how many of the reruns resolved
    reruns: int
    empty_resolved: bool
    problems: list[str] = field(default_factory=list)
    flaky_tests: dict[str, list[str]] = field(default_factory=dict)  # test id -> statuses seen across reruns
    gold_restored_paths: dict[str, str] = field(default_factory=dict)  # gold patch paths grading restores
    duration_s: float = 0.0


def validate_task(task: Task, *, reruns: int = 1, cache: Path | None = None) -> Validation:
    """Grade the gold patch `reruns` times and the empty patch once."""
    if reruns < 1:
        raise ValueError(f"reruns must be >= 1, got {reruns}")
    gold: list[GradeRun] = [grade_run(task, task.patch, cache=cache) for _ in range(reruns)]
    empty = grade_run(task, "", cache=cache)
    problems = []
    if not task.patch.strip():
        problems.append("the task has no gold patch")
    errors = [r.grade.reason for r in [*gold, empty] if r.grade.status == "error"]
    if errors:
        problems.append(f"{len(errors)} grading runs failed on our side: {errors[0]}")
    n_resolved = sum(r.grade.resolved for r in gold)
    if n_resolved < reruns:
        first = next(r.grade.reason for r in gold if not r.grade.resolved)
        problems.append(f"gold patch resolved {n_resolved}/{reruns} runs: {first}")
    if empty.grade.resolved:
        problems.append("the empty patch resolves the task (FAIL_TO_PASS tests pass without a fix)")
    restored = gold[0].restored
    if restored:
        problems.append(f"grading restores paths the gold patch changes: {sorted(restored)[:5]}")
    seen: dict[str, set[str]] = {}
    for r in gold:
        for tests in (r.grade.fail_to_pass, r.grade.pass_to_pass):
            for test, status in tests.items():
                seen.setdefault(test, set()).add(status)
    flaky = {t: sorted(s) for t, s in seen.items() if len(s) > 1}
    if flaky:
        problems.append(f"{len(flaky)} tests change status across reruns")
    return Validation(task.instance_id, valid=not problems, gold_resolved=n_resolved, reruns=reruns,
                      empty_resolved=empty.grade.resolved, problems=problems, flaky_tests=flaky,
                      gold_restored_paths=restored,
                      duration_s=round(sum(r.grade.duration_s for r in [*gold, empty]), 3))


def validate_cli(file: str, *, reruns: int = 1, cache: Path | None = None, skip_invalid: bool = False,
                 out: Path | None = None) -> int:
    """Print a table; write the report to `out` (JSON) if given; exit 1 when any task is invalid."""
    from rich.console import Console
    from rich.table import Table

    from swe_rl.tasks.loaders import load_tasks

    tasks = load_tasks(file, skip_invalid=skip_invalid)
    console = Console()
    results = []
    with console.status("validating") as status:
        for i, task in enumerate(tasks, 1):
            status.update(f"validating {task.instance_id} ({i}/{len(tasks)}, {reruns} reruns)")
            results.append(validate_task(task, reruns=reruns, cache=cache))
            if out is not None:  # rewritten after each task: a crash keeps what was done
                _write(out, results, reruns)
    table = Table(title=f"task validation: {file} ({reruns} gold reruns per task)")
    for col in ("instance_id", "valid", "gold", "empty", "flaky", "problems"):
        table.add_column(col)
    for v in results:
        table.add_row(v.instance_id, "[green]yes[/]" if v.valid else "[red]NO[/]", f"{v.gold_resolved}/{v.reruns}",
                      "resolved" if v.empty_resolved else "unresolved", str(len(v.flaky_tests)), "; ".join(v.problems))
    console.print(table)
    invalid = [v.instance_id for v in results if not v.valid]
    console.print(f"{len(results) - len(invalid)}/{len(results)} tasks valid" + (f"; invalid: {', '.join(invalid)}" if invalid else ""))
    return 1 if invalid else 0


def _write(out: Path, results: list[Validation], reruns: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"reruns": reruns, "valid": sum(v.valid for v in results), "total": len(results),
            "tasks": [asdict(v) for v in results]}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(out)
