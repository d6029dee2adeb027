"""`swe-rl run`: the whole recipe under one run directory, read top to bottom.

[warm start: behaviour cloning = the RFT recipe with a scripted collect model] -> evaluation of the
base model on the held-out tasks -> RFT (recipes/rft.py) -> RL stage 1 -> pool re-filter -> RL stage 2
(recipes/rl.py) -> an evaluation after every step that changed the model (recipes/evaluate.py) -> the
report (evaluation/pipeline_report.py). Each step writes `<run>/<step>/step.json`; a finished step is
skipped, so rerunning a killed `swe-rl run` continues it, and a changed config for it is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

from swe_rl.agent.loop import AgentConfig
from swe_rl.config import to_dict
from swe_rl.recipes.rft import RFTConfig, StepMarker
from swe_rl.recipes.rl import RLConfig
from swe_rl.types import Task


@dataclass(frozen=True)
class EvalConfig:
    """How every row of the report is measured: the same held-out tasks, scaffold, budget and seed."""

    runs: int = 10  # K independent runs per held-out task: pass@1 = mean over runs +- SEM, pass@K (paper: 10)
    batch: int = 8  # episodes generating together
    seed: int = 1_000_003  # sampling seed of run 0; distinct from the training seeds
    agent: AgentConfig = field(default_factory=AgentConfig)  # paper: same scaffold, turn limit, temperature as training

    def __post_init__(self) -> None:
        if self.runs < 1 or self.batch < 1:
            raise ValueError(f"eval: runs and batch must be >= 1 (got runs={self.runs}, batch={self.batch})")


# Fields of the nested recipe configs that the pipeline sets itself: a value there would be ignored, so it is an error.
_OWNED = {
    RFTConfig: ("run_dir", "model", "tasks", "instances", "device", "cache_dir"),
    RLConfig: ("model", "tasks", "instances", "out", "device", "stop_after", "init_from"),
}


@dataclass(frozen=True)
class PipelineConfig:
    run_dir: str = "runs/pipeline"  # every artifact of the run goes under it
    model: str = "smollm2-135m"  # the base model: `smollm2-135m`, `tiny` or a Hugging Face directory
    tasks: str = "bundled"  # the training tasks' file (RFT samples, RL pool) or `bundled`
    train_instances: tuple[str, ...] = ()  # training task ids; () = every task of `tasks` that is not held out
    heldout_tasks: str = ""  # the held-out tasks' file; "" = `tasks` (then heldout_instances must name them)
    heldout_instances: tuple[str, ...] = ()  # held-out ids; () = every task of `heldout_tasks`
    device: str = "auto"  # sampling and training device; auto = CUDA when present
    cache_dir: str = ""  # environment and model cache; "" = $SWE_RL_CACHE or ~/.cache/swe-rl
    # Behaviour cloning before RFT: the RFT recipe with `collect_model` a scripted policy (e.g. scripted:gold,
    # gold-patch replays). A documented stand-in for a stronger pretrained prior; None = off (the paper).
    warm_start: RFTConfig | None = None
    rft: RFTConfig = field(default_factory=RFTConfig)  # collect_model "" = the model samples itself (the paper)
    rl: RLConfig = field(default_factory=RLConfig)  # its stages run one after the other, an evaluation after each
    eval: EvalConfig = field(default_factory=EvalConfig)
    # RFT that keeps no trajectory (a model that resolves nothing): "keep" = go on with the unchanged model
    # (said in the report), "error" = stop.
    empty_rft: Literal["keep", "error"] = "keep"

    def __post_init__(self) -> None:
        for section, sub in (("warm_start", self.warm_start), ("rft", self.rft), ("rl", self.rl)):
            if sub is None:
                continue
            default = type(sub)()
            for name in _OWNED[type(sub)]:
                if getattr(sub, name) != getattr(default, name):
                    raise ValueError(f"{section}.{name} is set by the pipeline (from model, tasks, train_instances, "
                                     f"run_dir, device, cache_dir): remove it from the {section} section")
        if self.warm_start is not None and not self.warm_start.collect_model:
            raise ValueError("warm_start.collect_model is empty: a warm start clones a scripted policy (e.g. scripted:gold)")
        overlap = sorted(set(self.train_instances) & set(self.heldout_instances))
        if overlap:
            raise ValueError(f"train_instances and heldout_instances overlap ({', '.join(overlap)}): "
                             "a held-out task is never trained on")


class PipelineError(RuntimeError):
    """A step cannot run: bad task split, a stale run directory, nothing to train on."""


@dataclass(frozen=True)
class ModelStep:
    """A step's model and where it came from: the next step's input and a row of the report."""

    row: str  # the report's row label
    step: str  # the step (directory) that made it
    model: str  # a bundled model name or a Hugging Face directory
    run_id: str  # changes whenever the step is (re)made: later steps record it as their input
    changed: bool  # False: the same weights as the previous row (its evaluation is reused)
    note: str = ""


def _pick(tasks: Sequence[Task], ids: Sequence[str], key: str, source: str) -> list[Task]:
    known = {t.instance_id for t in tasks}
    unknown = sorted(set(ids) - known)
    if unknown:
        raise PipelineError(f"{key}: unknown instance id(s) {', '.join(unknown)} in {source}")
    return [t for t in tasks if t.instance_id in set(ids)]


def split_tasks(cfg: PipelineConfig) -> tuple[list[Task], list[Task]]:
    """(training tasks, held-out tasks): disjoint by instance id; the RFT demonstration task is not held out."""
    from swe_rl.tasks.loaders import load_tasks

    train_all = load_tasks(cfg.tasks)
    held_file = cfg.heldout_tasks or cfg.tasks
    if held_file == cfg.tasks and not cfg.heldout_instances:
        raise PipelineError(f"heldout_instances is empty and heldout_tasks is the training file {cfg.tasks}: "
                            "name the held-out ids, or give a separate heldout_tasks file")
    held_all = train_all if held_file == cfg.tasks else load_tasks(held_file)
    heldout = _pick(held_all, cfg.heldout_instances, "heldout_instances", held_file) if cfg.heldout_instances else list(held_all)
    held_ids = {t.instance_id for t in heldout}
    if cfg.train_instances:
        train = _pick(train_all, cfg.train_instances, "train_instances", cfg.tasks)
    else:
        train = [t for t in train_all if t.instance_id not in held_ids]
    overlap = sorted(held_ids & {t.instance_id for t in train})
    if overlap:
        raise PipelineError(f"training and held-out tasks overlap ({', '.join(overlap)}): a held-out task is never trained on")
    for section, sub in (("warm_start", cfg.warm_start), ("rft", cfg.rft)):
        if sub is not None and sub.demonstration_task in held_ids:
            raise PipelineError(f"{section}.demonstration_task {sub.demonstration_task} is held out: it would leak into the collection prompt")
    if not train or not heldout:
        raise PipelineError(f"no {'training' if not train else 'held-out'} tasks left after the split")
    return train, heldout


class _Run:
    """The run directory and what every step shares (the config, the task split, the cache)."""

    def __init__(self, cfg: PipelineConfig, train: list[Task], heldout: list[Task], quiet: bool | None) -> None:
        self.cfg, self.train, self.heldout, self.quiet = cfg, train, heldout, quiet
        self.dir = Path(cfg.run_dir)
        self.cache = Path(cfg.cache_dir) if cfg.cache_dir else None
        self.train_ids = tuple(t.instance_id for t in train)
        self.steps: list[str] = []  # in the order they ran (or were skipped): the report's wall-time table

    def marker(self, step: str, config: dict[str, Any], source: ModelStep | None, defaults: Any) -> StepMarker:
        """The step's marker; its fingerprint holds its config and the identity of the model it starts from.

        defaults: the config section's class with its defaults (a knob added since a step ran counts as its default).
        """
        # Flat, so a changed-config error names the field (`samples`), not a whole section.
        fingerprint = {**json.loads(json.dumps(config)), "input": f"{source.step}@{source.run_id}" if source else ""}
        self.steps.append(step)
        return StepMarker(self.dir / step, fingerprint, to_dict(defaults))

    def recipe_rft(self, sub: RFTConfig, step: str, model: str) -> RFTConfig:
        ids = tuple(i for i in self.train_ids if i != sub.demonstration_task)
        return replace(sub, run_dir=str(self.dir / step), model=model, tasks=self.cfg.tasks, instances=ids,
                       device=self.cfg.device, cache_dir=self.cfg.cache_dir)


def _begin(step: StepMarker) -> float:
    step.start()
    return time.perf_counter()


def _finish(step: StepMarker, t0: float, row: str, model: str, changed: bool, note: str = "", **summary: Any) -> ModelStep:
    rec = {"row": row, "model": model, "run_id": uuid.uuid4().hex[:12], "changed": changed, "note": note,
           "wall_s": round(time.perf_counter() - t0, 1), **summary}
    return _model_step(step.name, step.finish(rec))


def _model_step(step: str, rec: dict[str, Any]) -> ModelStep:
    return ModelStep(rec["row"], step, rec["model"], rec["run_id"], rec["changed"], rec.get("note", ""))


# ---- the model steps ----------------------------------------------------------------------------

def rft_step(run: _Run, step_name: str, row: str, sub: RFTConfig, prev: ModelStep) -> ModelStep:
    """The RFT recipe (warm start or RFT proper) from `prev`'s model; an empty kept set follows `empty_rft`."""
    from swe_rl.recipes.rft import run_rft

    rcfg = run.recipe_rft(sub, step_name, prev.model)
    # The model is in the input's identity; the directories may move with the run.
    step = run.marker(step_name, to_dict(replace(rcfg, model="", cache_dir="", run_dir="")), prev, RFTConfig())
    if rec := step.done():
        return _model_step(step_name, rec["summary"])
    t0 = _begin(step)
    artifacts = run_rft(rcfg, ("build",))
    funnel = json.loads(Path(artifacts["funnel"]).read_text())
    kept = {"kept": funnel["kept"], "sampled": funnel["sampled"], "examples": funnel["examples"]}
    if funnel["examples"] == 0:
        if run.cfg.empty_rft == "error" or step_name == "warm_start":
            raise PipelineError(f"{step_name}: no trajectory kept ({funnel['sampled']} sampled, {funnel['resolved']} resolved; "
                                f"see {Path(artifacts['funnel']).with_suffix('.md')})")
        note = f"unchanged: 0 of {funnel['sampled']} samples kept"
        return _finish(step, t0, row, prev.model, False, note, **kept)
    model = run_rft(rcfg)["model"]
    return _finish(step, t0, row, model, True, **kept)


