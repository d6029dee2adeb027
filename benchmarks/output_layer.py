"""The output layer only where the loss needs it: SFT loss forward + backward with log-probs at every position vs at the wanted ones.

    .venv/bin/python benchmarks/output_layer.py [--examples runs/learning_proof/rft/build/examples.jsonl] [--n 2] [--reps 3]

Each example (a real multi-turn trajectory: ~2,100 tokens of which ~170 are the model's own) is one
packed row. Both paths run `training.logprobs.masked_nll_sum`'s computation in the same process,
alternating, and their losses and gradients are compared. Prints a table and writes JSON (--out).
A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from swe_rl.training.logprobs import packed_token_logprobs
from swe_rl.training.packing import collate
from swe_rl.training.sft import SFTConfig, load_for_training
from swe_rl.training.sft_data import read_examples


def loss_and_grads(model, batch, wanted) -> tuple[float, torch.Tensor, float]:
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    lp = packed_token_logprobs(model, batch, wanted=wanted)
    loss = -(lp * batch.loss_mask).sum() / batch.loss_mask.sum()
    loss.backward()
    elapsed = time.perf_counter() - t0
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), grads, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--examples", type=Path, default=Path("runs/learning_proof/rft/build/examples.jsonl"))
    ap.add_argument("--n", type=int, default=2, help="examples timed (each its own row)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/output_layer.json"))
    args = ap.parse_args()
    examples = read_examples(args.examples)[: args.n]
    model, _ = load_for_training(args.model, SFTConfig(), device="cpu")  # what train_sft trains
    times: dict[str, list[float]] = {"every position": [], "wanted only": []}
    worst = {"loss": 0.0, "grad": 0.0}
    tokens = sum(len(e.input_ids) for e in examples)
    for _ in range(args.reps):
        for e in examples:
            batch = collate([e], [[0]], pad_id=0)
            full_loss, full_grads, t_full = loss_and_grads(model, batch, None)
            only_loss, only_grads, t_only = loss_and_grads(model, batch, batch.loss_mask)
            times["every position"].append(t_full)
            times["wanted only"].append(t_only)
            worst["loss"] = max(worst["loss"], abs(full_loss - only_loss))
            worst["grad"] = max(worst["grad"], float((full_grads - only_grads).abs().max()))
    per_rep = {k: sum(v) / args.reps for k, v in times.items()}
    result = {"model": args.model, "examples": str(args.examples), "n": len(examples), "tokens": tokens,
              "loss_tokens": sum(sum(e.loss_mask) for e in examples), "reps": args.reps, "threads": torch.get_num_threads(),
              "seconds_per_rep": per_rep, "tokens_per_s": {k: tokens / s for k, s in per_rep.items()},
              "speedup": per_rep["every position"] / per_rep["wanted only"], "max_abs_diff": worst}
    print(f"{'path':<16} {'s / rep':>8} {'tokens/s':>9}")
    for k, s in per_rep.items():
        print(f"{k:<16} {s:8.2f} {tokens / s:9.1f}")
    print(f"speedup {result['speedup']:.2f}x on {tokens} tokens ({result['loss_tokens']} in the loss); "
          f"max |diff|: loss {worst['loss']:.2e}, gradient {worst['grad']:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
