"""VLLMPolicy: its config and weight naming everywhere; the engine itself only where vLLM and a CUDA GPU exist."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from swe_rl.policy.vllm import VLLMConfig, VLLMPolicy, vllm_weight_name, vllm_weights

HAS_VLLM_GPU = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def test_config_defaults_ignore_the_models_generation_config():
    kw = VLLMConfig().engine_kwargs()
    assert kw["generation_config"] == "vllm" and kw["logprobs_mode"] == "processed_logprobs"
    assert kw["enable_sleep_mode"] is True and kw["dtype"] == "bfloat16"
    assert "max_model_len" not in kw  # 0 = the model's own
    assert VLLMConfig(max_model_len=4096, sleep=False).engine_kwargs()["max_model_len"] == 4096
    assert VLLMConfig().in_process and not VLLMConfig(device="cuda:1").in_process


@pytest.mark.parametrize("bad, field", [
    ({"gpu_memory_utilization": 0.0}, "gpu_memory_utilization"),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ({"sleep_level": 3}, "sleep_level"),
    ({"device": "1"}, "device"),
    ({"device": "cpu"}, "device"),
    ({"max_model_len": -1}, "max_model_len"),
    ({"dtype": "fp8"}, "dtype"),
])
def test_config_rejects_bad_values_naming_the_field(bad, field):
    with pytest.raises(ValueError, match=f"vllm.{field}"):
        VLLMConfig(**bad)


def test_config_loads_from_yaml_overrides():
    from swe_rl.config import load_config

    cfg = load_config(VLLMConfig, None, ["gpu_memory_utilization=0.5", "device=cuda:1", "sleep=false"])
    assert cfg == VLLMConfig(gpu_memory_utilization=0.5, device="cuda:1", sleep=False)


def test_weight_names_of_wrapped_trainers_are_the_checkpoints_names(tiny_dir):
    """What the engine is sent must be named as in model.safetensors, the file vLLM loaded at start-up."""
    from safetensors import safe_open
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
    from transformers import AutoModelForCausalLM

    with safe_open(str(tiny_dir / "model.safetensors"), framework="pt") as f:
        on_disk = set(f.keys())
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    for i, layer in enumerate(model.model.layers):
        model.model.layers[i] = checkpoint_wrapper(layer)
    wrapped = torch.compile(model)  # adds `_orig_mod.`; nothing is compiled until it runs
    raw = list(wrapped.named_parameters())  # state_dict() hides the checkpoint wrapper's prefix; parameters do not
    assert any("_checkpoint_wrapped_module" in k for k, _ in raw) and all(k.startswith("_orig_mod.") for k, _ in raw)
    sent = dict(vllm_weights(raw, dtype=torch.bfloat16))
    assert set(sent) == on_disk
    assert all(t.dtype == torch.bfloat16 for t in sent.values())
    name = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(sent[name], model.state_dict()[name].to(torch.bfloat16).detach().reshape(sent[name].shape))


def test_lora_weights_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="merge the adapter"):
        vllm_weight_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_without_vllm_the_error_says_how_to_install_it():
    with pytest.raises(ImportError, match=r"swe-rl\[vllm\]"):
        VLLMPolicy("tiny")


# ---------------------------------------------------------------- GPU only


@pytest.fixture(scope="module")
def engine(tiny_dir):
    if not HAS_VLLM_GPU:
        pytest.skip("needs vLLM and a CUDA GPU")
    return VLLMPolicy(tiny_dir, VLLMConfig(dtype="float32", gpu_memory_utilization=0.3, enforce_eager=True))


def _prompts(tok):
    from swe_rl.policy.chat import TrajectoryBuilder

    return [TrajectoryBuilder(tok, [{"role": "user", "content": "x" * i}]).prompt_ids() for i in range(1, 5)]


def _max_gap(model, prompts, completions) -> float:
    from swe_rl.policy.logprobs import token_logprobs

    gaps = []
    for p, c in zip(prompts, completions):
        ref = token_logprobs(model, p + list(c.token_ids))[len(p):]
        gaps += [abs(a - b) for a, b in zip(ref, c.logprobs)]
    return max(gaps)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM_GPU, reason="needs vLLM and a CUDA GPU")
def test_vllm_samples_token_exact_completions(engine, tiny_dir):
    from swe_rl.policy.models import load_model
    from swe_rl.types import SamplingParams

    prompts = _prompts(engine.tokenizer)
    out = engine.generate(prompts, SamplingParams(max_new_tokens=16, seed=0))
    model, _ = load_model(tiny_dir, device="cuda")
    for c in out:
        assert len(c.token_ids) == len(c.logprobs) > 0
        assert (c.finish_reason == "stop") == (c.token_ids[-1] in engine.stop_token_ids)
    assert _max_gap(model, prompts, out) < 1e-2


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM_GPU, reason="needs vLLM and a CUDA GPU")
def test_update_weights_after_sleep_samples_from_the_new_weights(engine, tiny_dir):
    """Sleep (GPU memory freed) -> push changed weights -> the sampler's log-probs are the new model's."""
    from swe_rl.policy.models import load_model
    from swe_rl.types import SamplingParams

    model, _ = load_model(tiny_dir, device="cuda")
    with torch.no_grad():
        model.lm_head.weight.mul_(3.0)  # a sharper distribution: log-probs change everywhere
    free_before = torch.cuda.mem_get_info()[0]
    engine.sleep()
    assert engine.asleep and torch.cuda.mem_get_info()[0] > free_before
    version = engine.version
    engine.update_weights(model.state_dict())
    assert engine.version == version + 1 and not engine.asleep
    prompts = _prompts(engine.tokenizer)
    out = engine.generate(prompts, SamplingParams(max_new_tokens=16, seed=1))
    assert _max_gap(model, prompts, out) < 1e-2


# ---------------------------------------------------------------- the RL recipe's wiring (CPU; sync_policy: tests/recipes/test_rl.py)


def test_rl_config_takes_the_vllm_sampler_and_rejects_others():
    from swe_rl.config import ConfigError, load_config
    from swe_rl.recipes.rl import RLConfig

    cfg = load_config(RLConfig, None, ["sampler=vllm", "vllm.gpu_memory_utilization=0.5"])
    assert cfg.sampler == "vllm" and cfg.vllm.gpu_memory_utilization == 0.5
    with pytest.raises((ValueError, ConfigError), match="sampler"):
        load_config(RLConfig, None, ["sampler=sglang"])
    with pytest.raises((ValueError, ConfigError), match="vllm.sleep_level"):
        load_config(RLConfig, None, ["vllm.sleep_level=5"])
