"""torchrun worker of test_distributed.py: every rank takes the RL and SFT steps of `job.pt` on its share.

`python -m torch.distributed.run --standalone --nproc-per-node 2 tests/training/dist_worker.py <dir>`,
<dir>/job.pt = {"examples", "cfg", "lr", "sft_examples", "sft_cfg"}; rank 0 writes <dir>/result.pt and <dir>/model/.
Then a checkpoint write that fails on rank 0: every rank writes what it raised to <dir>/save_error_rank<r>.txt.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoModelForCausalLM

from swe_rl.policy.models import resolve_model
from swe_rl.training.checkpoint import save_checkpoint
from swe_rl.training.distributed import SINGLE, DataParallel, clip_grad_norm, close_distributed, full_state_dict, init_distributed, save_full_model, shard_model
from swe_rl.training.rl_step import rl_update
from swe_rl.training.sft import SFTConfig, train_step
from swe_rl.training.sft_data import SFTExample


def load_tiny() -> Any:
    return AutoModelForCausalLM.from_pretrained(resolve_model("tiny"), dtype=torch.float32, attn_implementation="sdpa")


def sft_steps(model: Any, examples: Sequence[SFTExample], cfg: SFTConfig, lr: float, dp: DataParallel = SINGLE) -> list[dict[str, float]]:
    """train_sft's optimizer steps in data order (SGD, no schedule), each rank on its `dp.split` of every batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    out = []
    for start in range(0, len(examples), cfg.batch_size):
        batch = examples[start : start + cfg.batch_size]
        mine = [batch[i] for i in dp.split([len(e) for e in batch])]
        m = train_step(model, mine, cfg, dp=dp)
        m["grad_norm"] = clip_grad_norm(list(model.parameters()), cfg.grad_clip, dp)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out.append(m)
    return out


def main(work: Path) -> None:
    torch.set_num_threads(1)
    job = torch.load(work / "job.pt", weights_only=False)
    dp = init_distributed("gloo")
    assert dp.world_size == 2, dp
    model = shard_model(load_tiny(), dp)
    optimizer = torch.optim.SGD(model.parameters(), lr=job["lr"])  # after sharding: the parameters are DTensors now
    steps, batch = rl_update(model, optimizer, job["examples"], job["cfg"], dp=dp)
    weights = full_state_dict(model, dp)
    save_full_model(model, dp, work / "model")
    sft_model = shard_model(load_tiny(), dp, activation_checkpointing=True)  # recomputation must not change the step
    sft = sft_steps(sft_model, job["sft_examples"], job["sft_cfg"], job["lr"], dp)
    sft_weights = full_state_dict(sft_model, dp)
    blocked = work / "blocked"  # its checkpoints directory is a file: rank 0's write fails
    if dp.is_main:
        torch.save({"steps": steps, "batch": batch, "weights": weights, "sft": sft, "sft_weights": sft_weights}, work / "result.pt")
        blocked.mkdir()
        (blocked / "checkpoints").write_text("")
    try:
        save_checkpoint(blocked, model, dp=dp)
    except Exception as e:  # noqa: BLE001 - what each rank raised is the test's result
        (work / f"save_error_rank{dp.rank}.txt").write_text(f"{type(e).__name__}: {e}")
    close_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
