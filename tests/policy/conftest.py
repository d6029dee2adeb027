"""Shared fixtures: the `tiny` model (built once into the swe-rl cache) and a policy over it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_dir():
    from swe_rl.policy.models import prepare_model

    return prepare_model("tiny")


@pytest.fixture(scope="session")
def tiny_policy(tiny_dir):
    from swe_rl.policy.hf import HFPolicy

    return HFPolicy(tiny_dir, device="cpu", name="tiny")


@pytest.fixture(scope="session")
def tokenizer(tiny_policy):
    return tiny_policy.tokenizer
