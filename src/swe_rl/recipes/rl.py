"""`swe-rl rl`: multi-turn DAPO with a staged curriculum (PAPER.md section 5), read top to bottom.

Per iteration: pick problems from the pool -> G rollouts each (recipes.rollout.run_rollouts) ->
reward (rewards.reward, "paper") -> group advantages (training.advantages) -> drop zero-advantage
samples, keep turn-limit ones -> one pass in K optimizer steps (training.rl_step) -> new weights
to the policy (version + 1) -> atomic checkpoint (training.checkpoint) + metrics. Between stages
the pool is re-filtered from the recorded solve rates. `--resume` continues the last checkpoint and
ends with the same weights as an uninterrupted run: problem choice, sampling seeds and update order
are functions of (seed, iteration) and the checkpointed solve counts, and a killed iteration's
unfinished rollouts are redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from swe_rl.agent.loop import AgentConfig
from swe_rl.policy.vllm import VLLMConfig
from swe_rl.training.curriculum import PROBLEM_ORDERS, pick_problems, record_solves, refilter_pool
from swe_rl.training.distributed import DataParallel, full_state_dict
from swe_rl.training.rl_step import LOSS_AGGS
from swe_rl.types import Trajectory

@dataclass(frozen=True)
class Stage:
    """One row of PAPER.md's curriculum table."""

    iterations: int = 1
    max_turns: int = 40  # T_max: the turn limit, and where the length penalty reaches -1
    context_length: int = 65536  # prompt + generation budget of an episode; also the packed row length
    problems_per_iteration: int = 300
    batch_size: int = 128  # trajectories per optimizer step
    clip: tuple[float, float] = (0.2, 0.3)  # (eps_low, eps_high)
    yarn_factor: float = 1.0  # YaRN rope scaling (stage 2: 4.0); 1.0 = the model's own positions

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.max_turns < 1 or self.problems_per_iteration < 1 or self.batch_size < 1:
            raise ValueError(f"stage: iterations >= 0, max_turns, problems_per_iteration, batch_size >= 1: {self}")
        if len(self.clip) != 2 or not (0 <= self.clip[0] < 1 and self.clip[1] >= 0):
            raise ValueError(f"stage: clip must be (eps_low in [0, 1), eps_high >= 0), got {self.clip}")


