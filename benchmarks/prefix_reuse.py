"""Multi-turn episodes with and without HFPolicy's KV-cache reuse across turns, side by side.

    .venv/bin/python benchmarks/prefix_reuse.py [--tasks 3] [--samples 2] [--turns 4] [--new-tokens 64]

The same episodes (bundled tasks, SmolLM2-135M, the same seeds, the compact prompts) run twice
through the rollout engine: `reuse_prefix=False` (every turn prefills the whole conversation) and
`reuse_prefix=True` (only the tokens after the previous turn's kept cache). Prints wall time, tokens
run through the model at prefill, tokens taken from kept caches, and whether both runs sampled the
same tokens; writes benchmarks/results/prefix_reuse.json. A benchmark: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from swe_rl.agent.loop import AgentConfig
from swe_rl.policy.hf import HFPolicy
from swe_rl.recipes.rollout import run_rollouts
from swe_rl.rollouts.store import iter_trajectories
from swe_rl.sandbox.environments import require_prepared
from swe_rl.tasks.loaders import load_tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/prefix_reuse.json"))
    a = ap.parse_args()
    tasks = load_tasks("bundled")[: a.tasks]
    require_prepared(tasks, None)
    cfg = AgentConfig(max_turns=a.turns, max_new_tokens=a.new_tokens, context_length=4096, window=20,
                      prompts_dir="configs/prompts_compact")
    rows, tokens = {}, {}
    for reuse in (False, True):
        policy = HFPolicy(a.model, device="cpu", reuse_prefix=reuse)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_rollouts(tasks, policy, cfg, Path(tmp) / "traj.jsonl", samples=a.samples, batch=a.tasks * a.samples,
                         seed=7, quiet=True)
            wall = time.perf_counter() - t0
            trajs = sorted(iter_trajectories(Path(tmp) / "traj.jsonl"), key=lambda t: (t.instance_id, t.sample_index))
        name = "reuse" if reuse else "no_reuse"
        tokens[name] = [t.token_ids for t in trajs]
        rows[name] = {"wall_s": round(wall, 1), "prefill_tokens": policy.prefill_tokens, "reused_tokens": policy.reused_tokens,
                      "episodes": len(trajs), "turns": sum(len(t.turns) for t in trajs)}
        print(f"{name:>9}: {wall:7.1f} s, prefilled {policy.prefill_tokens} tokens, from kept caches {policy.reused_tokens}, "
              f"{rows[name]['turns']} turns in {len(trajs)} episodes")
    result = {"args": vars(a) | {"out": str(a.out)}, **rows, "speedup": round(rows["no_reuse"]["wall_s"] / rows["reuse"]["wall_s"], 2),
              "same_tokens": tokens["reuse"] == tokens["no_reuse"]}
    print(f"speed-up {result['speedup']}x; both runs sampled the same tokens: {result['same_tokens']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
