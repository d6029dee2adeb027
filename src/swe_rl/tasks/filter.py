"""The paper's curation funnel on any task set: `swe-rl tasks filter FILE --out KEPT`.

PAPER.md section 3 filtered SWE-rebench 21,336 -> 7,249 tasks. In order: patch limits
(<= 7 files, < 500 changed lines), duplicates (same repository and gold patch), optionally an
LLM clarity score (tasks/clarity.py; the worst score, 3, is dropped), tests that
fail for environment or import reasons, tests that flip over N gold reruns (flaky ids are
dropped; the task goes when FAIL_TO_PASS would be empty), gold patches that do not resolve.
Each grading is a fresh run of rewards/grading.py, exactly what RL rewards will see.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from swe_rl.rewards.grading import GradeRun, grade_run
from swe_rl.tasks.clarity import ClarityScorer
from swe_rl.types import Task

MAX_FILES = 7
MAX_CHANGED_LINES = 500  # exclusive, as the paper: "fewer than 500"
_ENV_ERROR = re.compile(r"ModuleNotFoundError|ImportError|error during collection|ERROR collecting|"
                        r"command not found|No module named|fixture '\w+' not found")


def patch_size(patch: str) -> tuple[int, int]:
    """(files, changed lines) of a unified diff."""
    files = len(re.findall(r"^diff --git ", patch, re.M)) or len(re.findall(r"^\+\+\+ ", patch, re.M))
    changed = sum(1 for line in patch.splitlines()
                  if line[:1] in "+-" and not line.startswith(("+++ ", "--- ")))
    return files, changed


def environment_problem(run: GradeRun, task: Task) -> str:
    """Why the gold run failed for environment reasons ("" if it did not)."""
    if run.grade.status == "error":
        return run.grade.reason
    broken = [t for t, s in {**run.grade.fail_to_pass, **run.grade.pass_to_pass}.items() if s in ("ERROR", "MISSING")]
    if broken and (m := _ENV_ERROR.search(run.log)):
        return f"{len(broken)} tests do not run ({m.group(0)})"
    return ""


def funnel(tasks: list[Task], *, reruns: int = 3, cache: Path | None = None, on_task=None, jobs: int = 1,
           clarity: ClarityScorer | None = None) -> tuple[list[Task], list[dict]]:
    """(kept tasks, funnel steps [{step, kept, dropped: {instance_id: reason}}]).

    `jobs` gold gradings run at once; `clarity` adds the LLM clarity step (after duplicates).
    """
    steps: list[dict] = [{"step": "input", "kept": len(tasks), "dropped": {}}]

    def step(name: str, kept: list[Task], dropped: dict[str, str]) -> list[Task]:
        steps.append({"step": name, "kept": len(kept), "dropped": dropped})
        return kept

    dropped: dict[str, str] = {}
    small = []
    for t in tasks:
        files, changed = patch_size(t.patch)
        if not t.patch.strip():
            dropped[t.instance_id] = "no gold patch"
        elif files > MAX_FILES or changed >= MAX_CHANGED_LINES:
            dropped[t.instance_id] = f"patch too large: {files} files, {changed} changed lines"
        else:
            small.append(t)
    tasks = step(f"patch <= {MAX_FILES} files, < {MAX_CHANGED_LINES} lines", small, dropped)

    seen: dict[tuple[str, str], str] = {}
    dropped, unique = {}, []
    for t in tasks:
        key = (t.repo, t.patch.strip())
        if key in seen:
            dropped[t.instance_id] = f"duplicate of {seen[key]}"
        else:
            seen[key] = t.instance_id
            unique.append(t)
    tasks = step("duplicates", unique, dropped)

    if clarity is not None:  # before grading: an unclear task is not worth its reruns
        scores = clarity.score_all(tasks)
        dropped = {t.instance_id: f"clarity score {scores[t.instance_id].score} >= {clarity.drop}"
                   for t in tasks if clarity.drops(scores[t.instance_id])}
        unscored = {t.instance_id: scores[t.instance_id].reply[:200] for t in tasks if scores[t.instance_id].score is None}
        tasks = [replace(t, extra={**t.extra, "clarity": scores[t.instance_id].to_dict()})
                 for t in tasks if t.instance_id not in dropped]
        step(f"LLM clarity score < {clarity.drop}", tasks, dropped)
        steps[-1]["unscored_kept"] = unscored  # the documented rule: no score -> kept, and listed here

    def gold_runs(t: Task) -> list[GradeRun]:
        return [grade_run(t, t.patch, cache=cache) for _ in range(reruns)]

    runs: dict[str, list[GradeRun]] = {}
    env_dropped, env_ok = {}, []
    # Grading is subprocess-bound (one sandbox per run): threads overlap it; results are read in input order.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for t, task_runs in zip(tasks, pool.map(gold_runs, tasks)):
            runs[t.instance_id] = task_runs
            problem = next((p for r in task_runs if (p := environment_problem(r, t))), "")
            if problem:
                env_dropped[t.instance_id] = f"environment: {problem}"
            else:
                env_ok.append(t)
            if on_task is not None:
                on_task(t)
    tasks = step("environment / import errors", env_ok, env_dropped)

    dropped, stable = {}, []
    for t in tasks:
        seen_status: dict[str, set[str]] = {}
        for r in runs[t.instance_id]:
            for test, status in {**r.grade.fail_to_pass, **r.grade.pass_to_pass}.items():
                seen_status.setdefault(test, set()).add(status == "PASSED" or status == "XFAIL")
        flaky = {test for test, outcomes in seen_status.items() if len(outcomes) > 1}
        f2p = tuple(x for x in t.FAIL_TO_PASS if x not in flaky)
        if not f2p:
            dropped[t.instance_id] = f"flaky: all {len(t.FAIL_TO_PASS)} FAIL_TO_PASS tests flip over {reruns} runs"
            continue
        if flaky:
            t = replace(t, FAIL_TO_PASS=f2p, PASS_TO_PASS=tuple(x for x in t.PASS_TO_PASS if x not in flaky),
                        extra={**t.extra, "dropped_flaky_tests": sorted(flaky)})
        stable.append(t)
    tasks = step(f"flaky tests over {reruns} gold runs", stable, dropped)

    dropped, resolved = {}, []
    for t in tasks:
        flaky = set(t.extra.get("dropped_flaky_tests", ()))
        bad = [r.grade.reason for r in runs[t.instance_id] if not _resolved_without(r, flaky)]
        if bad:
            dropped[t.instance_id] = f"gold patch does not resolve: {bad[0]}"
        else:
            resolved.append(t)
    tasks = step("gold patch resolves", resolved, dropped)
    return tasks, steps


def _resolved_without(run: GradeRun, flaky: set[str]) -> bool:
    g = run.grade
    if g.status == "error" or not g.patch_applied:
        return False
    ok = ("PASSED", "XFAIL")
    return all(s in ok for t, s in g.fail_to_pass.items() if t not in flaky) and \
        all(s in (*ok, "SKIPPED") for t, s in g.pass_to_pass.items() if t not in flaky)


def filter_cli(file: str, *, out: Path, funnel_out: Path | None = None, reruns: int = 3, cache: Path | None = None,
               skip_invalid: bool = False, jobs: int = 1, llm_url: str | None = None, llm_model: str = "default",
               clarity_drop: int = 3) -> int:
    from rich.console import Console
    from rich.table import Table

    from swe_rl.tasks.loaders import load_tasks
    from swe_rl.tasks.split import write_tasks

    console = Console(stderr=True)
    tasks = load_tasks(file, skip_invalid=skip_invalid)
    with console.status(f"grading {len(tasks)} gold patches x {reruns}") as status:
        done = [0]

        def tick(task: Task) -> None:
            done[0] += 1
            status.update(f"graded {done[0]} tasks ({task.instance_id}), {reruns} runs each")

        clarity = ClarityScorer(llm_url, llm_model, drop=clarity_drop, cache=cache) if llm_url else None
        kept, steps = funnel(tasks, reruns=reruns, cache=cache, on_task=tick, jobs=jobs, clarity=clarity)
    write_tasks(kept, out)
    table = Table(title=f"curation funnel: {file}")
    for col in ("step", "kept", "dropped"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for s in steps:
        table.add_row(s["step"], str(s["kept"]), str(len(s["dropped"])) if s["step"] != "input" else "")
    Console().print(table)
    funnel_out = funnel_out or out.with_name(out.stem + ".funnel.json")
    funnel_out.write_text(json.dumps({"source": str(file), "reruns": reruns, "steps": steps}, indent=2) + "\n")
    if clarity is not None:
        unscored = sum(len(s.get("unscored_kept", {})) for s in steps)
        console.print(f"clarity: {clarity.asked} asked ({len(tasks) - clarity.asked} from the cache at most), "
                      f"{unscored} unscored replies kept", highlight=False)
    console.print(f"{len(kept)}/{len(tasks)} tasks kept -> {out}; funnel -> {funnel_out}", highlight=False)
    return 0