@dataclass(frozen=True)
class RLConfig:
    """Every knob of the RL recipe; defaults are the paper's where it made a choice."""

    model: str = "tiny"  # bundled name (tiny, smollm2-135m) or a Hugging Face directory (the RFT checkpoint)
    tasks: str = "bundled"  # tasks file or 'bundled': the initial pool
    instances: tuple[str, ...] = ()  # restrict the pool to these ids (empty = all)
    out: Path = Path("runs/rl")
    # A previous RL run (stage 1) to continue as a new run (stage 2): its last checkpoint's weights,
    # and its pool re-filtered from its recorded solve rates; `model` is then only a label.
    init_from: str = ""
    samples: int = 10  # G: rollouts per problem
    seed: int = 0
    device: str = "auto"
    # hf: the trainer's own model samples (one set of weights); vllm: an in-process vLLM engine that
    # gets the trainer's weights after every update (no disk) and sleeps while the trainer runs.
    sampler: str = "hf"
    vllm: VLLMConfig = field(default_factory=VLLMConfig)  # the engine, when sampler is vllm
    stages: tuple[Stage, ...] = (Stage(),)
    # reward and advantage (PAPER.md section 5, steps 2-4)
    reward: str = "paper"
    penalty_start: int = 10  # the length penalty starts at this many steps
    # A context-limit exit takes the turn limit's full length penalty; false = the paper's term (turns taken
    # only), under which running out of context early escapes the penalty
    context_limit_penalty: bool = True
    advantage: str = "group_norm"
    # DAPO's dynamic sampling: draw up to this many sets of problems_per_iteration problems in an iteration,
    # until that many groups have mixed rewards (groups of one reward train nothing); 1 = one draw (the paper)
    max_draws: int = 1
    # Which problems a draw takes. "least_drawn": the ones with the fewest episodes so far, ties in a seeded
    # random order, so the iterations cover the pool before any problem comes back (a data loader's epoch);
    # "random": each draw independent of earlier iterations (the default until 2026-11-27), which on a pool of
    # 19 trained one problem in all 3 iterations of a run, 3 distinct ones in all (the learning proof's RL).
    problem_order: str = "least_drawn"
    # optimizer (step 7): AdamW, constant lr
    loss: str = "dapo"
    # "token": a mean over the step's action tokens (the paper); "sequence": each trajectory's token mean,
    # averaged over trajectories, so failures that run longer do not outweigh successes (rl_step.UpdateConfig)
    loss_agg: str = "token"
    lr: float = 1e-6
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    micro_batch_rows: int = 1  # packed rows per forward/backward
    tis_cap: float = 0.0  # truncated importance sampling cap C; 0 = off (trainer and sampler share weights here)
    # Recompute the old log-probs before each update to report the trainer-vs-sampler log-prob gap (one
    # forward pass over the batch). Off saves that pass where the gap is known to be 0 (an HF sampler
    # sharing the trainer's weights in float32); TIS recomputes them anyway.
    measure_logprob_gap: bool = True
    # sampling (step 1): must stay neutral, checked at start-up
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 512  # per assistant turn
    command_timeout_s: float = 60.0
    grade_timeout_s: float = 600.0  # wall clock for the tests that grade a patch (AgentConfig.grade_timeout_s)
    window: int = 50  # lines shown by the viewer tools (AgentConfig.window)
    prompts_dir: str = ""  # prompt templates (AgentConfig.prompts_dir); "" = configs/prompts
    rollout_batch: int = 8  # episodes generating together
    executor: str = "thread"  # where episodes run: "thread" (this machine) or "ray" (docs/ray.md)
    ray_address: str = ""  # an existing Ray cluster for executor "ray"; "" = start a local one
    sandbox: str = "local"  # "local" (bubblewrap) or "docker" (each task's image), for episodes and grading
    # curriculum re-filter between stages
    drop_solved_at: float = 2 / 3  # drop tasks solved at least this often ...
    drop_never_solved: bool = True  # ... and tasks never solved
    # bookkeeping
    keep_last: int = 2  # checkpoints kept
    stop_after: int = 0  # stop after this many iterations in this invocation (0 = run to the end)
    # On --resume, redo a killed iteration's unfinished rollouts from the start, so the run ends with the
    # same weights as an uninterrupted one; false keeps its finished episodes (cheaper, not bit-identical).
    exact_resume: bool = True
    # torchrun (docs/scaling.md): ranks > 0 wait in a collective while rank 0 runs an iteration's rollouts
    dist_timeout_s: float = 4 * 3600.0
    activation_checkpointing: bool = False  # recompute each decoder layer in backward (long contexts)
    tensorboard: bool = True
    wandb: bool = False  # also log to Weights & Biases (needs the `wandb` package; WANDB_MODE etc. from the environment)
    wandb_project: str = "swe-rl"

    def __post_init__(self) -> None:
        if self.max_draws < 1:
            raise ValueError(f"max_draws must be >= 1, got {self.max_draws}")
        if self.problem_order not in PROBLEM_ORDERS:
            raise ValueError(f"problem_order must be one of {PROBLEM_ORDERS}, got {self.problem_order!r}")
        if self.loss_agg not in LOSS_AGGS:
            raise ValueError(f"loss_agg must be one of {LOSS_AGGS}, got {self.loss_agg!r}")
        if self.samples < 2:
            raise ValueError(f"samples (G) must be >= 2 for group advantages, got {self.samples}")
        if not self.stages:
            raise ValueError("stages: at least one stage is needed")
        if self.sampler not in ("hf", "vllm"):
            raise ValueError(f"sampler must be 'hf' or 'vllm', got {self.sampler!r}")
        if self.executor not in ("thread", "ray"):
            raise ValueError(f"executor must be 'thread' or 'ray', got {self.executor!r}")
        if self.sandbox not in ("local", "docker"):
            raise ValueError(f"sandbox must be 'local' or 'docker', got {self.sandbox!r}")
        for stage in self.stages:
            self.agent(stage)  # AgentConfig refuses a bad turn limit, token budget, timeout or temperature

    def agent(self, stage: Stage) -> AgentConfig:
        return AgentConfig(
            max_turns=stage.max_turns, context_length=stage.context_length, max_new_tokens=self.max_new_tokens,
            command_timeout_s=self.command_timeout_s, grade_timeout_s=self.grade_timeout_s, window=self.window, prompts_dir=self.prompts_dir, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k, min_p=self.min_p, repetition_penalty=self.repetition_penalty,
        )


