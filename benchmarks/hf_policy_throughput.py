"""Generation throughput of HFPolicy: new tokens per second at several batch sizes.

Usage: python benchmarks/hf_policy_throughput.py [--model smollm2-135m] [--batch 1 8] [--tokens 64]
Prints a table and writes JSON (--out). A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from swe_rl.policy.hf import HFPolicy
from swe_rl.types import SamplingParams


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per sequence (stop tokens ignored)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/hf_policy_throughput.json"))
    a = ap.parse_args()
    policy = HFPolicy(a.model, device=a.device, stop_token_ids=[-1])  # never stop: fixed work per run
    tok = policy.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Write a Python function that reverses a linked list."}],
        add_generation_prompt=True, tokenize=False,
    )
    ids = tok.encode(prompt, add_special_tokens=False)
    params = SamplingParams(max_new_tokens=a.tokens, seed=0)
    policy.generate([ids], SamplingParams(max_new_tokens=4, seed=0))  # warm-up
    rows = []
    for b in a.batch:
        t = time.perf_counter()
        out = policy.generate([ids] * b, params)
        dt = time.perf_counter() - t
        n = sum(len(c.token_ids) for c in out)
        rows.append({"model": a.model, "device": a.device, "dtype": str(policy.model.dtype), "batch": b,
                     "prompt_tokens": len(ids), "new_tokens": n, "seconds": round(dt, 3),
                     "tokens_per_s": round(n / dt, 2), "torch_threads": torch.get_num_threads()})
    print(f"{'batch':>5} {'new tokens':>10} {'seconds':>8} {'tokens/s':>9}")
    for r in rows:
        print(f"{r['batch']:>5} {r['new_tokens']:>10} {r['seconds']:>8} {r['tokens_per_s']:>9}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
