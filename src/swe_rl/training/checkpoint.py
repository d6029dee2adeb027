"""Checkpoints that survive a crash: a Hugging Face model directory plus the trainer's state.

`<run>/checkpoints/step_00000010/` is a `save_pretrained` directory (transformers and vLLM load
it as it is) with `trainer_state/` beside the weights: optimizer, scheduler, RNG, step and any
extra state. It is written under a temporary name and renamed into place, so an interrupted
write leaves the previous checkpoints intact; only the last `keep_last` are kept.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_DIR = "trainer_state"
_NAME = re.compile(r"^step_(\d+)$")


@dataclass
class CheckpointState:
    path: Path
    step: int
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(path: Path) -> None:
    """Flush every file and directory under `path` so the rename publishes complete data."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(
    run_dir: str | Path,
    model: torch.nn.Module,
    tokenizer: Any = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    step: int = 0,
    *,
    extra: dict[str, Any] | None = None,
    keep_last: int = 2,
    save_rng: bool = True,
) -> Path:
    """Write `<run_dir>/checkpoints/step_<step>` atomically and drop all but the newest `keep_last`.

    extra: JSON-serialisable state of the caller (pool, metrics, data order...), returned by load.
    A PEFT model saves its adapter (use `export_model` for a merged directory vLLM can serve).
    """
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        state = tmp / STATE_DIR
        state.mkdir()
        torch.save(
            {
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng_state() if save_rng else None,
            },
            state / "state.pt",
        )
        (state / "state.json").write_text(json.dumps({"step": step, "extra": extra or {}}, indent=1))
        _fsync_tree(tmp)
        if final.exists():  # re-saving a step (after a resume): swap the old one out first
            old = root / f".old-{final.name}-{time.monotonic_ns()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for path in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(path)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories of interrupted writes are ignored)."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / STATE_DIR / "state.json").is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _load_weights(path: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import load_file

    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
        return
    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {path}: weights file {name} is missing")
        state.update(load_file(path / name))
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"checkpoint {path}: weights the model does not have: {result.unexpected_keys[:5]}")
    # save_pretrained leaves tied parameters out (lm_head shares the embedding): those may be missing.
    own = model.state_dict()
    loaded = {own[k].data_ptr() for k in state}
    missing = [k for k in result.missing_keys if own[k].data_ptr() not in loaded]
    if missing:
        raise ValueError(f"checkpoint {path}: weights missing for {missing[:5]}")


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    restore_rng: bool = True,
) -> CheckpointState:
    """Restore what is given (weights into `model`, optimizer, scheduler, RNG) and return step + extra.

    To start from a checkpoint without a model object, load it with
    `AutoModelForCausalLM.from_pretrained(path)` and pass only the optimizer and scheduler.
    """
    path = Path(path)
    meta_file = path / STATE_DIR / "state.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint ({STATE_DIR}/state.json missing)")
    meta = json.loads(meta_file.read_text())
    # Our own file (optimizer state, numpy RNG): not loadable with weights_only.
    state = torch.load(path / STATE_DIR / "state.pt", map_location="cpu", weights_only=False)
    if model is not None:
        _load_weights(path, model)
    if optimizer is not None:
        if state["optimizer"] is None:
            raise ValueError(f"checkpoint {path}: no optimizer state was saved")
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        if state["scheduler"] is None:
            raise ValueError(f"checkpoint {path}: no scheduler state was saved")
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and state["rng"] is not None:
        set_rng_state(state["rng"])
    return CheckpointState(path=path, step=int(meta["step"]), extra=meta.get("extra", {}))


def export_model(model: torch.nn.Module, tokenizer: Any, out: str | Path) -> Path:
    """A plain model directory (LoRA adapters merged) for serving, written atomically like a checkpoint."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "peft_config"):
        model = model.merge_and_unload()  # folds the adapters into the base weights, in place
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _fsync_tree(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
