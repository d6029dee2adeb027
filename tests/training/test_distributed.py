"""FSDP over 2 gloo processes (a real torchrun) takes the same RL and SFT steps as one process (`tiny` model).

The optimizer is SGD: its update is linear in the gradient, so any gradient error shows up in the
weights one to one (AdamW's first steps are ~lr * sign(grad) and would hide a mis-scaled gradient).
Tolerance: 1e-6 absolute on every float32 weight. A per-rank token normalisation (the classic
bug) moves the weights by more than 100x that, which the test checks on the same batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from swe_rl.training.distributed import SINGLE, DataParallel, full_state_dict, micro_batch_plan
from swe_rl.training.rl_step import RLExample, UpdateConfig, accumulate_step, rl_update, tis_weights, trainer_logprobs
from swe_rl.training.sft import SFTConfig
from swe_rl.training.sft_data import SFTExample

TOL = 1e-6
LR = 0.5
# 3 optimizer steps of 3, 3 and 1 trajectories. Rows hold 48 tokens, one row per micro-batch:
# step 1 puts 40 on rank 0 (1 row) and 30 + 25 on rank 1 (2 rows), step 3 leaves rank 1 empty,
# so both idle paths (a missing micro-batch, a rank without tokens) run.
LENGTHS = [40, 30, 25, 20, 20, 20, 35]
ADVANTAGES = [1.0, -0.5, 2.0, -1.5, 0.7, -1.0, 1.2]
CFG = UpdateConfig(batch_size=3, max_seq_len=48, micro_batch_rows=1, grad_clip=1.0, tis_cap=1.2)  # TIS on: per-rank weights
SFT_CFG = SFTConfig(batch_size=3, max_seq_len=48, micro_batch_rows=1, grad_clip=1.0)


def _examples(model) -> list[RLExample]:
    """Random token ids; sampler log-probs = the model's own + noise, so ratios differ from 1 and some clip."""
    g = torch.Generator().manual_seed(0)
    raw = []
    for n, a in zip(LENGTHS, ADVANTAGES):
        ids = torch.randint(10, 5000, (n,), generator=g).tolist()
        raw.append(RLExample(ids, [0] * 8 + [1] * (n - 8), [0.0] * n, a))
    own = trainer_logprobs(model, raw, CFG.max_seq_len)
    return [RLExample(e.input_ids, e.loss_mask, (lp + 0.3 * torch.randn(len(lp), generator=g)).tolist(), e.advantage) for e, lp in zip(raw, own)]


