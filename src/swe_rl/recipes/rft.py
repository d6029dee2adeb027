"""`swe-rl rft`: rejection fine-tuning (PAPER.md section 4), read top to bottom.

demonstration (a task's gold patch replayed once through the tools) -> collect (G episodes per
training task, the demonstration in the prompt) -> filter (resolved, not ended at a limit; the
funnel) -> build (SFT examples WITHOUT the demonstration, format-error turns masked) -> train
(training/sft.py) -> a Hugging Face model directory. Everything lands under `run_dir`; a step
whose output exists is skipped, so running the same command again continues a killed run.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from swe_rl.agent.loop import AgentConfig
from swe_rl.config import load_config, to_dict
from swe_rl.training.sft import SFTConfig
from swe_rl.types import ExitReason, Task, Trajectory

STEPS = ("demonstration", "collect", "build", "train")


@dataclass(frozen=True)
class RFTConfig:
    run_dir: str = "runs/rft"  # every artifact of the run goes under it
    model: str = "smollm2-135m"  # the model fine-tuned: `smollm2-135m`, `tiny` or a Hugging Face directory
    # The model that samples the trajectories; "" = `model` (the paper's RFT). `scripted:gold` replays
    # each task's gold patch: it resolves every task, for tests and for showing the mechanics on a CPU.
    collect_model: str = ""
    tasks: str = "bundled"  # tasks file or `bundled`
    instances: tuple[str, ...] = ()  # training tasks; () = every task but the demonstration task
    limit: int = 0  # only the first N training tasks; 0 = all
    demonstration_task: str = "jpvanhal__inflection-1"  # its replay is the one-shot demo; never trained on
    # The scripted policy replayed on demonstration_task: `scripted:gold` (its gold patch, the paper's demo) or
    # `scripted:explore` (the steps a model can infer from its context; synthesized tasks only).
    demonstration_policy: str = "scripted:gold"
    samples: int = 10  # G: episodes per training task (paper: 10)
    drop_exit_reasons: tuple[ExitReason, ...] = ("turn_limit", "context_limit")  # resolved but truncated: dropped
    # Mask the turns whose edit the tools refused (a syntax error, file unchanged) as format-error turns are:
    # kept as context, not imitated. Off in the paper's RFT; on for `scripted:explore-recover`'s deliberate stumbles.
    mask_rejected_edits: bool = False
    batch: int = 8  # episodes generating together
    seed: int = 0
    device: str = "auto"  # sampling and training device; auto = CUDA when present
    cache_dir: str = ""  # environment and model cache; "" = $SWE_RL_CACHE or ~/.cache/swe-rl
    agent: AgentConfig = field(default_factory=AgentConfig)  # the scaffold while collecting
    sft: SFTConfig = field(default_factory=SFTConfig)  # the fine-tuning (paper values are its defaults)

    def __post_init__(self) -> None:
        if self.samples < 1 or self.limit < 0:
            raise ValueError(f"samples must be >= 1 and limit >= 0 (got samples={self.samples}, limit={self.limit})")
        if self.agent.demonstration_file and self.demonstration_task:
            raise ValueError("agent.demonstration_file and demonstration_task are both set: choose one (set the other to '')")
        if self.demonstration_policy not in ("scripted:gold", "scripted:explore"):
            raise ValueError(f"demonstration_policy {self.demonstration_policy!r}: choose scripted:gold or scripted:explore")
        if self.instances and self.demonstration_task in self.instances:
            raise ValueError(f"instances holds the demonstration task {self.demonstration_task}: it must not be trained on")


class RFTError(RuntimeError):
    """A step cannot run (nothing to train on, a stale run directory, an unresolved demonstration)."""


# The config keys each step's output depends on (cumulative): a step is only skipped when they match.
_STEP_KEYS = {
    "demonstration": ("tasks", "demonstration_task", "demonstration_policy", "agent"),
    "collect": ("model", "collect_model", "instances", "limit", "samples", "seed"),
    "build": ("drop_exit_reasons", "mask_rejected_edits"),
    "train": ("sft",),
}


def _fingerprint(cfg: RFTConfig, step: str) -> dict[str, Any]:
    keys = [k for s in STEPS[: STEPS.index(step) + 1] for k in _STEP_KEYS[s]]
    return {k: to_dict(getattr(cfg, k)) for k in keys}


class StepMarker:
    """`<dir>/step.json`: the config the step ran with, written first; `done` set when it finished.

    Shared with recipes/pipeline.py: any resumable step whose output lives in one directory.
    defaults: the config's default values. A key the recorded config lacks (a knob added to swe-rl
    after the step ran) counts as its default, so an upgrade does not strand a run: a new knob's
    default keeps the behaviour from before it existed.
    """

    def __init__(self, directory: Path, config: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        self.name, self.dir = directory.name, directory
        self.marker, self.config = directory / "step.json", config
        self.defaults = json.loads(json.dumps(defaults or {}))

    def record(self) -> dict[str, Any] | None:
        if not self.marker.exists():
            return None
        rec = json.loads(self.marker.read_text())
        old, new = _with_defaults(rec["config"], self.defaults), json.loads(json.dumps(self.config))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            raise RFTError(
                f"{self.dir} was made with different {', '.join(changed)} than this config "
                f"(e.g. {changed[0]}: {old.get(changed[0])!r} there, {new.get(changed[0])!r} now): "
                "choose another run_dir or delete that step's directory"
            )
        return rec

    def done(self) -> dict[str, Any] | None:
        rec = self.record()
        return rec if rec and rec.get("done") else None

    def start(self) -> None:
        if self.record() is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._write({"config": self.config, "done": False})

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        self._write({"config": self.config, "done": True, "summary": summary})
        return summary

    def _write(self, rec: dict[str, Any]) -> None:
        tmp = self.marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=2))
        tmp.replace(self.marker)


def _with_defaults(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`config` with the keys it lacks (at any depth) taken from `defaults`."""
    out = dict(config)
    for k, d in defaults.items():
        if k not in out:
            out[k] = d
        elif isinstance(out[k], dict) and isinstance(d, dict):
            out[k] = _with_defaults(out[k], d)
    return out


