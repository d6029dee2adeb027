"""YaRN rope scaling for longer contexts (PAPER.md section 5, stage 2: 131k tokens, factor 4).

Applied to the model object in place: its config records the scaling (so a saved checkpoint,
loaded by transformers or vLLM, uses the same positions) and its rotary embedding is rebuilt.
The trainer and the in-process sampler share that object, so both see identical positions.
"""

from __future__ import annotations

import torch


def yarn_factor(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("factor", 1.0)) if params.get("rope_type") == "yarn" else 1.0


def apply_yarn(model: torch.nn.Module, factor: float) -> bool:
    """Scale the model's rope with YaRN by `factor` over its original positions; True when something changed.

    factor 1.0 on an unscaled model is a no-op; scaling is never undone (a stage-2 model keeps it).
    """
    cfg = model.config
    if factor == yarn_factor(cfg):
        return False
    if factor < 1.0 or (factor == 1.0 and yarn_factor(cfg) != 1.0):
        raise ValueError(f"apply_yarn: factor {factor} would shrink the model's positions (now x{yarn_factor(cfg)})")
    params = dict(getattr(cfg, "rope_parameters", None) or {})
    if "rope_theta" not in params or params.get("rope_type", "default") not in ("default", "yarn"):
        raise ValueError(f"apply_yarn: {type(model).__name__} has rope parameters {params}; only default rope can be YaRN-scaled")
    original = int(params.get("original_max_position_embeddings", cfg.max_position_embeddings))
    cfg.rope_parameters = {"rope_type": "yarn", "rope_theta": params["rope_theta"], "factor": float(factor),
                           "original_max_position_embeddings": original}
    cfg.max_position_embeddings = int(original * factor)
    rotaries = [(name, mod) for name, mod in model.named_modules() if name.split(".")[-1] == "rotary_emb"]
    if not rotaries:
        raise ValueError(f"apply_yarn: {type(model).__name__} has no `rotary_emb` module to rebuild")
    for name, mod in rotaries:
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        device = mod.inv_freq.device
        setattr(parent, name.split(".")[-1], type(mod)(config=cfg).to(device))
    return True