# ---------------------------------------------------------------- pure pieces of the algorithm box


def score(trajs: Sequence[Trajectory], cfg: RLConfig, stage: Stage) -> None:
    """Set each trajectory's reward and reward parts (in place)."""
    from swe_rl.rewards.reward import compute_reward

    for t in trajs:
        # Running out of context is a truncation like the turn limit: counting only the turns taken would score
        # an episode that filled its context in 4 turns (0) above one that used all 6 of them (-1).
        truncated = cfg.context_limit_penalty and t.exit_reason == "context_limit"
        steps = stage.max_turns if truncated else t.num_turns
        kwargs: dict[str, Any] = {"resolved": t.grade is not None and t.grade.resolved, "num_steps": steps, "max_steps": stage.max_turns}
        if cfg.reward == "paper":
            kwargs["penalty_start"] = cfg.penalty_start
        t.reward, t.reward_parts = compute_reward(cfg.reward, **kwargs)


def group_advantages(trajs: Sequence[Trajectory], name: str) -> list[float]:
    """Advantages normalised within each problem's group of G samples, in `trajs` order."""
    from swe_rl.training.advantages import compute_advantages

    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(trajs):
        groups[t.instance_id].append(i)
    adv = [0.0] * len(trajs)
    for idx in groups.values():
        for i, a in zip(idx, compute_advantages(name, [trajs[i].reward for i in idx])):
            adv[i] = a
    return adv


def select_for_training(trajs: Sequence[Trajectory], advantages: Sequence[float]) -> list[tuple[Trajectory, float]]:
    """Drop zero-advantage samples; turn-limit trajectories stay (masking them taught the model to loop)."""
    from swe_rl.training.advantages import nonzero

    return [(t, a) for t, a, keep in zip(trajs, advantages, nonzero(advantages)) if keep]


def mixed_groups(trajs: Sequence[Trajectory]) -> list[str]:
    """The problems whose scored group holds more than one reward (the only groups with an advantage), in first-seen order."""
    rewards: dict[str, set[float]] = {}
    for t in trajs:
        rewards.setdefault(t.instance_id, set()).add(t.reward)
    return [iid for iid, r in rewards.items() if len(r) > 1]


def rollout_metrics(trajs: Sequence[Trajectory], kept: int, dropped_groups: int) -> dict[str, Any]:
    n = max(len(trajs), 1)
    m: dict[str, Any] = {
        "trajectories": len(trajs),
        "reward_mean": sum(t.reward for t in trajs) / n,
        "resolve_rate": sum(bool(t.grade and t.grade.resolved) for t in trajs) / n,
        "zero_adv_frac": 1 - kept / n if trajs else 0.0,
        "trained_trajectories": kept,
        "dropped_groups": dropped_groups,
        "turns_mean": sum(t.num_turns for t in trajs) / n,
        "tokens_mean": sum(len(t.token_ids) for t in trajs) / n,
        "action_tokens_mean": sum(sum(t.loss_mask) for t in trajs) / n,
        "mixed_groups": len(mixed_groups(trajs)),
    }
    for part in sorted({p for t in trajs for p in t.reward_parts}):
        m[f"reward_{part}_mean"] = sum(t.reward_parts.get(part, 0.0) for t in trajs) / n
    for reason, count in Counter(t.exit_reason for t in trajs).items():
        m[f"exit_{reason}"] = count / n
    return m


def sync_policy(policy: Any, model: torch.nn.Module, dp: DataParallel | None = None) -> None:
    """Give the sampler the trainer's new weights; its version goes up either way.

    Under FSDP every rank calls it (gathering the full weights is a collective); only rank 0 has a
    sampler, the others pass None.
    """
    if dp is not None and dp.enabled:
        weights = full_state_dict(model, dp)
        if policy is not None:
            policy.update_weights(weights)
        return
    policy.update_weights(None if getattr(policy, "model", None) is model else model.state_dict())


# ---------------------------------------------------------------- the recipe