def _per_rank_normalised_update(model, examples, world: int) -> None:
    """The bug the distributed step must not have: each rank divides by its own token count, FSDP averages."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    weights = tis_weights(examples, trainer_logprobs(model, examples, CFG.max_seq_len), CFG.tis_cap)
    for start in range(0, len(examples), CFG.batch_size):
        idx = list(range(start, min(start + CFG.batch_size, len(examples))))
        for r in range(world):
            share = [idx[k] for k in DataParallel(rank=r, world_size=world).split([len(examples[i]) for i in idx])]
            accumulate_step(model, [examples[i] for i in share], CFG, weights=[weights[i] for i in share])
        for p in model.parameters():
            p.grad /= world
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), CFG.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_split_balances_tokens_and_partitions_the_step():
    shares = [DataParallel(rank=r, world_size=2).split(LENGTHS[:3]) for r in range(2)]
    assert shares == [[0], [1, 2]]  # 40 vs 30 + 25
    three = [DataParallel(rank=r, world_size=3).split(LENGTHS) for r in range(3)]
    assert sorted(i for s in three for i in s) == list(range(len(LENGTHS)))
    assert SINGLE.split(LENGTHS) == list(range(len(LENGTHS)))
    assert DataParallel(rank=1, world_size=2).split([35]) == []


def test_single_process_plan_has_no_idle_micro_batches():
    assert micro_batch_plan([[0], [1], [2]], 2, SINGLE) == [[[0], [1]], [[2]]]
    assert micro_batch_plan([], 1, None) == []


def test_without_torchrun_it_is_the_single_process(monkeypatch):
    from swe_rl.training.distributed import init_distributed

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    dp = init_distributed("gloo")
    assert (dp.rank, dp.world_size, dp.enabled, dp.is_main) == (0, 1, False, True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="RANK is not set.*torchrun"):
        init_distributed("gloo")


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tiny_model, tmp_path):
    torch.manual_seed(0)
    model = tiny_model()
    examples = _examples(model)
    sft_examples = [SFTExample(tuple(e.input_ids), tuple(e.loss_mask)) for e in examples]
    torch.save({"examples": examples, "cfg": CFG, "lr": LR, "sft_examples": sft_examples, "sft_cfg": SFT_CFG}, tmp_path / "job.pt")
    worker = Path(__file__).with_name("dist_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(worker), str(tmp_path)],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=False)

    # the single-process reference on the same batch
    ref_model = tiny_model()
    ref_steps, ref_batch = rl_update(ref_model, torch.optim.SGD(ref_model.parameters(), lr=LR), examples, CFG)
    ref = full_state_dict(ref_model, SINGLE)
    assert ref is not None
    assert len(result["steps"]) == len(ref_steps) == 3
    for got, want in zip(result["steps"], ref_steps):
        assert got["action_tokens"] == want["action_tokens"] and got["trajectories"] == want["trajectories"]
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-6)
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-5)
        assert got["clip_frac_high"] == pytest.approx(want["clip_frac_high"], abs=1e-6)
    for k in ("logprob_gap_mean", "logprob_gap_max", "tis_weight_mean", "tis_capped_frac"):
        assert result["batch"][k] == pytest.approx(ref_batch[k], abs=1e-6), k
    assert 0 < ref_batch["tis_capped_frac"] < 1  # the cap bites on some tokens only
    assert max(s["grad_norm"] for s in ref_steps) > CFG.grad_clip  # clipping (the global norm over shards) ran

    changed = max(float((ref[k] - v).abs().max()) for k, v in model.state_dict().items())
    assert changed > 1e-3  # the steps really moved the weights
    for k, v in ref.items():
        torch.testing.assert_close(result["weights"][k], v, atol=TOL, rtol=0, msg=lambda m: f"{k}: {m}")

    # what rank 0 saved loads back to the same weights
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32).state_dict()
    for k, v in ref.items():
        torch.testing.assert_close(saved[k], v, atol=TOL, rtol=0)

    # a checkpoint write that fails on rank 0 raises on rank 1 too (instead of leaving it in the barrier)
    assert (tmp_path / "save_error_rank0.txt").read_text().startswith("FileExistsError")
    assert (tmp_path / "save_error_rank1.txt").read_text().startswith("RuntimeError: rank 0 failed: FileExistsError")

    # SFT (ranks with activation checkpointing): train_step on each rank's share, the same loss and weights as one process
    from tests.training.dist_worker import sft_steps

    sft_ref_model = tiny_model()
    sft_ref = sft_steps(sft_ref_model, sft_examples, SFT_CFG, LR)
    for got, want in zip(result["sft"], sft_ref, strict=True):
        assert got["loss_tokens"] == want["loss_tokens"] and got["rows"] == want["rows"]
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-6)
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-6)
    for k, v in sft_ref_model.state_dict().items():
        torch.testing.assert_close(result["sft_weights"][k], v, atol=TOL, rtol=0, msg=lambda m: f"sft {k}: {m}")

    # the test can fail: per-rank normalisation on the same batch lands far outside the tolerance
    wrong_model = tiny_model()
    _per_rank_normalised_update(wrong_model, examples, world=2)
    wrong = max(float((wrong_model.state_dict()[k] - v).abs().max()) for k, v in ref.items())
    assert wrong > 100 * TOL


def test_a_name_keyed_optimizer_state_from_fsdp_loads_into_one_process(tiny_model, tmp_path):
    """Rank 0 saves the optimizer keyed by parameter name (the full state dict of torch.distributed.checkpoint);
    one process converts it to integer ids. The round trip is exact; a name the model lacks is an error."""
    from swe_rl.training.checkpoint import STATE_DIR, indexed_optimizer_state, load_checkpoint, named_optimizer_state, optimizer_param_names, save_checkpoint
    from swe_rl.training.rl_step import make_rl_optimizer

    model = tiny_model()
    opt = make_rl_optimizer(model, lr=1e-3)
    model(torch.tensor([[11, 12, 13, 14]])).logits.square().mean().backward()
    opt.step()
    want = opt.state_dict()
    names = optimizer_param_names(model, opt)
    named = named_optimizer_state(want, names)
    assert "model.embed_tokens.weight" in named["state"] and all(isinstance(k, str) for k in named["state"])
    assert named_optimizer_state(named, names) is named and indexed_optimizer_state(want, names) is want
    back = indexed_optimizer_state(named, names)
    assert back["param_groups"] == want["param_groups"]

    path = save_checkpoint(tmp_path, model, None, opt, None, 1)
    state = torch.load(path / STATE_DIR / "state.pt", weights_only=False)
    torch.save({**state, "optimizer": named}, path / STATE_DIR / "state.pt")  # as a 2-rank run writes it
    fresh = tiny_model()
    fresh_opt = make_rl_optimizer(fresh, lr=1e-3)
    load_checkpoint(path, fresh, fresh_opt)
    got = fresh_opt.state_dict()
    assert got["param_groups"] == want["param_groups"] and got["state"].keys() == want["state"].keys()
    for i, s in want["state"].items():
        for k, v in s.items():
            assert torch.equal(got["state"][i][k], v), (i, k)
    assert float(want["state"][0]["exp_avg_sq"].abs().max()) > 0
    bad = {**named, "param_groups": [{**named["param_groups"][0], "params": ["no.such.weight"]}, *named["param_groups"][1:]]}
    with pytest.raises(ValueError, match="does not have.*no.such.weight"):
        indexed_optimizer_state(bad, names)
