"""Where swe-rl keeps its caches and bundled data."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
BUNDLED_TASKS = DATA_DIR / "tasks" / "bundled.jsonl"
TOOLS_DIR = PACKAGE_DIR / "agent" / "tools"
CONFIGS_DIR = PACKAGE_DIR.parent.parent / "configs"  # <repo root>/configs: YAML configs and prompt templates


def cache_dir() -> Path:
    """`$SWE_RL_CACHE`, else `$XDG_CACHE_HOME/swe-rl`, else `~/.cache/swe-rl`."""
    if env := os.environ.get("SWE_RL_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "swe-rl"
