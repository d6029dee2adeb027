"""SFT training throughput against its limit, and packing's padding efficiency.

Command (the numbers in benchmarks/results/train.json, 2 shared CPU cores):
  .venv/bin/python benchmarks/train.py --model smollm2-135m --n 4 --min-len 64 --max-len 256 --row-len 512 --reps 3
Options: --examples sft.jsonl (real RFT examples instead of synthetic), --n, --row-len, --reps, --eff-* (efficiency set).
Side by side in one run, on the same packed rows: (a) `sft.train_step` + grad clip + AdamW (packing
with a block-diagonal mask, token-level loss); (b) the limit: a plain causal forward + backward +
AdamW step over the same token rows (no mask, HF's own loss). Padding efficiency (real tokens /
processed tokens, fixed-length rows) on a set of examples: `--examples` or synthetic RFT-like lengths.
Prints a table and writes JSON (--out). A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from swe_rl.training.packing import collate, first_fit_decreasing
from swe_rl.training.sft import SFTConfig, load_for_training, make_optimizer, step_plan, train_step
from swe_rl.training.sft_data import SFTExample, read_examples


def synthetic(n: int, lo: int, hi: int, seed: int, vocab: int) -> list[SFTExample]:
    """Trajectory-like examples: a prompt, then assistant runs alternating with observations."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(n):
        length = int(torch.randint(lo, hi + 1, (1,), generator=g))
        ids = torch.randint(3, vocab, (length,), generator=g).tolist()
        prompt = length // 4
        mask = [0] * prompt + [1 if (i // 40) % 2 == 0 else 0 for i in range(length - prompt)]
        out.append(SFTExample(tuple(ids), tuple(mask), f"synthetic-{k}", 0))
    return out


def padding_efficiency(lengths: list[int], row_len: int, batch_size: int) -> dict[str, float]:
    """FFD per optimizer step of `batch_size` sequences into rows of `row_len`, as `train_sft` packs them."""
    fits = [n for n in lengths if n <= row_len]
    real = rows = 0
    processed = {1: 0, 2: 0, 4: 0}
    for batch in step_plan(len(fits), SFTConfig(batch_size=batch_size)):
        b = [fits[i] for i in batch]
        packed = [sum(b[i] for i in row) for row in first_fit_decreasing(b, row_len)]
        rows += len(packed)
        real += sum(b)
        for m in processed:  # as train_step runs them: m rows per forward, padded to the longest of them
            processed[m] += sum(max(packed[i : i + m]) * len(packed[i : i + m]) for i in range(0, len(packed), m))
    return {"examples": len(lengths), "dropped_too_long": len(lengths) - len(fits), "row_len": row_len,
            "batch_size": batch_size, "rows": rows, "real_tokens": real, "efficiency_fixed_rows": real / (rows * row_len),
            **{f"efficiency_micro_batch_rows_{m}": real / p for m, p in processed.items()}}


def timed(fns, reps: int) -> list[float]:
    """Best wall time of each function; they alternate, so a load change on a shared machine hits both."""
    for fn in fns:
        fn()  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--examples", type=Path, default=None, help="SFT examples JSONL (default: synthetic)")
    ap.add_argument("--n", type=int, default=16, help="synthetic examples in the timed batch")
    ap.add_argument("--min-len", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--row-len", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--eff-n", type=int, default=512, help="synthetic examples for the padding-efficiency set")
    ap.add_argument("--eff-row-len", type=int, default=8192)
    ap.add_argument("--eff-min-len", type=int, default=1000)
    ap.add_argument("--eff-max-len", type=int, default=6000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train.json"))
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = SFTConfig(max_seq_len=a.row_len, micro_batch_rows=1, attn_implementation="sdpa")
    model, tok = load_for_training(a.model, cfg, device="cuda" if torch.cuda.is_available() else "cpu")
    vocab = model.config.vocab_size
    examples = read_examples(a.examples)[: a.n] if a.examples else synthetic(a.n, a.min_len, a.max_len, 0, vocab)
    examples = [e for e in examples if len(e) <= a.row_len]
    optimizer = make_optimizer(model, cfg)

    def ours() -> None:
        train_step(model, examples, cfg)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rows = first_fit_decreasing([len(e) for e in examples], a.row_len)
    row_ids = [collate(examples, [r]).input_ids.to(model.device) for r in rows]  # the same tokens, one row each
    plain_opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def limit() -> None:
        for ids in row_ids:
            model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    tokens = sum(len(e) for e in examples)
    t_ours, t_limit = timed([ours, limit], a.reps)
    eff_lengths = [len(e) for e in read_examples(a.examples)] if a.examples else \
        [len(e) for e in synthetic(a.eff_n, a.eff_min_len, a.eff_max_len, 1, 100)]
    eff = padding_efficiency(eff_lengths, a.eff_row_len, 64)
    result = {
        "model": a.model, "device": str(model.device), "threads": torch.get_num_threads(),
        "examples": len(examples), "tokens": tokens, "rows": len(rows), "row_len": a.row_len,
        "sft_step_s": t_ours, "sft_tokens_per_s": tokens / t_ours,
        "limit_step_s": t_limit, "limit_tokens_per_s": tokens / t_limit, "ratio": t_limit / t_ours,
        "padding": eff, "efficiency_source": str(a.examples) if a.examples else "synthetic",
    }
    print(f"{'path':<38} {'step s':>8} {'tokens/s':>10}")
    print(f"{'sft.train_step + clip + AdamW':<38} {t_ours:>8.2f} {tokens / t_ours:>10.1f}")
    print(f"{'limit: plain fwd+bwd + AdamW':<38} {t_limit:>8.2f} {tokens / t_limit:>10.1f}")
    print(f"ratio (ours / limit throughput): {t_limit / t_ours:.3f}  [{tokens} tokens in {len(rows)} rows of <= {a.row_len}]")
    print(f"padding efficiency ({result['efficiency_source']}, {eff['examples']} examples, batch 64, rows of {eff['row_len']}): "
          f"{eff['efficiency_fixed_rows']:.4f} with fixed-length rows ({eff['real_tokens']} real tokens in {eff['rows']} rows); "
          f"as trained, rows padded to the longest of their micro-batch of 1/2/4 rows: {eff['efficiency_micro_batch_rows_1']:.4f}"
          f"/{eff['efficiency_micro_batch_rows_2']:.4f}/{eff['efficiency_micro_batch_rows_4']:.4f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
