"""The RL recipe: its pure pieces by hand, the sampling guard, and one real iteration on bundled tasks + resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from swe_rl.config import ConfigError, load_config
from swe_rl.recipes.rl import RLConfig, Stage, collect_experience, enter_stage, group_advantages, mixed_groups, run_rl, score, select_for_training
from swe_rl.rollouts.store import iter_trajectories
from swe_rl.types import Grade, Trajectory, Turn

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _traj(iid: str, i: int, *, resolved: bool, turns: int, exit_reason: str = "submitted") -> Trajectory:
    return Trajectory(
        instance_id=iid, sample_index=i, messages=[], token_ids=[1, 2, 3], loss_mask=[0, 1, 1], sampler_logprobs=[0.0, -1.0, -1.0],
        turns=[Turn(response="r", command="c", observation="o") for _ in range(turns)], exit_reason=exit_reason, patch="",
        grade=Grade(iid, "resolved" if resolved else "unresolved", True),
    )


def test_reward_advantages_and_selection_follow_the_algorithm_box():
    cfg = RLConfig(samples=2, penalty_start=10)
    stage = Stage(max_turns=40)
    trajs = [
        _traj("a", 0, resolved=True, turns=5),
        _traj("a", 1, resolved=False, turns=40, exit_reason="turn_limit"),
        _traj("b", 0, resolved=False, turns=3),
        _traj("b", 1, resolved=False, turns=3),
    ]
    score(trajs, cfg, stage)
    assert [t.reward for t in trajs] == [1.0, -1.0, 0.0, 0.0]
    assert trajs[1].reward_parts == {"resolved": 0.0, "length": -1.0}
    adv = group_advantages(trajs, "group_norm")
    # group a: mean 0, std (Bessel) sqrt(2) -> +-1/sqrt(2); group b: all equal -> 0
    assert adv[0] == pytest.approx(2**-0.5, rel=1e-5) and adv[1] == pytest.approx(-(2**-0.5), rel=1e-5)
    chosen = select_for_training(trajs, adv)
    assert [(t.instance_id, t.sample_index) for t, _ in chosen] == [("a", 0), ("a", 1)]
    assert chosen[1][0].exit_reason == "turn_limit"  # kept: masking turn-limit episodes taught looping


def test_a_context_limit_exit_takes_the_turn_limits_length_penalty():
    trajs = [_traj("a", 0, resolved=False, turns=4, exit_reason="context_limit"),
             _traj("a", 1, resolved=False, turns=6, exit_reason="turn_limit"), _traj("a", 2, resolved=False, turns=4)]
    score(trajs, RLConfig(samples=3, penalty_start=5), Stage(max_turns=6))
    assert [t.reward for t in trajs] == [-1.0, -1.0, 0.0]  # 4 turns then out of context: not a way around the penalty
    score(trajs, RLConfig(samples=3, penalty_start=5, context_limit_penalty=False), Stage(max_turns=6))
    assert [t.reward for t in trajs] == [0.0, -1.0, 0.0]  # the paper's term counts the turns taken


def test_mixed_groups_are_those_with_more_than_one_reward():
    trajs = [_traj("b", 0, resolved=True, turns=3), _traj("a", 0, resolved=True, turns=3), _traj("a", 1, resolved=False, turns=3),
             _traj("c", 0, resolved=False, turns=3), _traj("c", 1, resolved=False, turns=40, exit_reason="turn_limit"),
             _traj("b", 1, resolved=True, turns=3)]
    score(trajs, RLConfig(samples=2, penalty_start=10), Stage(max_turns=40))
    assert mixed_groups(trajs) == ["a", "c"]  # b: one reward; c: the length penalty alone differs


def test_problem_order_is_checked():
    with pytest.raises(ValueError, match="problem_order"):
        RLConfig(problem_order="least-drawn")


@pytest.mark.slow
def test_dynamic_sampling_draws_new_problems_while_groups_have_one_reward(bundled_tasks, tmp_path):
    """scripted:gold resolves every episode: no group has mixed rewards, so each draw takes new problems
    until max_draws or the pool runs out; every drawn episode counts in the solve rates, none is trained."""
    from swe_rl.recipes.rollout import make_policy

    tasks = {t.instance_id: t for t in bundled_tasks}
    policy = make_policy("scripted:gold", bundled_tasks)
    stage = Stage(max_turns=8, context_length=8192, problems_per_iteration=1)
    for max_draws, draws in ((2, 2), (len(tasks) + 2, len(tasks))):
        cfg = RLConfig(samples=2, max_draws=max_draws, stages=(stage,), command_timeout_s=30, penalty_start=6)
        out = tmp_path / str(max_draws)
        state = {"iteration": 0, "stage": 0, "pool": sorted(tasks), "solves": {}, "policy_version": 0}
        exp = collect_experience(cfg, state, tasks, policy, out, None, True)
        names = {p.name for p in (out / "iter_00000").glob("traj*.jsonl")}
        assert names == {"traj.jsonl"} | {f"traj_draw{d}.jsonl" for d in range(1, draws)}
        assert exp.problems == draws and len(exp.trajs) == 2 * draws and exp.kept == 0 and exp.examples == []
        assert all(t.reward == 1.0 for t in exp.trajs)
        on_disk = [t for p in sorted((out / "iter_00000").glob("traj*.jsonl")) for t in iter_trajectories(p)]
        assert len(on_disk) == 2 * draws and all(t.reward == 1.0 and t.reward_parts["resolved"] == 1.0 for t in on_disk)
        assert len(state["solves"]) == draws and all(rec == [2, 2] for rec in state["solves"].values())


def test_stages_follow_the_iteration_count_and_refilter_the_pool_once():
    cfg = RLConfig(stages=(Stage(iterations=2, max_turns=40), Stage(iterations=1, max_turns=80)))
    state = {"iteration": 1, "stage": 0, "pool": ["easy", "mid", "never"], "solves": {"easy": [2, 2], "mid": [1, 2], "never": [0, 2]}}
    assert enter_stage(state, cfg) == (0, cfg.stages[0]) and state["pool"] == ["easy", "mid", "never"]
    state["iteration"] = 2
    assert enter_stage(state, cfg) == (1, cfg.stages[1]) and state["pool"] == ["mid"]
    state["solves"]["mid"] = [2, 2]
    assert enter_stage(state, cfg)[0] == 1 and state["pool"] == ["mid"]  # not re-filtered within a stage
    state["iteration"] = 3
    with pytest.raises(IndexError, match="past the last stage"):
        enter_stage(state, cfg)
    empty = {"iteration": 2, "stage": 0, "pool": ["easy"], "solves": {"easy": [2, 2]}}
    with pytest.raises(RuntimeError, match="pool is empty"):
        enter_stage(empty, cfg)


@pytest.mark.parametrize("override", ["temperature=0.7", "top_p=0.95", "top_k=50", "min_p=0.05", "repetition_penalty=1.1"])
def test_biased_sampling_is_an_error_at_start_up(tmp_path, override):
    cfg = load_config(RLConfig, CONFIGS / "rl.yaml", [override, f"out={tmp_path}"])
    with pytest.raises(ValueError, match="RL sampling must be unbiased"):
        run_rl(cfg)
    assert not any(tmp_path.iterdir())  # nothing was started


@pytest.mark.parametrize("override, field", [("executor=slurm", "executor"), ("sandbox=podman", "sandbox"),
                                             ("grade_timeout_s=0", "grade_timeout_s"), ("command_timeout_s=-1", "command_timeout_s")])
def test_rollout_config_typos_are_errors(override, field):
    with pytest.raises(ValueError, match=f"{field} must be"):
        load_config(RLConfig, CONFIGS / "rl.yaml", [override])


def test_configs_load_with_the_papers_table():
    paper = load_config(RLConfig, CONFIGS / "rl_paper.yaml")
    s1, s2 = paper.stages
    assert (s1.context_length, s1.max_turns, s1.problems_per_iteration, s1.batch_size, s1.clip) == (65536, 40, 300, 128, (0.2, 0.3))
    assert (s2.context_length, s2.max_turns, s2.problems_per_iteration, s2.batch_size, s2.clip, s2.yarn_factor) == (131072, 80, 100, 256, (0.2, 0.26), 4.0)
    assert (paper.samples, paper.lr, paper.weight_decay, paper.grad_clip) == (10, 1e-6, 0.1, 1.0)
    demo = load_config(RLConfig, CONFIGS / "rl.yaml")
    assert demo.stages[0].max_turns > demo.penalty_start
    # The curriculum as two runs: stage 2 starts from stage 1's run (weights + re-filtered pool).
    [one] = load_config(RLConfig, CONFIGS / "rl_stage1.yaml").stages
    two_cfg = load_config(RLConfig, CONFIGS / "rl_stage2.yaml")
    assert (one, two_cfg.stages[0]) == (s1, s2)
    assert two_cfg.init_from == str(load_config(RLConfig, CONFIGS / "rl_stage1.yaml").out)
    assert (two_cfg.drop_solved_at, two_cfg.drop_never_solved) == (paper.drop_solved_at, True) and paper.drop_solved_at == pytest.approx(2 / 3)
    cpu1, cpu2 = load_config(RLConfig, CONFIGS / "rl_stage1_cpu.yaml"), load_config(RLConfig, CONFIGS / "rl_stage2_cpu.yaml")
    assert cpu2.init_from == str(cpu1.out) and cpu2.stages[0].yarn_factor > 1 and cpu2.stages[0].max_turns > cpu1.stages[0].max_turns
    for path in sorted(CONFIGS.glob("rl*.yaml")):  # every RL config loads and passes the sampling guard
        cfg = load_config(RLConfig, path)
        for stage in cfg.stages:
            cfg.agent(stage).sampling().assert_unbiased()
            assert stage.max_turns > cfg.penalty_start, path
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(RLConfig, CONFIGS / "rl.yaml", ["kl_coef=0.1"])


# Every metric issue 7 asks for, by the key the recipe logs it under (exit reasons: keys exit_<reason>).
ISSUE7_METRICS = (
    "loss", "clip_frac_low", "clip_frac_high", "entropy", "grad_norm", "approx_kl", "logprob_gap_mean", "logprob_gap_max",
    "reward_mean", "reward_resolved_mean", "reward_length_mean", "resolve_rate", "zero_adv_frac", "turns_mean", "tokens_mean",
    "action_tokens_mean", "rollout_s", "generation_s", "reward_s", "train_s", "recompute_logprobs_s", "sync_s",
)


def _varied_turns_overrides(tasks, out, *, iterations: int, samples: int = 4, threshold: int = 13, lr: float = 1e-3) -> list[str]:
    """Overrides under which the tiny model's episodes last 1 or 2 turns, so rewards differ inside a group.

    The tiny model ends a reply with ~5% probability per token (policy/models.py). The stage's context
    budget is measured on the real prompt: a first reply longer than `threshold` tokens leaves no room
    for a second turn (context_limit after 1 turn, reward 0), a shorter one gets a second turn and then
    hits the limit (reward -0.5 with penalty_start 1, max_turns 3). P(reply <= 13 tokens) ~ 0.5. The tiny
    model never submits, so these varied context-limit exits are its only varied rewards: they are scored
    by turns taken (context_limit_penalty false, the paper's term).
    """
    from transformers import AutoTokenizer

    from swe_rl.agent.loop import Episode
    from swe_rl.policy.models import resolve_model
    from swe_rl.sandbox.environments import task_sandbox
    from swe_rl.types import Completion

    max_new, prompts = 32, CONFIGS / "prompts_compact"  # the compact prompts: ~550 tokens instead of ~860
    agent = RLConfig(max_new_tokens=max_new, prompts_dir=str(prompts)).agent(Stage(max_turns=3, context_length=100_000))
    tok = AutoTokenizer.from_pretrained(resolve_model("tiny"))
    reply = tok("no command here")["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    budget = 0
    for task in tasks:
        with task_sandbox(task, None) as sandbox:
            episode = Episode(task, sandbox, tok, agent)
            episode.step(Completion(tuple(reply), (0.0,) * len(reply), "stop", "no command here"))  # a format error
            # prompt + reply + observation + next header, with a reply of `threshold` tokens
            budget = max(budget, len(episode.prompt_ids()) - len(reply) + threshold + max_new)
    ids = json.dumps([t.instance_id for t in tasks])
    return [
        "model=tiny", f"out={out}", f"samples={samples}", f"max_new_tokens={max_new}", "penalty_start=1", "context_limit_penalty=false",
        "tensorboard=false",
        f"lr={lr}", "command_timeout_s=30", f"instances={ids}", f"prompts_dir={prompts}",
        f"stages=[{{iterations: {iterations}, max_turns: 3, context_length: {budget}, problems_per_iteration: {len(tasks)}, batch_size: 1}}]",
    ]


def _weights(run_dir: Path):
    from safetensors.torch import load_file

    from swe_rl.training.checkpoint import latest_checkpoint

    return load_file(latest_checkpoint(run_dir) / "model.safetensors")


@pytest.mark.slow
def test_end_to_end_iterations_update_the_weights_log_every_metric_and_resume(bundled_tasks, tmp_path):
    """One bundled task, G=4, the tiny model: rollouts, grading, reward, a NON-EMPTY update, checkpoint; then --resume."""
    from safetensors.torch import load_file

    from swe_rl.cli import main
    from swe_rl.policy.models import resolve_model
    from swe_rl.training.checkpoint import latest_checkpoint, load_checkpoint
    from swe_rl.training.metrics_log import read_metrics

    overrides = _varied_turns_overrides(bundled_tasks[:1], tmp_path, iterations=2)
    cfg = load_config(RLConfig, CONFIGS / "rl.yaml", overrides + ["stop_after=1"])
    summary = run_rl(cfg)
    assert summary["iterations"] == 1 and summary["policy_version"] == 1
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "step_00000001"
    state = load_checkpoint(ckpt).extra
    assert state["iteration"] == 1 and state["policy_version"] == 1
    assert sum(a for _, a in state["solves"].values()) == 4  # 1 task x G=4 recorded for the curriculum
    [row] = read_metrics(tmp_path / "metrics.jsonl")
    assert row["iteration"] == 1 and row["trajectories"] == 4
    missing = [k for k in ISSUE7_METRICS if k not in row]
    assert not missing and any(k.startswith("exit_") for k in row), missing
    # The update was real: rewards differed inside the group, samples were kept, the loss moved the weights.
    assert row["trained_trajectories"] > 0 and row["zero_adv_frac"] < 1 and row["optimizer_steps"] == row["trained_trajectories"]
    assert row["loss"] != 0 and row["grad_norm"] > 0 and row["approx_kl"] >= 0 and row["logprob_gap_max"] < 1e-4
    assert row["reward_length_mean"] < 0 and 1 < row["turns_mean"] < 2
    steps = read_metrics(tmp_path / "train_steps.jsonl")
    assert len(steps) == row["optimizer_steps"] and all(s["grad_norm"] > 0 for s in steps)
    # batch_size 1 -> later steps see a policy the earlier ones moved (lr 1e-3): some tokens get clipped.
    assert sum(s["clip_frac_low"] + s["clip_frac_high"] for s in steps) > 0
    before = load_file(resolve_model("tiny") / "model.safetensors")
    after = _weights(tmp_path)
    assert max(float((after[k] - before[k]).abs().max()) for k in before) > 1e-4
    first_iter = (tmp_path / "iter_00000" / "traj.jsonl").read_bytes()
    assert {json.loads(line)["policy_version"] for line in first_iter.splitlines()} == {0}

    # The CLI with --resume: iteration 2 runs, iteration 1 is not redone.
    assert main(["rl", "--config", str(CONFIGS / "rl.yaml"), "--resume", *sum((["--set", o] for o in overrides), [])]) == 0
    assert (tmp_path / "iter_00000" / "traj.jsonl").read_bytes() == first_iter
    assert [r["iteration"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]
    second = [json.loads(line) for line in (tmp_path / "iter_00001" / "traj.jsonl").read_text().splitlines()]
    assert {t["policy_version"] for t in second} == {1}  # sampled by the updated policy
    assert latest_checkpoint(tmp_path).name == "step_00000002"
    assert load_checkpoint(latest_checkpoint(tmp_path)).extra["policy_version"] == 2


def test_sync_policy_pushes_weights_to_a_separate_sampler_and_bumps_its_version():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swe_rl.policy.hf import HFPolicy
    from swe_rl.policy.models import resolve_model
    from swe_rl.recipes.rl import sync_policy

    path = resolve_model("tiny")
    trainer = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    policy = HFPolicy(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tokenizer=AutoTokenizer.from_pretrained(path))
    with torch.no_grad():
        trainer.lm_head.weight.add_(1.0)
    assert not torch.equal(policy.model.lm_head.weight, trainer.lm_head.weight)
    sync_policy(policy, trainer)
    assert torch.equal(policy.model.lm_head.weight, trainer.lm_head.weight) and policy.version == 1
    shared = HFPolicy(trainer, tokenizer=policy.tokenizer)
    sync_policy(shared, trainer)  # the same object: nothing to copy, the version still counts the update
    assert shared.version == 1


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~2 min on 2 idle cores; far longer on a shared, loaded machine
def test_sigkill_mid_iteration_then_resume_ends_with_the_weights_of_an_uninterrupted_run(bundled_tasks, tmp_path):
    """`swe-rl rl` killed with SIGKILL during iteration 2's rollouts, resumed to the end, against the same
    seed run without interruption (both as processes, at once). Tolerance: 1e-6 absolute on every float32
    weight (in practice they are bit-identical); the updates are non-empty, so the weights did move."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    from swe_rl.policy.models import resolve_model
    from swe_rl.training.metrics_log import read_metrics

    task = bundled_tasks[0]

    def command(out: Path) -> list[str]:
        args = [sys.executable, "-m", "swe_rl.cli", "rl", "--config", str(CONFIGS / "rl.yaml")]
        # lr 1e-4: small enough that the policy keeps ending turns at varied lengths (1e-3 taught it long
        # first replies within one iteration, and then every group was all-equal).
        for o in _varied_turns_overrides([task], out, iterations=3, lr=1e-4):
            args += ["--set", o]
        return args

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = subprocess.Popen(command(whole), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    second = killed / "iter_00001" / "traj.jsonl"
    deadline = time.monotonic() + 600
    while not (second.exists() and second.read_text().count("\n") >= 1) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "iter_00001" / "rollouts.done").exists()  # killed mid-rollout: the iteration is redone
    resumed = subprocess.run(command(killed) + ["--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert reference.wait() == 0, reference.stderr.read()[-3000:]

    rows = {name: read_metrics(d / "metrics.jsonl") for name, d in (("whole", whole), ("killed", killed))}
    assert [r["iteration"] for r in rows["killed"]] == [1, 2, 3]
    for key in ("reward_mean", "trained_trajectories", "loss", "grad_norm"):
        assert [r[key] for r in rows["killed"]] == pytest.approx([r[key] for r in rows["whole"]], abs=1e-6), key
    # Non-empty updates after the kill, so the restored optimizer state and sampling seeds mattered.
    assert any(r["trained_trajectories"] for r in rows["whole"][1:]), [r["trained_trajectories"] for r in rows["whole"]]
    for it in range(3):
        lines = (killed / f"iter_{it:05d}" / "traj.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["sample_index"] for line in lines) == [0, 1, 2, 3], it  # every episode once
    a, b = _weights(whole), _weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0, msg=lambda m, k=k: f"{k}: {m}")
    initial = load_file(resolve_model("tiny") / "model.safetensors")
    assert max(float((a[k] - initial[k]).abs().max()) for k in initial) > 5e-5  # well above the tolerance


def test_stage_two_starts_from_stage_ones_checkpoint_and_refiltered_pool(tmp_path):
    from transformers import AutoModelForCausalLM

    from swe_rl.policy.models import resolve_model
    from swe_rl.recipes.rl import start_from
    from swe_rl.training.checkpoint import save_checkpoint

    tasks = {i: None for i in ("easy", "mid", "never", "unseen")}
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        start_from(RLConfig(init_from=str(tmp_path / "stage1")), tasks, None)
    state = {"iteration": 3, "pool": ["easy", "mid", "never", "gone"], "solves": {"easy": [3, 3], "mid": [1, 3], "never": [0, 3]}, "policy_version": 3, "stage": 0}
    ckpt = save_checkpoint(tmp_path / "stage1", AutoModelForCausalLM.from_pretrained(resolve_model("tiny")), None, None, None, 3, extra=state)
    path, start = start_from(RLConfig(init_from=str(tmp_path / "stage1")), tasks, None)
    assert path == ckpt and (path / "config.json").is_file()
    # "gone" is not in this config's tasks; "unseen" was never in stage 1's pool: neither enters.
    assert start["pool"] == ["mid"] and start["policy_version"] == 3 and start["iteration"] == 0 and start["solves"] == state["solves"]
    _, keep_never = start_from(RLConfig(init_from=str(tmp_path / "stage1"), drop_never_solved=False), tasks, None)
    assert keep_never["pool"] == ["mid", "never"]


def test_update_metrics_are_null_not_zero_without_an_update():
    from swe_rl.recipes.rl import UPDATE_METRICS, update_metrics

    empty = update_metrics([], {})
    assert set(UPDATE_METRICS) <= set(empty) and all(empty[k] is None for k in UPDATE_METRICS) and empty["optimizer_steps"] == 0
    steps = [{"loss": 1.0, "clip_frac_low": 0.0, "clip_frac_high": 0.5, "approx_kl": 0.1, "grad_norm": 2.0},
             {"loss": 3.0, "clip_frac_low": 0.2, "clip_frac_high": 0.0, "approx_kl": 0.3, "grad_norm": 4.0}]
    row = update_metrics(steps, {"entropy": 1.5, "logprob_gap_mean": 0.0, "logprob_gap_max": 0.0})
    assert (row["loss"], row["clip_frac_low"], row["clip_frac_high"], row["grad_norm"], row["entropy"], row["optimizer_steps"]) == (2.0, 0.1, 0.25, 3.0, 1.5, 2)
    assert row["approx_kl"] == pytest.approx(0.2)


def test_wandb_enabled_without_the_package_is_an_error_at_start_up(tmp_path):
    try:
        import wandb  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("wandb is installed here: the error path cannot be reached")
    from swe_rl.recipes.rl import wandb_run

    assert wandb_run(RLConfig(), tmp_path) is None  # off by default
    with pytest.raises(RuntimeError, match="wandb.*not installed"):
        run_rl(RLConfig(wandb=True, out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # nothing was started


def test_the_scaffold_of_every_stage_takes_the_window_and_prompts():
    cfg = RLConfig(window=40, prompts_dir="configs/prompts_compact", stages=(Stage(max_turns=5, context_length=2560),))
    agent = cfg.agent(cfg.stages[0])
    assert (agent.window, agent.prompts_dir, agent.max_turns, agent.context_length) == (40, "configs/prompts_compact", 5, 2560)
    assert RLConfig().agent(Stage()).prompts_dir == ""  # the default templates (configs/prompts)