def _step(cfg: RFTConfig, name: str) -> StepMarker:
    return StepMarker(Path(cfg.run_dir) / name, _fingerprint(cfg, name), _fingerprint(RFTConfig(), name))


def _cache(cfg: RFTConfig) -> Path | None:
    return Path(cfg.cache_dir) if cfg.cache_dir else None


def _tokenizer(cfg: RFTConfig) -> Any:
    """The trained model's tokenizer: every token id of the run (sampled or rendered) is in it."""
    return _load_tokenizer(cfg.model, cfg.cache_dir)


@functools.lru_cache(maxsize=2)
def _load_tokenizer(model: str, cache: str) -> Any:
    from transformers import AutoTokenizer

    from swe_rl.policy.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(model, Path(cache) if cache else None))


def _training_tasks(cfg: RFTConfig, tasks: Sequence[Task]) -> list[Task]:
    known = {t.instance_id for t in tasks}
    if cfg.demonstration_task and cfg.demonstration_task not in known:
        raise RFTError(f"demonstration_task {cfg.demonstration_task!r} is not in {cfg.tasks}")
    unknown = sorted(set(cfg.instances) - known)
    if unknown:
        raise RFTError(f"instances: unknown instance id(s) {', '.join(unknown)} in {cfg.tasks}")
    chosen = [t for t in tasks if (t.instance_id in cfg.instances if cfg.instances else t.instance_id != cfg.demonstration_task)]
    chosen = chosen[: cfg.limit] if cfg.limit else chosen
    if not chosen:
        raise RFTError(f"no training tasks left in {cfg.tasks} (instances={list(cfg.instances)}, limit={cfg.limit})")
    return chosen


# ---- step 0: the one-shot demonstration ---------------------------------------------------------

