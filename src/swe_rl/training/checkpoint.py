"""Checkpoints that survive a crash: a Hugging Face model directory plus the trainer's state.

`<run>/checkpoints/step_00000010/` is a `save_pretrained` directory (transformers and vLLM load
it as it is) with `trainer_state/` beside the weights: optimizer, scheduler, RNG, step and any
extra state. It is written under a temporary name and renamed into place, so an interrupted
write leaves the previous checkpoints intact, and it is refused up front (a clear error, not a torn
write) when the disk cannot hold it; only the last `keep_last` are kept. Under FSDP
(`dp`) rank 0 writes the same files from the gathered full state dicts (optimizer keyed by
parameter name), so a checkpoint written by N ranks loads into M ranks or one process.
"""

from __future__ import annotations

import errno
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

from swe_rl.training.distributed import SINGLE, DataParallel, full_state_dict

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


def state_bytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) state dict: about what `torch.save` / safetensors write for it."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 0


def checkpoint_bytes(model: torch.nn.Module, optimizer_state: dict[str, Any] | None, weights: dict[str, Any] | None = None) -> int:
    """About what `save_checkpoint` writes: the saved weights (a PEFT model's adapter only) and the optimizer state."""
    if weights is None:
        weights = {n: p for n, p in model.named_parameters() if p.requires_grad or not hasattr(model, "peft_config")}
    return state_bytes(weights) + state_bytes(optimizer_state)