def _iterations_done(out: Path) -> int:
    from swe_rl.training.checkpoint import STATE_DIR, latest_checkpoint

    ckpt = latest_checkpoint(out)  # only the step: loading the optimizer state would cost seconds
    return int(json.loads((ckpt / STATE_DIR / "state.json").read_text())["step"]) if ckpt else 0


def _link_model(checkpoint: Path, dest: Path) -> Path:
    """The checkpoint's model files (not the trainer state) under `dest`: hard links, as checkpoints are deleted later."""
    from swe_rl.training.checkpoint import STATE_DIR

    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for src in checkpoint.iterdir():
        if src.name != STATE_DIR and src.is_file():
            try:
                os.link(src, tmp / src.name)
            except OSError:  # another file system
                shutil.copy2(src, tmp / src.name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def rl_stage_step(run: _Run, k: int, start: ModelStep, prev: ModelStep) -> ModelStep:
    """RL up to the end of stage k+1 (recipes/rl.py re-filters the pool on entering it); its model in `<step>/model`."""
    from swe_rl.recipes.rl import run_rl
    from swe_rl.training.checkpoint import latest_checkpoint
    from swe_rl.training.metrics_log import read_metrics

    cfg, name = run.cfg, f"rl_stage{k + 1}"
    out = run.dir / "rl"  # one RL run for every stage: stage k+1 continues the checkpoints of stage k
    rcfg = replace(cfg.rl, model=start.model, tasks=cfg.tasks, instances=run.train_ids, out=out, device=cfg.device)
    # Stage k+1's output depends on every stage up to it, not on the later ones.
    step = run.marker(name, to_dict(replace(rcfg, model="", out="", stages=rcfg.stages[: k + 1])), prev, RLConfig())  # prev's input chain holds `start`
    if rec := step.done():
        return _model_step(name, rec["summary"])
    t0 = _begin(step)
    target = sum(s.iterations for s in cfg.rl.stages[: k + 1])
    done = _iterations_done(out)
    if done > target:
        raise PipelineError(f"{name}: {out} already holds {done} RL iterations, past this stage's end ({target}); delete {out}")
    if done < target:
        run_rl(replace(rcfg, stop_after=target - done), resume=True, cache=run.cache, quiet=run.quiet)
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["stage"] == k + 1] if (out / "metrics.jsonl").exists() else []
    steps = sum(r.get("optimizer_steps", 0) for r in rows)
    yarn_before = max([1.0] + [s.yarn_factor for s in cfg.rl.stages[:k]])
    changed = steps > 0 or cfg.rl.stages[k].yarn_factor != yarn_before
    ckpt = latest_checkpoint(out)
    if ckpt is None:  # no iteration at all (iterations: 0): the model is the one RL started from
        return _finish(step, t0, f"RL stage {k + 1}", prev.model, False, "no RL iteration", optimizer_steps=0)
    model = _link_model(ckpt, step.dir / "model")
    pool = rows[-1]["pool_size"] if rows else None
    note = "" if changed else "unchanged: every advantage was 0"
    return _finish(step, t0, f"RL stage {k + 1}", str(model), changed, note, iterations=len(rows),
                   optimizer_steps=steps, pool_size=pool)


