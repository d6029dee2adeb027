"""Wall time of the learning proof's episodes: one batch of held-out episodes with the RFT model.

    .venv/bin/python benchmarks/rollout_speed.py [--run runs/learning_proof] [--episodes 16] [--samples 1] [--batch 8] [--label NAME]

Needs a finished learning-proof run (its RFT model and held-out tasks). The scaffold, batch and seed
are the proof's (benchmarks/learning_proof.py AGENT, BATCH; `--batch` tries another), so the time is what its evaluations spend
per episode. To compare two versions of swe-rl, run this file from one checkout with
`PYTHONPATH=<other checkout>/src`: `same_tokens_digest` says whether both sampled the same tokens.
Appends a row to benchmarks/results/rollout_speed.json. A benchmark: nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_proof import AGENT, BATCH  # noqa: E402

import swe_rl  # noqa: E402
from swe_rl.policy.hf import HFPolicy  # noqa: E402
from swe_rl.recipes.rollout import run_rollouts  # noqa: E402
from swe_rl.rollouts.store import iter_trajectories  # noqa: E402
from swe_rl.tasks.loaders import load_tasks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/learning_proof"))
    ap.add_argument("--episodes", type=int, default=16, help="the first N held-out tasks")
    ap.add_argument("--samples", type=int, default=1, help="episodes of each of those tasks")
    ap.add_argument("--batch", type=int, default=BATCH, help="episodes generating together (the proof's BATCH)")
    ap.add_argument("--label", default="", help="a name for this row (e.g. the commit)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/rollout_speed.json"))
    a = ap.parse_args()
    model = a.run / "rft" / "train" / "model"
    tasks = load_tasks(a.run / "tasks" / "heldout.jsonl")[: a.episodes]
    policy = HFPolicy(model, device="cpu", name="rft")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_rollouts(tasks, policy, AGENT, Path(tmp) / "traj.jsonl", samples=a.samples, batch=a.batch, seed=1234, quiet=True)
        wall = time.perf_counter() - t0
        trajs = sorted(iter_trajectories(Path(tmp) / "traj.jsonl"), key=lambda t: (t.instance_id, t.sample_index))
    failed = [t for t in trajs if t.exit_reason == "sandbox_error"]
    if failed or not trajs:  # a timing of episodes that never ran is no timing
        raise SystemExit(f"{len(failed)} of {len(tasks) * a.samples} episodes failed to start"
                         + (f", e.g. {failed[0].error}" if failed else "") + " (SWE_RL_CACHE: the proof's environments?)")
    digest = hashlib.sha256(json.dumps([list(t.token_ids) for t in trajs]).encode()).hexdigest()[:16]
    row = {"label": a.label, "swe_rl": str(Path(swe_rl.__file__).parent), "batch": a.batch, "episodes": len(trajs), "wall_s": round(wall, 1),
           "s_per_episode": round(wall / len(trajs), 2), "prefill_tokens": policy.prefill_tokens,
           "reused_tokens": policy.reused_tokens, "tokens": sum(len(t.token_ids) for t in trajs),
           "sampled_tokens": sum(sum(t.loss_mask) for t in trajs), "same_tokens_digest": digest}
    print(json.dumps(row))
    rows = json.loads(a.out.read_text()) if a.out.exists() else []
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rows + [row], indent=1))


if __name__ == "__main__":
    main()
