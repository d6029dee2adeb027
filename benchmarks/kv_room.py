"""Decode speed of HFPolicy with its room-reserving KV cache against transformers' plain DynamicCache.

    .venv/bin/python benchmarks/kv_room.py [--context 1800] [--batch 8] [--tokens 33] [--repeats 3]

A decode step with a plain DynamicCache concatenates (copies) every layer's whole cache; the policy's
cache writes the new column into room reserved up front (policy/hf.py `_decode_cache`). Prompts are
random token ids of slightly different lengths (so rows are padded, as in rollouts). Each repeat
prefills them once, then times a next turn that extends every row by its sampled token: that call
takes the prefill from the kept cache, so it is decode steps plus a fixed set-up; a step's time is
(time for `tokens` new tokens - time for 1) / (tokens - 1), the median of `repeats`. Both caches
must sample the same tokens with the same log-probs. Writes benchmarks/results/kv_room.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import DynamicCache

import swe_rl.policy.hf as hf
from swe_rl.types import SamplingParams


def next_turn(policy: hf.HFPolicy, prompts: list[list[int]], tokens: int) -> tuple[float, list]:
    """Seconds of a call that continues every prompt from its kept cache, and that call's completions."""
    first = policy.generate(prompts, SamplingParams(max_new_tokens=1, seed=0))
    extended = [p + list(c.token_ids) for p, c in zip(prompts, first)]
    t = time.perf_counter()
    out = policy.generate(extended, SamplingParams(max_new_tokens=tokens, seed=1))
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--context", type=int, default=1800)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=33)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/kv_room.json"))
    a = ap.parse_args()
    policy = hf.HFPolicy(a.model, device="cpu")
    policy.stop_token_ids = [policy.model.config.vocab_size - 1]  # a token random weights almost never sample
    torch.manual_seed(0)
    prompts = [torch.randint(100, 40000, (a.context - 20 * i,)).tolist() for i in range(a.batch)]
    room_cache = hf._decode_cache
    plain_cache = lambda config, room: DynamicCache(config=config)  # noqa: E731
    rows, outputs = [], {}
    for name, make in (("plain DynamicCache", plain_cache), ("room reserved", room_cache)):
        hf._decode_cache = make
        next_turn(policy, [prompts[0][:64]], 2)  # warm-up
        steps = []
        for _ in range(a.repeats):
            first, _ = next_turn(policy, prompts, 1)
            full, out = next_turn(policy, prompts, a.tokens)
            steps.append((full - first) / (a.tokens - 1))
        outputs[name] = [(c.token_ids, c.logprobs) for c in out]
        step = statistics.median(steps)
        rows.append({"cache": name, "decode_ms_per_step": round(1000 * step, 1),
                     "new_tokens_per_s": round(a.batch / step, 1), "steps_ms": [round(1000 * s) for s in steps]})
    hf._decode_cache = room_cache
    same = outputs["plain DynamicCache"] == outputs["room reserved"]
    print(f"context {a.context}, batch {a.batch}, {a.tokens} new tokens, median of {a.repeats}; same samples: {same}")
    print(f"{'cache':<20} {'ms/step':>8} {'new tok/s':>10}")
    for r in rows:
        print(f"{r['cache']:<20} {r['decode_ms_per_step']:>8} {r['new_tokens_per_s']:>10}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "threads": torch.get_num_threads(),
                                 "same_samples": same, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
