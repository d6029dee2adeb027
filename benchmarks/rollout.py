"""Rollout engine throughput vs raw generation, side by side in one run (issue 5).

    .venv/bin/python benchmarks/rollout.py --batches 1 8 16 --turns 2 --new-tokens 64

For each B: B episodes of SmolLM2-135M on the bundled tasks run through the engine (sandboxes,
tools, grading included), then raw `model.generate` on the same B first-turn prompts, the same
number of rounds and the same new-token budget. Prints generated tokens/s of both, their ratio
(target >= 0.8 at B = 8 and 16) and the engine's time breakdown; writes benchmarks/results/rollout.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from swe_rl.agent.loop import AgentConfig
from swe_rl.recipes.rollout import LocalEpisodes
from swe_rl.rollouts.engine import RolloutConfig, collect
from swe_rl.sandbox.environments import require_prepared
from swe_rl.tasks.loaders import load_tasks


def engine_run(policy, tasks, samples: int, batch: int, cfg: AgentConfig, out: Path) -> dict:
    hooks = LocalEpisodes(policy.tokenizer, cfg, None)
    result = collect(tasks, policy, cfg.sampling(), hooks.start_episode, hooks.open_sandbox, hooks.grade, out,
                     RolloutConfig(samples=samples, max_active=batch, seed=0))
    first_prompts = [t.token_ids[: t.loss_mask.index(1)] for t in result.trajectories if 1 in t.loss_mask]
    other = result.wall_s - result.generation_s - result.steps_s - result.grading_tail_s
    return {
        "episodes": len(result.trajectories),
        "tokens": result.generated_tokens,
        "wall_s": result.wall_s,
        "tokens_per_s": result.generated_tokens / result.wall_s,
        "breakdown_s": {"generation": result.generation_s, "sandbox (commands)": result.steps_s,
                        "grading tail": result.grading_tail_s, "idle/other (sandbox start, bookkeeping)": other},
        "rounds": max(t.num_turns for t in result.trajectories),
        "first_prompts": first_prompts,
    }


def raw_run(policy, prompts: list[list[int]], rounds: int, new_tokens: int) -> dict:
    """model.generate over the same prompts, left-padded, sampling at temperature 1, `rounds` times."""
    model, tok = policy.model, policy.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    tokens, started = 0, time.perf_counter()
    for _ in range(rounds):
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=new_tokens, eos_token_id=policy.stop_token_ids, pad_token_id=pad)
        new = out[:, width:]
        tokens += int((new != pad).sum())
    wall = time.perf_counter() - started
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rollout.json"))
    args = parser.parse_args()

    from swe_rl.policy.hf import HFPolicy

    torch.manual_seed(0)
    policy = HFPolicy(args.model, device="cpu", name=args.model)
    tasks = load_tasks("bundled")
    require_prepared(tasks)
    cfg = AgentConfig(max_turns=args.turns, max_new_tokens=args.new_tokens, context_length=4096, window=20)
    rows = []
    for b in args.batches:
        # exactly B episodes: n_tasks x samples == B with as many distinct tasks as there are
        n_tasks = max(d for d in range(1, min(b, len(tasks)) + 1) if b % d == 0)
        samples = b // n_tasks
        with tempfile.TemporaryDirectory() as tmp:
            engine = engine_run(policy, tasks[:n_tasks], samples, b, cfg, Path(tmp) / "traj.jsonl")
        prompts = engine.pop("first_prompts")[:b]
        raw = raw_run(policy, prompts, engine["rounds"], args.new_tokens)
        rows.append({"batch": b, "engine": engine, "raw_generate": raw, "ratio": engine["tokens_per_s"] / raw["tokens_per_s"]})
        print(f"B={b:>2}  engine {engine['tokens_per_s']:7.1f} tok/s ({engine['tokens']} tokens, {engine['wall_s']:.1f} s)"
              f"   raw generate {raw['tokens_per_s']:7.1f} tok/s ({raw['tokens']} tokens, {raw['wall_s']:.1f} s)"
              f"   ratio {rows[-1]['ratio']:.2f}")
        print("      engine time: " + ", ".join(f"{k} {v:.1f} s" for k, v in engine["breakdown_s"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "turns": args.turns, "new_tokens": args.new_tokens,
                                    "threads": torch.get_num_threads(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