def make_demonstration(cfg: RFTConfig, tasks: Sequence[Task]) -> Path | None:
    """`<run>/demonstration/demonstration.txt`: `demonstration_policy` replayed on `demonstration_task` through the tools."""
    from swe_rl.agent.demonstration import render_demonstration
    from swe_rl.recipes.rollout import make_policy, run_rollouts
    from swe_rl.rollouts.store import read_trajectories
    from swe_rl.sandbox.environments import require_prepared

    if cfg.agent.demonstration_file:  # a demonstration written elsewhere, used as it is
        if not Path(cfg.agent.demonstration_file).is_file():
            raise RFTError(f"agent.demonstration_file: {cfg.agent.demonstration_file} is not a file")
        return Path(cfg.agent.demonstration_file)
    if not cfg.demonstration_task:
        return None
    step = _step(cfg, "demonstration")
    out = step.dir / "demonstration.txt"
    if step.done():
        return out
    step.start()
    task = next((t for t in tasks if t.instance_id == cfg.demonstration_task), None)
    if task is None:
        raise RFTError(f"demonstration_task {cfg.demonstration_task!r} is not in {cfg.tasks}")
    require_prepared([task], _cache(cfg))
    try:
        policy = make_policy(cfg.demonstration_policy, [task], tokenizer=_tokenizer(cfg), window=cfg.agent.window)
    except ValueError as e:  # scripted:explore on a task it cannot solve from its context
        raise RFTError(f"demonstration task {task.instance_id}: {cfg.demonstration_policy} cannot replay it ({e})") from e
    # The scripted turns must not be cut by the small model's budgets: only the text is kept (a script
    # repeats its last action, submit, so the turn limit only has to be above its length).
    agent = replace(cfg.agent, demonstration_file="", max_turns=max(cfg.agent.max_turns, 64),
                    max_new_tokens=max(cfg.agent.max_new_tokens, 4096), context_length=max(cfg.agent.context_length, 65536))
    traj_file = step.dir / "trajectory.jsonl"
    traj_file.unlink(missing_ok=True)  # a killed earlier attempt: a scripted episode is cheap to redo
    run_rollouts([task], policy, agent, traj_file, samples=1, batch=1, seed=cfg.seed, cache=_cache(cfg), quiet=True)
    (traj,) = read_trajectories(traj_file)
    if traj.grade is None or not traj.grade.resolved:
        reason = traj.grade.reason if traj.grade else traj.error or traj.exit_reason
        raise RFTError(f"demonstration task {task.instance_id}: {cfg.demonstration_policy} did not resolve it ({reason})")
    out.write_text(render_demonstration(traj.messages) + "\n")
    step.finish({"task": task.instance_id, "turns": traj.num_turns, "chars": len(out.read_text())})
    return out


# ---- step 1: collect ----------------------------------------------------------------------------

def collect(cfg: RFTConfig, tasks: Sequence[Task], demonstration: Path | None) -> Path:
    """G episodes per training task with the demonstration in the prompt -> `<run>/collect/trajectories.jsonl`."""
    from swe_rl.recipes.rollout import make_policy, run_rollouts
    from swe_rl.sandbox.environments import require_prepared

    step = _step(cfg, "collect")
    out = step.dir / "trajectories.jsonl"
    if step.done():
        return out
    step.start()
    train = _training_tasks(cfg, tasks)
    require_prepared(train, _cache(cfg))
    agent = replace(cfg.agent, demonstration_file=str(demonstration) if demonstration else "")
    # A scripted sampler writes its trajectories in the trained model's tokens (checked again in build).
    policy = make_policy(cfg.collect_model or cfg.model, train, device=cfg.device, cache=_cache(cfg), tokenizer=_tokenizer(cfg),
                         window=cfg.agent.window)
    run = run_rollouts(train, policy, agent, out, samples=cfg.samples, batch=cfg.batch, seed=cfg.seed,
                       resume=True, cache=_cache(cfg))
    (step.dir / "metrics.json").write_text(json.dumps(run.metrics, indent=2))
    step.finish({"tasks": len(train), "trajectories": len(_read(out)), "dropped_tasks": sorted(run.dropped_tasks)})
    return out


