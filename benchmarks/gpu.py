"""GPU throughput side by side: vLLM vs transformers generation, the RL trainer's tokens/s, the weight sync.

Needs a CUDA GPU (exits with status 2 and says so otherwise); the generation rows also need vLLM.
One GPU:            .venv/bin/python benchmarks/gpu.py --model smollm2-135m
FSDP on one GPU:    .venv/bin/python benchmarks/gpu.py --model smollm2-135m --trainer-only --fsdp --checkpointing
FSDP over N GPUs:   torchrun --nproc-per-node N benchmarks/gpu.py --model smollm2-135m --trainer-only
Generation: the same B random prompts (--prompt-len tokens each), --new-tokens per completion,
neutral sampling (temperature 1), through HFPolicy (bf16) and VLLMPolicy (in-process, bf16);
tokens/s = generated tokens / wall time. Trainer: `rl_update` (old log-probs recompute + one DAPO
optimizer step: forward/backward, clip, AdamW) on packed synthetic trajectories of --seq-len rows,
float32 masters with bf16 autocast (and FSDP bf16 parameters under torchrun); tokens/s counts every
real token of the batch, over all ranks. Sync: VLLMPolicy.update_weights(state_dict) after sleep.
Prints a table and writes JSON (--out). A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch


def one_rank_group(device: torch.device) -> Any:
    """A one-process nccl group whose DataParallel counts as distributed: FSDP2's sharding, bf16
    all-gathers and reduce-scatters all run on a single GPU (no speed-up, the same code paths)."""
    import torch.distributed as dist

    from swe_rl.training.distributed import DataParallel

    @dataclasses.dataclass(frozen=True)
    class OneRankGroup(DataParallel):
        @property
        def enabled(self) -> bool:
            return True

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=device)
    return OneRankGroup(rank=0, world_size=1, device=device)


def _sync() -> None:
    torch.cuda.synchronize()


def random_prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(100, vocab, (length,), generator=g).tolist() for _ in range(n)]


def bench_generation(policy: Any, prompts: list[list[int]], new_tokens: int) -> dict[str, float]:
    from swe_rl.types import SamplingParams

    params = SamplingParams(max_new_tokens=new_tokens, seed=0)
    policy.generate(prompts[:2], SamplingParams(max_new_tokens=8, seed=0))  # warm-up (graphs, kernels)
    _sync()
    t = time.perf_counter()
    out = policy.generate(prompts, params)
    _sync()
    dt = time.perf_counter() - t
    tokens = sum(len(c.token_ids) for c in out)
    return {"seconds": dt, "generated_tokens": tokens, "tokens_per_s": tokens / dt, "mean_completion": tokens / len(out)}


def bench_trainer(model_name: str, dp: Any, n: int, seq_len: int, steps: int, checkpointing: bool) -> tuple[dict[str, float], Any]:
    from transformers import AutoModelForCausalLM

    from swe_rl.policy.models import resolve_model
    from swe_rl.training.distributed import shard_model
    from swe_rl.training.rl_step import RLExample, UpdateConfig, make_rl_optimizer, rl_update

    path = resolve_model(model_name)
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").to(dp.device)
    model = shard_model(model, dp, activation_checkpointing=checkpointing)
    optimizer = make_rl_optimizer(model, lr=1e-6)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    examples = []
    for k in range(n):  # trajectory-like: lengths between a quarter and all of a row
        length = int(torch.randint(seq_len // 4, seq_len + 1, (1,), generator=g))
        ids = torch.randint(100, vocab, (length,), generator=g).tolist()
        examples.append(RLExample(ids, [0] * (length // 4) + [1] * (length - length // 4), [-10.0] * length, (-1.0) ** k))
    cfg = UpdateConfig(batch_size=n, max_seq_len=seq_len, micro_batch_rows=1)
    rl_update(model, optimizer, examples, cfg, dp=dp)  # warm-up
    _sync()
    t = time.perf_counter()
    for _ in range(steps):
        rl_update(model, optimizer, examples, cfg, dp=dp)
    _sync()
    dt = (time.perf_counter() - t) / steps
    tokens = sum(len(e) for e in examples)
    return {"seconds_per_update": dt, "tokens": tokens, "tokens_per_s": tokens / dt, "world_size": dp.world_size,
            "peak_gib_rank0": torch.cuda.max_memory_allocated() / 2**30}, model


def table(rows: list[tuple[str, str, str]]) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c}" for a, b, c in rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=64, help="B: prompts generated together")
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--train-n", type=int, default=32, help="trajectories per optimizer step")
    ap.add_argument("--seq-len", type=int, default=4096, help="packed row length")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--checkpointing", action="store_true", help="activation checkpointing in the trainer")
    ap.add_argument("--fsdp", action="store_true", help="shard the trainer with FSDP2 even on one GPU (a one-rank group)")
    ap.add_argument("--trainer-only", action="store_true", help="skip generation (implied under torchrun with >1 process)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.4)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA GPU and none is visible here: nothing was measured.", file=sys.stderr)
        return 2
    from swe_rl.training.distributed import close_distributed, init_distributed

    dp = init_distributed()
    if a.fsdp and not dp.enabled:
        dp = one_rank_group(dp.device)
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(dp.device), "model": a.model, "args": {k: str(v) for k, v in vars(a).items()}}
    rows = [("what", "tokens/s", "detail")]
    vllm_policy = None
    if not a.trainer_only and not dp.enabled:
        from swe_rl.policy.hf import HFPolicy

        hf = HFPolicy(a.model, device="cuda", name=a.model)
        prompts = random_prompts(a.prompts, a.prompt_len, hf.model.config.vocab_size, 0)
        result["hf_generate"] = bench_generation(hf, prompts, a.new_tokens)
        rows.append(("transformers generate", f"{result['hf_generate']['tokens_per_s']:.0f}", f"B={a.prompts}, {result['hf_generate']['generated_tokens']} tokens"))
        del hf
        torch.cuda.empty_cache()
        if importlib.util.find_spec("vllm") is None:
            result["vllm_generate"] = "vLLM is not installed (pip install 'swe-rl[vllm]')"
            rows.append(("vLLM generate", "-", result["vllm_generate"]))
        else:
            from swe_rl.policy.vllm import VLLMConfig, VLLMPolicy

            vllm_policy = VLLMPolicy(a.model, VLLMConfig(gpu_memory_utilization=a.gpu_memory_utilization, sleep=True), name=a.model)
            result["vllm_generate"] = bench_generation(vllm_policy, prompts, a.new_tokens)
            rows.append(("vLLM generate", f"{result['vllm_generate']['tokens_per_s']:.0f}", f"B={a.prompts}, {result['vllm_generate']['generated_tokens']} tokens"))
            vllm_policy.sleep()  # the trainer below gets the memory, as in the RL loop
    result["trainer"], model = bench_trainer(a.model, dp, a.train_n, a.seq_len, a.steps, a.checkpointing)
    rows.append((f"RL trainer (rl_update, {dp.world_size} GPU{', FSDP2' if dp.enabled else ''}{', act. ckpt' if a.checkpointing else ''})", f"{result['trainer']['tokens_per_s']:.0f}",
                 f"{result['trainer']['tokens']} tokens/update, peak {result['trainer']['peak_gib_rank0']:.1f} GiB"))
    if vllm_policy is not None:
        t = time.perf_counter()
        vllm_policy.update_weights(model.state_dict())
        _sync()
        result["weight_sync_s"] = time.perf_counter() - t
        rows.append(("weight sync (wake + load + wake)", "-", f"{result['weight_sync_s']:.2f} s"))
    if dp.is_main:
        print(table(rows))
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1))
    close_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