def enter_stage(state: dict[str, Any], cfg: RLConfig) -> tuple[int, Stage]:
    """(index, stage) of iteration `state["iteration"]`; on entering a new stage, re-filter `state["pool"]`."""
    left = state["iteration"]
    for s, stage in enumerate(cfg.stages):
        if left < stage.iterations:
            break
        left -= stage.iterations
    else:
        raise IndexError(f"iteration {state['iteration']} is past the last stage")
    if s != state["stage"]:  # keep the tasks still worth learning from
        state["pool"] = refilter_pool(state["pool"], state["solves"], solved_at=cfg.drop_solved_at, drop_never=cfg.drop_never_solved)
        state["stage"] = s
        if not state["pool"]:
            raise RuntimeError(f"stage {s + 1}: the re-filtered pool is empty (every task solved >= {cfg.drop_solved_at:.2f} of the time, or never)")
    return s, stage


UPDATE_METRICS = ("loss", "clip_frac_low", "clip_frac_high", "approx_kl", "grad_norm", "entropy", "logprob_gap_mean", "logprob_gap_max")


def update_metrics(steps: Sequence[dict[str, float]], batch: dict[str, Any]) -> dict[str, Any]:
    """The iteration's update metrics: step means of the per-step ones, and the batch-level ones.

    Every key of UPDATE_METRICS is present; None (not 0) when nothing was trained, so an empty
    update is never mistaken for a zero loss.
    """
    row: dict[str, Any] = {k: None for k in UPDATE_METRICS}
    row.update(batch)
    for k in ("loss", "clip_frac_low", "clip_frac_high", "approx_kl", "grad_norm"):
        if steps:
            row[k] = sum(m[k] for m in steps) / len(steps)
    row["optimizer_steps"] = len(steps)
    return row


def start_from(cfg: RLConfig, tasks: dict[str, Any], cache: Path | None) -> tuple[Path, dict[str, Any]]:
    """(model directory, initial state): `cfg.model` and the whole pool, or `cfg.init_from`'s last checkpoint
    and its pool re-filtered from its solve rates (the stage-2 input of PAPER.md's curriculum)."""
    from swe_rl.policy.models import resolve_model
    from swe_rl.training.checkpoint import latest_checkpoint, load_checkpoint

    state: dict[str, Any] = {"iteration": 0, "pool": sorted(tasks), "solves": {}, "policy_version": 0, "stage": 0}
    if not cfg.init_from:
        return resolve_model(cfg.model, cache), state
    ckpt = latest_checkpoint(cfg.init_from)
    if ckpt is None:
        raise FileNotFoundError(f"init_from {cfg.init_from}: no complete checkpoint under {cfg.init_from}/checkpoints")
    prev = load_checkpoint(ckpt, restore_rng=False).extra
    pool = refilter_pool([i for i in prev["pool"] if i in tasks], prev["solves"], solved_at=cfg.drop_solved_at, drop_never=cfg.drop_never_solved)
    if not pool:
        raise RuntimeError(f"init_from {ckpt}: the re-filtered pool is empty (of {len(prev['pool'])} tasks, each solved >= {cfg.drop_solved_at:.2f} of the time, or never)")
    state.update(pool=pool, solves=prev["solves"], policy_version=prev["policy_version"])
    return ckpt, state


def wandb_module(cfg: RLConfig):
    """The `wandb` module when `cfg.wandb`, else None; enabled but not installed is an error (checked at start-up)."""
    if not cfg.wandb:
        return None
    try:
        import wandb
    except ImportError:
        raise RuntimeError("wandb: true, but the `wandb` package is not installed (pip install wandb, or set wandb: false)") from None
    return wandb


def wandb_run(cfg: RLConfig, out: Path):
    """A W&B run when `cfg.wandb`, resumed under an id fixed by the run directory (so --resume continues it), else None."""
    wandb = wandb_module(cfg)
    if wandb is None:
        return None
    import hashlib

    from swe_rl.config import to_dict

    run_id = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
    return wandb.init(project=cfg.wandb_project, name=out.name, id=run_id, resume="allow", dir=str(out), config=to_dict(cfg))