def _read(path: Path) -> list[Trajectory]:
    from swe_rl.rollouts.store import read_trajectories

    return read_trajectories(path)


# ---- step 2: filter (pure) ----------------------------------------------------------------------

def filter_trajectories(
    trajectories: Sequence[Trajectory], drop_exit_reasons: Sequence[str] = ("turn_limit", "context_limit")
) -> tuple[list[Trajectory], dict[str, Any]]:
    """(kept, funnel). Kept = resolved, not ended at a limit, and not in a group dropped for an infra failure."""
    from swe_rl.rollouts.engine import is_infra_failure
    from swe_rl.training.sft_data import rejected_edit

    infra = {t.instance_id for t in trajectories if is_infra_failure(t)}
    per_task: dict[str, dict[str, int]] = {}
    kept = []
    for t in trajectories:
        row = per_task.setdefault(t.instance_id, {"sampled": 0, "resolved": 0, "kept": 0})
        row["sampled"] += 1
        resolved = t.instance_id not in infra and t.grade is not None and t.grade.resolved
        row["resolved"] += resolved
        if resolved and t.exit_reason not in drop_exit_reasons:
            row["kept"] += 1
            kept.append(t)
    resolved_total = sum(r["resolved"] for r in per_task.values())
    covered = sum(1 for r in per_task.values() if r["kept"])
    funnel = {
        "sampled": len(trajectories),
        "infra_dropped_tasks": sorted(infra),
        "resolved": resolved_total,
        "dropped_at_limit": resolved_total - len(kept),
        "kept": len(kept),
        "kept_format_error_turns": sum(1 for t in kept for turn in t.turns if turn.format_error),  # masked in build
        "kept_rejected_edit_turns": sum(1 for t in kept for turn in t.turns if rejected_edit(turn)),  # masked if asked
        "tasks": len(per_task),
        "tasks_with_kept": covered,
        "coverage": covered / len(per_task) if per_task else 0.0,
        "per_task": per_task,
    }
    return kept, funnel


