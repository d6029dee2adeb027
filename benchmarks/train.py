"""SFT and RL (DAPO) training throughput against their limit, and packing's padding efficiency.

Command (the numbers in benchmarks/results/train.json, 2 CPU cores shared with a load of ~10-15):
  .venv/bin/swe-rl rft build --config configs/rft.yaml --set collect_model=scripted:gold --set limit=0 --set run_dir=runs/rft_gold
  .venv/bin/python benchmarks/train.py --model smollm2-135m --n 2 --min-len 64 --max-len 128 --row-len 256 --reps 3 \
      --eff-examples runs/rft_gold/build/examples.jsonl --eff-row-len 8192 --eff-batch-size 4
(the first writes the real RFT example set: 28 gold-patch replays of the 14 training tasks, 2.2-2.5k tokens each).
Options: --examples sft.jsonl (real RFT examples for the timed batch too), --n, --row-len, --reps,
--eff-examples (the set whose padding efficiency is measured; default: --examples, else synthetic).
Side by side in one run, on the same packed rows: (a) `sft.train_step` + grad clip + AdamW (packing
with a block-diagonal mask, token-level loss); (b) `rl_step.rl_update`: one DAPO optimizer step,
i.e. the trainer's recompute of the old log-probs (one forward) + the clipped-ratio loss forward/
backward + clip + AdamW, on the same tokens as an on-policy batch (advantages +-1); (c) the limit:
a plain causal forward + backward + AdamW step over the same token rows (no mask, HF's own loss).
Padding efficiency (real tokens / processed tokens) of the packing `train_sft` does on a set.
Prints a table and writes JSON (--out). A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from swe_rl.training.packing import collate, first_fit_decreasing
from swe_rl.training.rl_step import RLExample, UpdateConfig, make_rl_optimizer, rl_update, trainer_logprobs
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


def on_policy_batch(model, examples: list[SFTExample], row_len: int) -> list[RLExample]:
    """The same tokens as an RL batch: the model's own log-probs as the sampler's (ratio 1), advantages +-1."""
    lps = trainer_logprobs(model, [RLExample(list(e.input_ids), list(e.loss_mask), [0.0] * len(e), 0.0) for e in examples], row_len)
    return [RLExample(list(e.input_ids), list(e.loss_mask), lp.tolist(), (-1.0) ** k) for k, (e, lp) in enumerate(zip(examples, lps))]


def best_fixed_row_len(lengths: list[int], max_row_len: int, batch_size: int, step: int = 128) -> dict[str, float]:
    """The fixed row length (a multiple of `step`, from the longest example up to `max_row_len`) that pads least.

    Rows much longer than the examples waste the tail of every row (8192-token rows hold three
    ~2.4k-token trajectories: 0.86 at best); a row length fitted to the example lengths does not.
    """
    lo = -(-max(lengths) // step) * step
    best = max(range(lo, max_row_len + 1, step), key=lambda n: padding_efficiency(lengths, n, batch_size)["efficiency_fixed_rows"])
    return {"row_len": best, "efficiency_fixed_rows": padding_efficiency(lengths, best, batch_size)["efficiency_fixed_rows"]}


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
    ap.add_argument("--eff-examples", type=Path, default=None, help="SFT examples JSONL whose padding efficiency is measured (default: --examples)")
    ap.add_argument("--eff-batch-size", type=int, default=64, help="examples per optimizer step when packing the efficiency set")
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

    rl_batch = on_policy_batch(model, examples, a.row_len)
    rl_opt = make_rl_optimizer(model)
    ucfg = UpdateConfig(batch_size=len(rl_batch), max_seq_len=a.row_len)
    rl_parts: dict[str, float] = {}

    def rl() -> None:
        steps, batch = rl_update(model, rl_opt, rl_batch, ucfg)
        total = batch["recompute_logprobs_s"] + steps[0]["step_s"]
        if total < rl_parts.get("total", float("inf")):  # the breakdown of the fastest run
            rl_parts.update(total=total, recompute_s=batch["recompute_logprobs_s"], update_s=steps[0]["step_s"])

    tokens = sum(len(e) for e in examples)
    t_ours, t_rl, t_limit = timed([ours, rl, limit], a.reps)
    eff_file = a.eff_examples or a.examples
    eff_lengths = [len(e) for e in read_examples(eff_file)] if eff_file else \
        [len(e) for e in synthetic(a.eff_n, a.eff_min_len, a.eff_max_len, 1, 100)]
    eff = padding_efficiency(eff_lengths, a.eff_row_len, a.eff_batch_size)
    eff["best_fixed_row_len"] = best_fixed_row_len(eff_lengths, a.eff_row_len, a.eff_batch_size)
    result = {
        "model": a.model, "device": str(model.device), "threads": torch.get_num_threads(),
        "examples": len(examples), "tokens": tokens, "rows": len(rows), "row_len": a.row_len,
        "sft_step_s": t_ours, "sft_tokens_per_s": tokens / t_ours,
        "rl_step_s": t_rl, "rl_tokens_per_s": tokens / t_rl, "rl_recompute_logprobs_s": rl_parts["recompute_s"],
        "rl_update_s": rl_parts["update_s"], "rl_update_tokens_per_s": tokens / rl_parts["update_s"],
        "limit_step_s": t_limit, "limit_tokens_per_s": tokens / t_limit, "ratio": t_limit / t_ours,
        "rl_ratio": t_limit / t_rl, "rl_update_ratio": t_limit / rl_parts["update_s"],
        "padding": eff, "efficiency_source": str(eff_file) if eff_file else "synthetic",
    }
    print(f"{'path':<44} {'step s':>8} {'tokens/s':>10} {'vs limit':>9}")
    for name, t in (("sft.train_step + clip + AdamW", t_ours), ("rl_update: recompute + DAPO fwd/bwd + AdamW", t_rl),
                    ("  of which the DAPO fwd/bwd + clip + AdamW", rl_parts["update_s"]), ("limit: plain fwd+bwd + AdamW", t_limit)):
        print(f"{name:<44} {t:>8.2f} {tokens / t:>10.1f} {t_limit / t:>9.3f}")
    print(f"[{tokens} tokens in {len(rows)} rows of <= {a.row_len}; the RL step's extra forward (old log-probs) took {rl_parts['recompute_s']:.2f} s]")
    print(f"padding efficiency ({result['efficiency_source']}, {eff['examples']} examples, batch {eff['batch_size']}, rows of {eff['row_len']}): "
          f"{eff['efficiency_fixed_rows']:.4f} with fixed-length rows ({eff['real_tokens']} real tokens in {eff['rows']} rows); "
          f"as trained, rows padded to the longest of their micro-batch of 1/2/4 rows: {eff['efficiency_micro_batch_rows_1']:.4f}"
          f"/{eff['efficiency_micro_batch_rows_2']:.4f}/{eff['efficiency_micro_batch_rows_4']:.4f}; "
          f"best fixed row length {eff['best_fixed_row_len']['row_len']}: {eff['best_fixed_row_len']['efficiency_fixed_rows']:.4f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
