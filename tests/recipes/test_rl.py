"""The RL recipe: its pure pieces by hand, the sampling guard, and one real iteration on bundled tasks + resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swe_rl.config import ConfigError, load_config
from swe_rl.recipes.rl import RLConfig, Stage, enter_stage, group_advantages, pick_problems, refilter_pool, run_rl, score, select_for_training
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


def test_pool_refilter_and_problem_choice():
    solves = {"easy": [3, 3], "edge": [2, 3], "mid": [1, 3], "never": [0, 3]}
    pool = ["easy", "edge", "mid", "never", "unseen"]
    assert refilter_pool(pool, solves, solved_at=2 / 3, drop_never=True) == ["mid", "unseen"]
    assert refilter_pool(pool, solves, solved_at=2 / 3, drop_never=False) == ["mid", "never", "unseen"]
    first = pick_problems(pool, 3, seed=0, iteration=4)
    assert first == pick_problems(pool, 3, seed=0, iteration=4) and len(set(first)) == 3
    assert pick_problems(pool, 10, seed=0, iteration=0) == sorted(pool)


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


def test_configs_load_with_the_papers_table():
    paper = load_config(RLConfig, CONFIGS / "rl_paper.yaml")
    s1, s2 = paper.stages
    assert (s1.context_length, s1.max_turns, s1.problems_per_iteration, s1.batch_size, s1.clip) == (65536, 40, 300, 128, (0.2, 0.3))
    assert (s2.context_length, s2.max_turns, s2.problems_per_iteration, s2.batch_size, s2.clip, s2.yarn_factor) == (131072, 80, 100, 256, (0.2, 0.26), 4.0)
    assert (paper.samples, paper.lr, paper.weight_decay, paper.grad_clip) == (10, 1e-6, 0.1, 1.0)
    demo = load_config(RLConfig, CONFIGS / "rl.yaml")
    assert demo.stages[0].max_turns > demo.penalty_start
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(RLConfig, CONFIGS / "rl.yaml", ["kl_coef=0.1"])


@pytest.mark.slow
def test_one_iteration_end_to_end_then_resume_continues(bundled_tasks, tmp_path):
    """Two bundled tasks, G=2, the tiny model: rollouts, grading, reward, update, checkpoint; then --resume."""
    from swe_rl.cli import main
    from swe_rl.training.checkpoint import latest_checkpoint, load_checkpoint
    from swe_rl.training.metrics_log import read_metrics

    ids = [t.instance_id for t in bundled_tasks[:2]]
    overrides = [
        "model=tiny", f"out={tmp_path}", "samples=2", "max_new_tokens=16", "command_timeout_s=30", "penalty_start=1",
        f"instances={json.dumps(ids)}", "tensorboard=false",
        "stages=[{iterations: 2, max_turns: 2, context_length: 4096, problems_per_iteration: 2, batch_size: 2}]",
    ]
    cfg = load_config(RLConfig, CONFIGS / "rl.yaml", overrides + ["stop_after=1"])
    summary = run_rl(cfg)
    assert summary["iterations"] == 1 and summary["policy_version"] == 1
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "step_00000001"
    state = load_checkpoint(ckpt).extra
    assert state["iteration"] == 1 and state["policy_version"] == 1
    assert sum(a for _, a in state["solves"].values()) == 4  # 2 tasks x G=2 recorded for the curriculum
    [row] = read_metrics(tmp_path / "metrics.jsonl")
    for key in ("reward_mean", "reward_resolved_mean", "reward_length_mean", "resolve_rate", "zero_adv_frac", "turns_mean",
                "tokens_mean", "action_tokens_mean", "rollout_s", "train_s", "policy_version", "optimizer_steps"):
        assert key in row, key
    assert any(k.startswith("exit_") for k in row)
    if row["trained_trajectories"]:  # the random tiny model rarely gives a group unequal rewards
        assert {"loss", "grad_norm", "clip_frac_low", "clip_frac_high", "approx_kl", "logprob_gap_mean", "logprob_gap_max"} <= set(row)
    assert row["iteration"] == 1 and row["trajectories"] == 4
    first_iter = (tmp_path / "iter_00000" / "traj.jsonl").read_bytes()
    assert len(first_iter.splitlines()) == 4
    trajs = [json.loads(line) for line in first_iter.splitlines()]
    assert {t["policy_version"] for t in trajs} == {0}

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
def test_sigkill_mid_run_then_resume_finishes_without_duplicates(bundled_tasks, tmp_path):
    """A `swe-rl rl` process killed with SIGKILL during iteration 2 is resumed to the end: every episode once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from swe_rl.training.checkpoint import latest_checkpoint, load_checkpoint
    from swe_rl.training.metrics_log import read_metrics

    ids = [t.instance_id for t in bundled_tasks[:2]]
    args = [sys.executable, "-m", "swe_rl.cli", "rl", "--config", str(CONFIGS / "rl.yaml")]
    for o in ("model=tiny", f"out={tmp_path}", "samples=2", "max_new_tokens=16", "penalty_start=1", "tensorboard=false",
              f"instances={json.dumps(ids)}", "stages=[{iterations: 3, max_turns: 2, context_length: 4096, problems_per_iteration: 2, batch_size: 2}]"):
        args += ["--set", o]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    second = tmp_path / "iter_00001" / "traj.jsonl"
    deadline = time.monotonic() + 300
    while not (second.exists() and second.read_text().count("\n") >= 1) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(tmp_path)
    assert killed_at is not None and load_checkpoint(killed_at).step < 3
    assert subprocess.run(args + ["--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).returncode == 0
    assert load_checkpoint(latest_checkpoint(tmp_path)).extra["iteration"] == 3
    assert [r["iteration"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]
    for it in range(3):
        lines = (tmp_path / f"iter_{it:05d}" / "traj.jsonl").read_text().splitlines()
        keys = [(json.loads(line)["instance_id"], json.loads(line)["sample_index"]) for line in lines]
        assert sorted(keys) == sorted((i, s) for i in ids for s in range(2)), it