def funnel_table(funnel: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows (task, sampled, resolved, kept) with a total row last: the same rows go to the console and to markdown."""
    rows = [(tid, str(r["sampled"]), str(r["resolved"]), str(r["kept"])) for tid, r in sorted(funnel["per_task"].items())]
    rows.append(("total", str(funnel["sampled"]), str(funnel["resolved"]), str(funnel["kept"])))
    return rows


def _write_funnel(funnel: dict[str, Any], out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    head = ("task", "sampled", "resolved", "kept")
    rows = funnel_table(funnel)
    note = (f"kept {funnel['kept']} of {funnel['sampled']} sampled ({funnel['resolved']} resolved, "
            f"{funnel['dropped_at_limit']} of those ended at a limit); tasks with a kept trajectory: "
            f"{funnel['tasks_with_kept']}/{funnel['tasks']}; SFT examples: {funnel.get('examples', 0)}")
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    (out_dir / "funnel.md").write_text("# RFT funnel\n\n" + "\n".join(md) + f"\n\n{note}\n")
    (out_dir / "funnel.json").write_text(json.dumps(funnel, indent=2))
    table = Table(title="RFT funnel")
    for h in head:
        table.add_column(h, justify="left" if h == "task" else "right")
    for r in rows:
        table.add_row(*r)
    console = Console()
    console.print(table)
    console.print(note)


# ---- step 3: build ------------------------------------------------------------------------------

def build(cfg: RFTConfig, trajectories_file: Path, demonstration: Path | None) -> Path:
    """Filter, then SFT examples without the demonstration -> `<run>/build/examples.jsonl` (+ funnel.json/.md)."""
    from swe_rl.rollouts.store import episode_order
    from swe_rl.training.sft_data import build_examples, demonstration_block, without_demonstration, write_examples

    step = _step(cfg, "build")
    out = step.dir / "examples.jsonl"
    if step.done():
        return out
    step.start()
    sampled = sorted(_read(trajectories_file), key=episode_order)  # the SFT data and model: not thread timing
    kept, funnel = filter_trajectories(sampled, cfg.drop_exit_reasons)
    prompt_messages = without_demonstration(demonstration_block(demonstration.read_text())) if demonstration else None
    # The stored prefix is checked against the trained model's chat template: a sampler with another
    # tokenizer would make the kept token ids meaningless to the trainer.
    examples = build_examples(kept, _tokenizer(cfg), prompt_messages=prompt_messages, check_prefix=True,
                              mask_rejected_edits=cfg.mask_rejected_edits)
    funnel["examples"] = len(examples)
    funnel["examples_longer_than_max_seq_len"] = sum(1 for e in examples if len(e) > cfg.sft.max_seq_len)
    funnel["loss_tokens"] = sum(e.num_loss_tokens for e in examples)
    write_examples(out, examples)
    _write_funnel(funnel, step.dir)
    step.finish({k: v for k, v in funnel.items() if k != "per_task"})
    return out


# ---- step 4: train ------------------------------------------------------------------------------

def train(cfg: RFTConfig, examples_file: Path) -> Path:
    """`training/sft.py` on the examples -> `<run>/train/model` (a transformers/vLLM directory) + metrics."""
    from swe_rl.policy.models import resolve_model
    from swe_rl.training.sft import load_for_training, train_sft
    from swe_rl.training.sft_data import read_examples

    step = _step(cfg, "train")
    model_dir = step.dir / "model"
    if step.done():
        return model_dir
    examples = read_examples(examples_file)
    if not examples:
        raise RFTError(
            f"{examples_file} holds no examples: no sampled trajectory was kept (see {examples_file.parent / 'funnel.md'}). "
            "Sample more (samples=), raise the agent's budgets, or use a stronger collect_model "
            "(collect_model=scripted:gold shows the mechanics)"
        )
    step.start()
    device = None if cfg.device == "auto" else cfg.device
    model, tokenizer = load_for_training(resolve_model(cfg.model, _cache(cfg)), cfg.sft, device)
    summary = train_sft(model, examples, cfg.sft, step.dir, tokenizer=tokenizer, resume=True)
    return Path(step.finish(summary)["model_dir"])


# ---- the whole recipe ---------------------------------------------------------------------------

def run_rft(cfg: RFTConfig, steps: Sequence[str] = STEPS) -> dict[str, Any]:
    """Run `steps` (each also runs the ones before it that have no output yet); returns the artifacts' paths."""
    from swe_rl.tasks.loaders import load_tasks

    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise RFTError(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(STEPS)}")
    last = max(STEPS.index(s) for s in steps)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tasks = load_tasks(cfg.tasks)
    artifacts: dict[str, Any] = {"run_dir": str(run_dir)}
    demo = make_demonstration(cfg, tasks)
    artifacts["demonstration"] = str(demo) if demo else None
    if last >= 1:
        artifacts["trajectories"] = str(trajectories := collect(cfg, tasks, demo))
    if last >= 2:
        artifacts["examples"] = str(examples := build(cfg, trajectories, demo))
        artifacts["funnel"] = str(examples.parent / "funnel.json")
    if last >= 3:
        artifacts["model"] = str(train(cfg, examples))
        artifacts["metrics"] = str(run_dir / "train" / "metrics.jsonl")
    (run_dir / "artifacts.json").write_text(json.dumps(artifacts, indent=2))
    return artifacts


def rft_cli(config: Path | None, overrides: Sequence[str] = (), step: str | None = None) -> int:
    from swe_rl.config import ConfigError
    from swe_rl.sandbox.environments import EnvironmentNotPrepared

    try:
        cfg = load_config(RFTConfig, config, overrides)
        artifacts = run_rft(cfg, (step,) if step else STEPS)
    except (ConfigError, RFTError, EnvironmentNotPrepared) as e:
        raise SystemExit(f"swe-rl rft: {e}") from None
    for name, path in artifacts.items():
        print(f"{name}: {path}")
    return 0
