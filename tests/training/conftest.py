"""Shared fixtures for the training tests: the `tiny` model (random Qwen2, SmolLM2's real tokenizer)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_path():
    from swe_rl.policy.models import resolve_model

    return resolve_model("tiny")


@pytest.fixture(scope="session")
def tokenizer(tiny_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_path)


@pytest.fixture
def tiny_model(tiny_path):
    """A fresh float32 copy per test (tests train it), with the attention implementation asked for."""
    from transformers import AutoModelForCausalLM

    def load(attn_implementation: str = "sdpa"):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32, attn_implementation=attn_implementation)

    return load
