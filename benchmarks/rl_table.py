"""The per-iteration table of a `swe-rl rl` run, from its metrics.jsonl (issue 7's evidence).

Command (benchmarks/results/rl_smollm2.json):
  nice -n 5 .venv/bin/swe-rl rl --config configs/rl_stage1_cpu.yaml --set out=/tmp/rl_smollm2
  .venv/bin/python benchmarks/rl_table.py /tmp/rl_smollm2 --out benchmarks/results/rl_smollm2.json \
      --command "swe-rl rl --config configs/rl_stage1_cpu.yaml --set out=/tmp/rl_smollm2"
Prints a table and writes JSON: the run's config and every metric row. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from swe_rl.training.metrics_log import read_metrics

# (column title, metric key, format); None values (no update that iteration) print as "-".
COLUMNS = (
    ("it", "iteration", "d"), ("reward", "reward_mean", ".3f"), ("resolved", "resolve_rate", ".2f"),
    ("zero-adv", "zero_adv_frac", ".2f"), ("loss", "loss", ".4f"), ("grad norm", "grad_norm", ".3f"),
    ("clip lo/hi", None, ""), ("entropy", "entropy", ".2f"), ("lp gap max", "logprob_gap_max", ".1e"),
    ("turns", "turns_mean", ".2f"), ("tokens", "tokens_mean", ".0f"), ("rollout s", "rollout_s", ".0f"),
    ("train s", "train_s", ".0f"),
)


def cell(row: dict, key: str | None, fmt: str) -> str:
    if key is None:  # the two clip fractions in one column
        lo, hi = row.get("clip_frac_low"), row.get("clip_frac_high")
        return "-" if lo is None else f"{lo:.3f}/{hi:.3f}"
    v = row.get(key)
    return "-" if v is None else format(v, fmt)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, help="a `swe-rl rl` run directory")
    ap.add_argument("--out", type=Path, default=None, help="JSON to write (config, command, rows)")
    ap.add_argument("--command", default="", help="the command that produced the run, recorded in the JSON")
    a = ap.parse_args()
    rows = read_metrics(a.run / "metrics.jsonl")
    table = [[title for title, _, _ in COLUMNS]] + [[cell(r, key, fmt) for _, key, fmt in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))
    exits = sorted({k for r in rows for k in r if k.startswith("exit_")})
    for r in rows:
        print(f"iteration {r['iteration']}: " + ", ".join(f"{k[5:]} {r[k]:.2f}" for k in exits if k in r)
              + f"; generation {r.get('generation_s', 0):.0f} s, recompute {r.get('recompute_logprobs_s') or 0:.0f} s")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        config = json.loads((a.run / "config.json").read_text())
        a.out.write_text(json.dumps({"command": a.command, "config": config, "rows": rows}, indent=1))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