# ---- evaluation ---------------------------------------------------------------------------------

def eval_step(run: _Run, src: ModelStep, evaluated: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Evaluate `src`'s model on the held-out tasks into `<run>/eval_<step>/`; an unchanged model reuses the last one."""
    from swe_rl.recipes.evaluate import evaluate
    from swe_rl.recipes.rollout import make_policy

    cfg = run.cfg
    name = f"eval_{src.step}"
    held = [t.instance_id for t in run.heldout]
    step = run.marker(name, {**to_dict(cfg.eval), "heldout": held, "heldout_tasks": cfg.heldout_tasks or cfg.tasks}, src, EvalConfig())
    if rec := step.done():
        return rec["summary"]
    t0 = _begin(step)
    if not src.changed and evaluated:
        last = list(evaluated.values())[-1]
        return step.finish({**last, "row": src.row, "same_as": last["same_as"] or last["row"], "note": src.note, "wall_s": 0.0})
    policy = make_policy(src.model, run.heldout, device=cfg.device, cache=run.cache)
    policy.name = src.row  # the trajectories and the viewer name the row, not a long directory
    evaluate(run.heldout, policy, cfg.eval.agent, step.dir, runs=cfg.eval.runs, resume=True, batch=cfg.eval.batch,
             seed=cfg.eval.seed, cache=run.cache, quiet=run.quiet)
    return step.finish({"row": src.row, "model": src.model, "eval_dir": str(step.dir), "same_as": "", "note": src.note,
                        "wall_s": round(time.perf_counter() - t0, 1)})


# ---- the whole recipe ---------------------------------------------------------------------------

def run_pipeline(cfg: PipelineConfig, *, quiet: bool | None = None) -> dict[str, Any]:
    """Every step in order (each skipped when done); returns report.json's content."""
    import yaml

    from swe_rl.evaluation.pipeline_report import write_pipeline_report
    from swe_rl.sandbox.environments import require_prepared

    started = time.perf_counter()
    train, heldout = split_tasks(cfg)
    run = _Run(cfg, train, heldout, quiet)
    require_prepared(train + heldout, run.cache)
    run.dir.mkdir(parents=True, exist_ok=True)
    (run.dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

    base = ModelStep("base", "base", cfg.model, f"model:{cfg.model}", True)
    evaluated: dict[str, dict[str, Any]] = {}
    evaluated["base"] = eval_step(run, base, evaluated)
    model = base
    if cfg.warm_start is not None:
        model = rft_step(run, "warm_start", "warm start (BC)", cfg.warm_start, model)
        evaluated[model.step] = eval_step(run, model, evaluated)
    model = rft_step(run, "rft", "RFT", cfg.rft, model)
    evaluated[model.step] = eval_step(run, model, evaluated)
    rft_model = model
    for k in range(len(cfg.rl.stages)):
        model = rl_stage_step(run, k, rft_model, model)
        evaluated[model.step] = eval_step(run, model, evaluated)

    return write_pipeline_report(run.dir, list(evaluated.values()), rl_metrics=run.dir / "rl" / "metrics.jsonl",
                                 train_ids=run.train_ids, heldout_ids=[t.instance_id for t in heldout],
                                 wall_s=time.perf_counter() - started, step_walls=_step_walls(run))


def _step_walls(run: _Run) -> dict[str, float]:
    """Seconds each step took when it ran (a skipped step keeps the time of the invocation that made it)."""
    walls = {}
    for name in run.steps:
        rec = json.loads((run.dir / name / "step.json").read_text())
        walls[name] = rec.get("summary", {}).get("wall_s", 0.0)
    return walls


def run_cli(config: Path | None, overrides: Sequence[str] = (), *, cache: Path | None = None) -> int:
    """`swe-rl run CONFIG [--set k=v ...]`."""
    from swe_rl.config import ConfigError, load_config
    from swe_rl.recipes.rft import RFTError
    from swe_rl.sandbox.environments import EnvironmentNotPrepared

    try:
        cfg = load_config(PipelineConfig, config, [*overrides, *([f"cache_dir={cache}"] if cache else [])])
        report = run_pipeline(cfg)
    except (ConfigError, PipelineError, RFTError, EnvironmentNotPrepared) as e:
        raise SystemExit(f"swe-rl run: {e}") from None
    print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    """The table without its note column (a terminal is narrow), then one line per note."""
    from rich.console import Console
    from rich.table import Table

    from swe_rl.evaluation.pipeline_report import COLUMNS, table_cells

    table = Table(title=f"held-out: {report['heldout_tasks']} tasks x {report['runs']} runs ({report['wall_s']:.0f} s)")
    for i, col in enumerate(COLUMNS[:-1]):
        table.add_column(col.replace("pass@K", f"pass@{report['runs']}"), justify="left" if i == 0 else "right", no_wrap=True)
    notes = []
    for row in report["rows"]:
        *cells, note = table_cells(row, report["runs"])
        table.add_row(*cells)
        notes += [f"{row['row']}: {note}"] if note else []
    console = Console()
    console.print(table)
    for line in notes:
        console.print(line)
    console.print(f"report: {report['report']}\nHTML report (trajectory viewer): {report['viewer']}")
