"""VLLMPolicy: only where vLLM and a CUDA GPU exist."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None or not torch.cuda.is_available(), reason="needs vLLM and a CUDA GPU"
    ),
]


def test_vllm_samples_token_exact_completions(tiny_dir):
    from swe_rl.policy.chat import TrajectoryBuilder
    from swe_rl.policy.logprobs import token_logprobs
    from swe_rl.policy.models import load_model
    from swe_rl.policy.vllm import VLLMPolicy
    from swe_rl.types import SamplingParams

    policy = VLLMPolicy(tiny_dir, dtype="float32", gpu_memory_utilization=0.3, enforce_eager=True)
    tok = policy.tokenizer
    prompts = [TrajectoryBuilder(tok, [{"role": "user", "content": "x" * i}]).prompt_ids() for i in range(1, 5)]
    out = policy.generate(prompts, SamplingParams(max_new_tokens=16, seed=0))
    model, _ = load_model(tiny_dir, device="cuda")
    for p, c in zip(prompts, out):
        assert len(c.token_ids) == len(c.logprobs) > 0
        assert (c.finish_reason == "stop") == (c.token_ids[-1] in policy.stop_token_ids)
        ref = token_logprobs(model, p + list(c.token_ids))[len(p):]
        assert max(abs(a - b) for a, b in zip(ref, c.logprobs)) < 1e-2
