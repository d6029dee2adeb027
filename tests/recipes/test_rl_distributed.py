"""`swe-rl rl` under a real torchrun (2 gloo processes) against the same config in one process (`tiny` model).

Rank 0 alone samples (a separate unsharded copy of the weights, synced after every update), every
rank trains its share of each optimizer step (2 trajectories per step: one per rank). Tolerance:
1e-6 absolute on every float32 weight (measured: 0.0, bit-identical: with one trajectory per rank
and step the reduce-scatter adds the same two partial gradients one process accumulates).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.recipes.test_rl import CONFIGS, _varied_turns_overrides

TOL = 1e-6


def _command(launcher: list[str], overrides: list[str], *extra: str) -> list[str]:
    args = [*launcher, "rl", "--config", str(CONFIGS / "rl.yaml")]
    for o in overrides:
        args += ["--set", o]
    return args + list(extra)


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "checkpoints" / f"step_{step:08d}" / "model.safetensors")


def _assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], what: str) -> None:
    assert got.keys() == want.keys(), what
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=TOL, rtol=0, msg=lambda m, k=k: f"{what} {k}: {m}")


def _trajectories(run: Path, it: int) -> list[dict]:
    rows = [json.loads(line) for line in (run / f"iter_{it:05d}" / "traj.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda t: t["sample_index"])


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~35 s on 2 idle cores; far longer on a shared, loaded machine
def test_torchrun_two_ranks_equal_one_process_and_resume_across_world_sizes(bundled_tasks, tmp_path):
    """One process runs 2 iterations; torchrun (2 ranks) runs iteration 1, stops, and resumes for iteration 2.

    The torchrun resume reads the ONE-process run's step-1 checkpoint (written by 1 rank, optimizer keyed by
    integer id) in place of its own, so it checks 1 -> 2 ranks; the 2-rank step-1 checkpoint (optimizer keyed
    by name, from the gathered full state dict) is loaded into one process and compared: 2 -> 1 rank.
    """
    from transformers import AutoModelForCausalLM

    from swe_rl.config import load_config
    from swe_rl.policy.models import resolve_model
    from swe_rl.recipes.rl import RLConfig
    from swe_rl.training.checkpoint import load_checkpoint
    from swe_rl.training.metrics_log import read_metrics
    from swe_rl.training.rl_step import make_rl_optimizer

    single, dist = tmp_path / "single", tmp_path / "dist"

    def overrides(out: Path) -> list[str]:
        # lr 1e-4 keeps the episodes' lengths varied in iteration 2 too (so both updates are non-empty);
        # 2 trajectories per optimizer step, so every step is split over both ranks.
        ov = _varied_turns_overrides(bundled_tasks[:1], out, iterations=2, lr=1e-4)
        stages = [o for o in ov if o.startswith("stages=")]
        assert len(stages) == 1 and "batch_size: 1}" in stages[0]
        return [o.replace("batch_size: 1}", "batch_size: 2}") for o in ov]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = [sys.executable, "-m", "swe_rl.cli"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "swe_rl.cli"]
    reference = subprocess.Popen(_command(one, overrides(single)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    first = subprocess.run(_command(torchrun, overrides(dist), "--set", "stop_after=1"), capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]
    assert first.stdout.count('"run_now": 1') == 1  # the summary is printed by rank 0 only

    # iteration 1: the same episodes (rank 0 sampled with the same seeds and weights), the same update
    assert [t["token_ids"] for t in _trajectories(dist, 0)] == [t["token_ids"] for t in _trajectories(single, 0)]
    _assert_same_weights(_weights(dist, 1), _weights(single, 1), "step 1")
    path = resolve_model("tiny")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    cfg = load_config(RLConfig, CONFIGS / "rl.yaml", overrides(single))
    states = []
    for run in (dist, single):  # 2 -> 1 rank: the named full optimizer state loads into one process
        opt = make_rl_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, eps=cfg.adam_eps)
        load_checkpoint(run / "checkpoints" / "step_00000001", model, opt, restore_rng=False)
        states.append(opt.state_dict())
    got, want = states
    assert got["param_groups"] == want["param_groups"] and got["state"].keys() == want["state"].keys()
    for i in want["state"]:
        for k in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(got["state"][i][k], want["state"][i][k], atol=TOL, rtol=0)
    assert float(want["state"][0]["exp_avg_sq"].abs().max()) > 0  # the state is not a fresh optimizer's

    # 1 -> 2 ranks: the torchrun resume continues from the one-process step-1 checkpoint
    shutil.rmtree(dist / "checkpoints" / "step_00000001")
    shutil.copytree(single / "checkpoints" / "step_00000001", dist / "checkpoints" / "step_00000001")
    resumed = subprocess.run(_command(torchrun, overrides(dist), "--resume"), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    rows = {run.name: read_metrics(run / "metrics.jsonl") for run in (single, dist)}
    assert [r["iteration"] for r in rows["dist"]] == [1, 2]  # rank 0 alone logs; iteration 1 not redone
    assert all(r["trained_trajectories"] > 0 for r in rows["single"]), [r["trained_trajectories"] for r in rows["single"]]
    for key in ("reward_mean", "trained_trajectories", "optimizer_steps", "loss", "clip_frac_high", "logprob_gap_max"):
        assert [r[key] for r in rows["dist"]] == pytest.approx([r[key] for r in rows["single"]], abs=1e-6), key
    assert [r["grad_norm"] for r in rows["dist"]] == pytest.approx([r["grad_norm"] for r in rows["single"]], rel=1e-6)
    # iteration 2 was sampled by rank 0's copy refreshed from the resumed, gathered weights
    second = _trajectories(dist, 1)
    assert {t["policy_version"] for t in second} == {1}
    assert [t["token_ids"] for t in second] == [t["token_ids"] for t in _trajectories(single, 1)]
    flat = [[x for t in trajs for x in t["sampler_logprobs"]] for trajs in (second, _trajectories(single, 1))]
    assert flat[0] == pytest.approx(flat[1], abs=1e-6)
    final = _weights(single, 2)
    _assert_same_weights(_weights(dist, 2), final, "step 2")
    assert load_checkpoint(dist / "checkpoints" / "step_00000002", restore_rng=False).extra["policy_version"] == 2
    initial = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()
    assert max(float((final[k] - initial[k]).abs().max()) for k in final) > 100 * TOL  # the updates moved the weights