def load_pool(cfg: RLConfig, cache: Path | None) -> dict[str, Any]:
    """The run's tasks by id (`cfg.tasks`, restricted to `cfg.instances`), prepared for local sandboxes."""
    from swe_rl.sandbox.environments import require_prepared
    from swe_rl.tasks.loaders import load_tasks

    tasks = {t.instance_id: t for t in load_tasks(cfg.tasks)}
    if cfg.instances:
        unknown = sorted(set(cfg.instances) - set(tasks))
        if unknown:
            raise ValueError(f"instances: unknown id(s) in {cfg.tasks}: {', '.join(unknown)}")
        tasks = {i: tasks[i] for i in cfg.instances}
    if cfg.sandbox == "local":  # docker images hold their environment: nothing to prepare
        require_prepared(list(tasks.values()), cache)
    return tasks


def make_sampler(cfg: RLConfig, path: Path, model: torch.nn.Module, tokenizer: Any, dp: DataParallel) -> Any:
    """Rank 0's sampler. A single process samples with the trainer's own model (one set of weights, the
    log-prob gap stays ~0); under FSDP the trainer holds a shard, so an unsharded float32 copy samples and
    `sync_policy` refreshes it from the gathered weights; vLLM keeps its own bf16 copy either way."""
    from swe_rl.policy.hf import HFPolicy

    if cfg.sampler == "vllm":  # synced after every update without disk (docs/scaling.md)
        from swe_rl.policy.vllm import VLLMPolicy

        return VLLMPolicy(path, cfg.vllm, name=cfg.model)
    if not dp.enabled:
        return HFPolicy(model, tokenizer=tokenizer, name=cfg.model)
    from transformers import AutoModelForCausalLM

    copy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").to(dp.device)
    return HFPolicy(copy, tokenizer=tokenizer, name=cfg.model)


@dataclass
class Experience:
    """One iteration's rollouts on rank 0, scored, and the RL examples every rank trains on."""

    iteration: int
    stage_index: int
    problems: int
    trajs: list[Trajectory]
    kept: int
    dropped_groups: int
    examples: list[Any]
    timings: dict[str, float]


def collect_experience(cfg: RLConfig, state: dict[str, Any], tasks: dict[str, Any], policy: Any, out: Path,
                       cache: Path | None, quiet: bool | None) -> Experience:
    """Steps 1-4 of the algorithm box for iteration `state["iteration"]`: rollouts, reward, advantages, kept samples."""
    from swe_rl.recipes.rollout import run_rollouts
    from swe_rl.rollouts.store import episode_order, iter_trajectories, write_trajectories
    from swe_rl.training.rl_step import RLExample
    from swe_rl.training.rope import apply_yarn

    it = state["iteration"]
    s, stage = enter_stage(state, cfg)
    if getattr(policy, "model", None) is not None:  # an HF sampler (in a single process: the trainer itself)
        apply_yarn(policy.model, stage.yarn_factor)
    timings: dict[str, float] = {}

    # 1. pick problems, G rollouts each; with dynamic sampling, more problems until enough groups have mixed rewards
    t0 = time.perf_counter()
    trajs: list[Trajectory] = []
    drawn: set[str] = set()
    dropped, generation_s = 0, 0.0
    solves = state["solves"] if cfg.problem_order == "least_drawn" else None  # this iteration's episodes are added after its draws
    for draw in range(cfg.max_draws):
        ids = pick_problems([i for i in state["pool"] if i not in drawn], stage.problems_per_iteration, cfg.seed, it, draw, solves)
        if not ids:  # the pool is used up
            break
        drawn.update(ids)
        suffix = "" if draw == 0 else f"_draw{draw}"
        traj_file, finished = out / f"iter_{it:05d}" / f"traj{suffix}.jsonl", out / f"iter_{it:05d}" / f"rollouts{suffix}.done"
        if traj_file.exists() and not finished.exists() and cfg.exact_resume:
            # A killed draw: its remaining episodes would be sampled in other batches than in an uninterrupted
            # run (each turn's seed is its own, but padding can move the logits' last bits), so redo them all;
            # a finished file is reused as it is.
            traj_file.unlink()
        seed = cfg.seed * 100_003 + it
        run = run_rollouts([tasks[i] for i in ids], policy, cfg.agent(stage), traj_file, samples=cfg.samples, batch=cfg.rollout_batch,
                           seed=seed if draw == 0 else seed * 1_009 + draw, resume=True, cache=cache, quiet=quiet,
                           executor=cfg.executor, ray_address=cfg.ray_address or None, sandbox=cfg.sandbox)
        finished.touch()
        drawn_trajs = sorted(iter_trajectories(traj_file), key=episode_order)
        score(drawn_trajs, cfg, stage)
        write_trajectories(traj_file, drawn_trajs)  # episodes are written before they are scored: keep the rewards
        # Infrastructure failures drop the whole group: never a reward of 0 for a broken sandbox.
        new = [t for t in drawn_trajs if t.instance_id not in run.dropped_tasks]
        trajs += new
        dropped += len(run.dropped_tasks)
        generation_s += run.metrics.get("episode_generation_s", 0.0)
        if len(mixed_groups(trajs)) >= stage.problems_per_iteration:
            break
    timings["rollout_s"] = time.perf_counter() - t0
    if hasattr(policy, "sleep"):  # a vLLM engine frees the GPU for the update; the sync wakes it
        policy.sleep()
    timings["generation_s"] = generation_s

    # 2-4. reward (scored above), group advantages, drop zero-advantage samples
    t0 = time.perf_counter()
    record_solves(state["solves"], trajs)
    # A full batch is problems_per_iteration mixed groups: extra ones from the last draw are not trained on.
    train_on = set(mixed_groups(trajs)[: stage.problems_per_iteration])
    chosen = [(t, a) for t, a in select_for_training(trajs, group_advantages(trajs, cfg.advantage)) if t.instance_id in train_on]
    examples = [RLExample.from_trajectory(t, a) for t, a in chosen]
    random.Random(f"{cfg.seed}:order:{it}").shuffle(examples)
    timings["reward_s"] = time.perf_counter() - t0
    return Experience(it, s, len(drawn), trajs, len(chosen), dropped, examples, timings)


