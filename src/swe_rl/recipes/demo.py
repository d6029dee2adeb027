"""`swe-rl demo`, the embedded default: `swe-rl run configs/pipeline/demo.yaml` on the bundled tasks.

1. prepare the bundled tasks' environments (the only step that uses the network; cached);
2. the whole pipeline (recipes/pipeline.py) with SmolLM2-135M at toy scale: warm start by behaviour
   cloning -> base evaluation -> RFT -> RL stage 1 -> RL stage 2 -> held-out evaluations -> report;
3. the summary table and the paths of the Markdown report and the HTML trajectory viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from swe_rl.paths import CONFIGS_DIR, cache_dir

DEMO_CONFIG = CONFIGS_DIR / "pipeline" / "demo.yaml"


def main(out: Path, cache: Path | None = None, overrides: Sequence[str] = ()) -> int:
    from rich.console import Console

    from swe_rl.config import ConfigError, load_config
    from swe_rl.recipes.pipeline import PipelineConfig, PipelineError, print_report, run_pipeline
    from swe_rl.recipes.rft import RFTError
    from swe_rl.sandbox.environments import prepare_cli

    console = Console()
    cache = Path(cache) if cache is not None else cache_dir()
    try:  # a bad override is reported before the (slow, first-time) preparation
        cfg = load_config(PipelineConfig, DEMO_CONFIG, [f"run_dir={out}", f"cache_dir={cache}", *overrides])
    except ConfigError as e:
        raise SystemExit(f"swe-rl demo: {e}") from None
    console.rule("prepare the bundled tasks")
    if prepare_cli("bundled", cache=cache, skip_invalid=False, jobs=2) != 0:
        console.print("[red]preparing the bundled tasks failed; see the log paths above[/]")
        return 1
    console.rule(f"swe-rl run {DEMO_CONFIG.relative_to(CONFIGS_DIR.parent)} (run directory {out})")
    try:
        report = run_pipeline(cfg)
    except (PipelineError, RFTError) as e:
        raise SystemExit(f"swe-rl demo: {e}") from None
    print_report(report)
    return 0