def ensure_free_space(directory: Path, need: int) -> None:
    """Raise ENOSPC before writing `need` bytes into `directory` when its filesystem has less free."""
    free = shutil.disk_usage(directory).free
    if free < need:
        raise OSError(errno.ENOSPC, f"{directory}: {free / 2**30:.2f} GiB free, a checkpoint needs about {need / 2**30:.2f} GiB; "
                      "the previous checkpoints are intact: free space (or lower keep_last) and resume")


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
    dp: DataParallel | None = None,
) -> Path:
    """Write `<run_dir>/checkpoints/step_<step>` atomically and drop all but the newest `keep_last`.

    extra: JSON-serialisable state of the caller (pool, metrics, data order...), returned by load.
    A PEFT model saves its adapter (use `export_model` for a merged directory vLLM can serve).
    dp: under FSDP every rank calls this (the gathers are collectives); rank 0 writes, with its RNG
    state; every rank gets the path back once the checkpoint is in place, and a failed write
    raises on every rank.
    """
    dp = dp or SINGLE
    root = checkpoints_dir(run_dir)
    final = root / f"step_{step:08d}"
    sharded = dp.enabled
    weights = None
    optimizer_state = optimizer.state_dict() if optimizer is not None and not sharded else None
    if sharded:
        weights = full_state_dict(model, dp)
        if optimizer is not None:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            full = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            optimizer_state = full if dp.is_main else None

    def write() -> None:
        root.mkdir(parents=True, exist_ok=True)
        ensure_free_space(root, checkpoint_bytes(model, optimizer_state, weights))
        tmp = root / f".tmp-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            model.save_pretrained(tmp, **({"state_dict": weights} if weights is not None else {}))
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            state = tmp / STATE_DIR
            state.mkdir()
            torch.save(
                {
                    "optimizer": optimizer_state,
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

    dp.on_main(write)
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


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {path}: weights file {name} is missing")
        state.update(load_file(path / name))
    return state


def _load_weights(path: Path, model: torch.nn.Module) -> None:
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
        return
    # save_pretrained leaves tied parameters out (lm_head shares the embedding): _with_tied fills them in.
    model.load_state_dict(_with_tied(path, _read_weights(path), model))


def optimizer_param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The parameter name of each optimizer slot, in `optimizer.state_dict()`'s integer-id order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def named_optimizer_state(osd: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """An `optimizer.state_dict()` keyed by parameter name (torch.distributed.checkpoint's full format);
    one already keyed by name is returned as is. `names`: `optimizer_param_names` of the loading optimizer."""
    if all(isinstance(p, str) for g in osd["param_groups"] for p in g["params"]):
        return osd
    return {"state": {names[i]: v for i, v in osd["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in osd["param_groups"]]}


def indexed_optimizer_state(osd: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The inverse of `named_optimizer_state`: integer ids for `optimizer.load_state_dict`."""
    if all(isinstance(p, int) for g in osd["param_groups"] for p in g["params"]):
        return osd
    index = {n: i for i, n in enumerate(names)}
    missing = sorted({p for g in osd["param_groups"] for p in g["params"]} - set(index))
    if missing:
        raise ValueError(f"optimizer state for parameters the model does not have: {missing[:5]}")
    return {"state": {index[n]: v for n, v in osd["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in osd["param_groups"]]}


def _with_tied(path: Path, state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`state` plus the entries `save_pretrained` left out because they share a parameter with a saved one."""
    groups: dict[int, list[str]] = {}
    for k, v in model.state_dict(keep_vars=True).items():  # keep_vars: tied entries are one object
        groups.setdefault(id(v), []).append(k)
    out = dict(state)
    for keys in groups.values():
        have = [k for k in keys if k in state]
        for k in keys:
            if k not in out and have:
                out[k] = state[have[0]]
    missing = sorted(set(k for keys in groups.values() for k in keys) - set(out))
    if missing:
        raise ValueError(f"checkpoint {path}: weights missing for {missing[:5]}")
    unexpected = sorted(set(out) - set(k for keys in groups.values() for k in keys))
    if unexpected:
        raise ValueError(f"checkpoint {path}: weights the model does not have: {unexpected[:5]}")
    return out


def _load_sharded(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, state: dict[str, Any] | None, dp: DataParallel) -> None:
    """Rank 0 reads the full state dicts; torch.distributed.checkpoint broadcasts them into every rank's shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    weights = _with_tied(path, _read_weights(path), model) if dp.is_main else {}
    set_model_state_dict(model, weights, options=options)
    if optimizer is not None:
        osd = named_optimizer_state(state["optimizer"], optimizer_param_names(model, optimizer)) if dp.is_main else {}  # type: ignore[index]
        set_optimizer_state_dict(model, optimizer, osd, options=options)


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    restore_rng: bool = True,
    dp: DataParallel | None = None,
) -> CheckpointState:
    """Restore what is given (weights into `model`, optimizer, scheduler, RNG) and return step + extra.

    To start from a checkpoint without a model object, load it with
    `AutoModelForCausalLM.from_pretrained(path)` and pass only the optimizer and scheduler.
    dp: under FSDP every rank calls this with its sharded model (and the optimizer built on it);
    only rank 0 reads the files and restores its RNG state; step and extra are rank 0's on every rank.
    """
    path = Path(path)
    sharded = dp is not None and dp.enabled
    state: dict[str, Any] | None = None
    meta: dict[str, Any] | Exception | None = None
    if not sharded or dp.is_main:  # type: ignore[union-attr]
        meta_file = path / STATE_DIR / "state.json"
        if not meta_file.is_file():
            meta = FileNotFoundError(f"{path} is not a complete checkpoint ({STATE_DIR}/state.json missing)")
        else:
            meta = json.loads(meta_file.read_text())
            # Our own file (optimizer state, numpy RNG): not loadable with weights_only.
            state = torch.load(path / STATE_DIR / "state.pt", map_location="cpu", weights_only=False)
            if optimizer is not None and state["optimizer"] is None:
                meta = ValueError(f"checkpoint {path}: no optimizer state was saved")
    if sharded:
        meta = dp.broadcast(meta)  # type: ignore[union-attr]
    if isinstance(meta, Exception):
        raise meta  # on every rank, so none is left waiting in a collective
    assert meta is not None
    if sharded:
        if model is None:
            raise ValueError("load_checkpoint: under FSDP the sharded model is needed (its optimizer is keyed by it)")
        _load_sharded(path, model, optimizer, state, dp)  # type: ignore[arg-type]
        if scheduler is not None:
            scheduler.load_state_dict(dp.broadcast(state["scheduler"] if state else None))  # type: ignore[union-attr]
        if restore_rng and state is not None and state["rng"] is not None:
            set_rng_state(state["rng"])
        return CheckpointState(path=path, step=int(meta["step"]), extra=meta.get("extra", {}))
    assert state is not None
    if model is not None:
        _load_weights(path, model)
    if optimizer is not None:
        names = optimizer_param_names(model, optimizer) if model is not None else []
        optimizer.load_state_dict(indexed_optimizer_state(state["optimizer"], names))
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