def run_rl(cfg: RLConfig, *, resume: bool = False, cache: Path | None = None, quiet: bool | None = True) -> dict[str, Any]:
    """The recipe in this process, or on every rank of a torchrun group (docs/scaling.md): rank 0 alone runs
    the rollouts and writes everything; every rank trains its share of the update (FSDP)."""
    from swe_rl.training.checkpoint import latest_checkpoint
    from swe_rl.training.distributed import close_distributed, init_distributed

    for stage in cfg.stages:  # the sampling guard: an error before anything is loaded
        cfg.agent(stage).sampling().assert_unbiased()
    if cfg.loss != "dapo":
        raise ValueError(f"loss {cfg.loss!r}: the packed trainer needs a token-level loss (dapo)")
    wandb_module(cfg)
    if not resume and latest_checkpoint(cfg.out) is not None:
        raise FileExistsError(f"{cfg.out} holds checkpoints: pass --resume to continue it, or choose another out")
    dp = init_distributed("gloo" if cfg.device == "cpu" else "auto", timeout_s=cfg.dist_timeout_s)
    try:
        return _run_rl(cfg, dp, resume=resume, cache=cache, quiet=quiet)
    finally:
        if dp.enabled:
            close_distributed()


def _run_rl(cfg: RLConfig, dp: DataParallel, *, resume: bool, cache: Path | None, quiet: bool | None) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swe_rl.config import to_dict
    from swe_rl.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from swe_rl.training.distributed import shard_model
    from swe_rl.training.metrics_log import MetricsLogger, read_metrics
    from swe_rl.training.rl_step import UpdateConfig, make_rl_optimizer, rl_update
    from swe_rl.training.rope import apply_yarn

    out, main = Path(cfg.out), dp.is_main
    tasks: dict[str, Any] = {}
    state: dict[str, Any] = {}
    path = None
    if main:  # only rank 0 samples: the other ranks need neither the tasks nor the run's state
        tasks = load_pool(cfg, cache)
        path, state = start_from(cfg, tasks, cache)
    path = dp.broadcast(path)

    if dp.enabled:
        device: Any = dp.device
    else:
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    # float32 master weights; on CUDA the forward runs under bf16 autocast (rl_step). Under torchrun the
    # model is sharded over the ranks (shard_model is a no-op in a single process).
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").to(device)
    model = shard_model(model, dp, activation_checkpointing=cfg.activation_checkpointing)
    tokenizer = AutoTokenizer.from_pretrained(path)
    optimizer = make_rl_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, eps=cfg.adam_eps)
    policy = make_sampler(cfg, path, model, tokenizer, dp) if main else None
    if policy is not None:
        policy.version = state["policy_version"]

    ckpt = dp.broadcast(latest_checkpoint(out) if resume and main else None)
    if ckpt is not None:
        loaded = load_checkpoint(ckpt, model, optimizer, dp=dp).extra
        if cfg.sampler == "vllm" or dp.enabled:  # a separate sampler loaded the run's first weights: give it the resumed ones
            sync_policy(policy, model, dp)
        if main:
            state = loaded
            policy.version = state["policy_version"]
            # Metric rows of an iteration that crashed before its checkpoint are written again below.
            for name in ("metrics.jsonl", "train_steps.jsonl"):
                if (out / name).exists():
                    rows = [r for r in read_metrics(out / name) if r["iteration"] <= state["iteration"]]
                    (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    total = sum(s.iterations for s in cfg.stages)
    done_now = 0
    with contextlib.ExitStack() as stack:
        log = step_log = wandb = None
        if main:  # only rank 0 writes
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=1))
            wandb = wandb_run(cfg, out)
            log = stack.enter_context(MetricsLogger(out, tensorboard=cfg.tensorboard))
            step_log = stack.enter_context(MetricsLogger(out, tensorboard=False, filename="train_steps.jsonl"))
        while True:
            exp = None
            if main and state["iteration"] < total and not (cfg.stop_after and done_now >= cfg.stop_after):
                exp = collect_experience(cfg, state, tasks, policy, out, cache, quiet)
            # Rank 0 tells the others what to train on (None: the run is over); a no-op in a single process.
            job = dp.broadcast(None if exp is None else (exp.iteration, exp.stage_index, exp.examples))
            if job is None:
                break
            it, s, examples = job
            stage = cfg.stages[s]
            apply_yarn(model, stage.yarn_factor)  # the trainer's positions follow the sampler's

            # 5-7. one pass over the batch in K optimizer steps, each rank on its share of every step
            t0 = time.perf_counter()
            ucfg = UpdateConfig(batch_size=stage.batch_size, max_seq_len=stage.context_length, eps_low=stage.clip[0], eps_high=stage.clip[1],
                                loss=cfg.loss, loss_agg=cfg.loss_agg, micro_batch_rows=cfg.micro_batch_rows, grad_clip=cfg.grad_clip, tis_cap=cfg.tis_cap,
                                measure_gap=cfg.measure_logprob_gap)
            steps, batch_metrics = rl_update(model, optimizer, examples, ucfg, pad_id=tokenizer.pad_token_id or 0, dp=dp)
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sync_policy(policy, model, dp)
            sync_s = time.perf_counter() - t0

            # metrics, then the checkpoint that makes the iteration count as done
            if main:
                assert exp is not None and log is not None and step_log is not None
                row = {"iteration": it + 1, "stage": s + 1, "policy_version": policy.version, "pool_size": len(state["pool"]), "problems": exp.problems,
                       **rollout_metrics(exp.trajs, exp.kept, exp.dropped_groups), **update_metrics(steps, batch_metrics),
                       **exp.timings, "train_s": train_s, "sync_s": sync_s}
                for k, m in enumerate(steps):
                    step_log.log(it + 1, {"iteration": it + 1, "k": k, **m})
                log.log(it + 1, row)
                if wandb is not None:
                    wandb.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=it + 1)
                state.update(iteration=it + 1, policy_version=policy.version)
            save_checkpoint(out, model, tokenizer, optimizer, None, it + 1, extra=state, keep_last=cfg.keep_last, dp=dp)
            done_now += 1
        if wandb is not None:
            wandb.finish()
    summary = {"iterations": state["iteration"], "run_now": done_now, "policy_version": policy.version, "pool": state["pool"], "out": str(out)} if main else None
    return dp.broadcast(summary)


def rl_cli(config: str | None, overrides: Sequence[str] = (), *, resume: bool = False, cache: Path | None = None) -> int:
    from swe_rl.config import load_config

    cfg = load_config(RLConfig, config, overrides)
    summary = run_rl(cfg, resume=resume, cache=cache, quiet=None)
    if os.environ.get("RANK", "0") == "0":  # under torchrun: once
        print(json.dumps(summary, indent=1))
    return 0
