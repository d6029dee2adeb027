"""Shared fixtures of the agent tests: a real tokenizer, the tiny real task, sandboxes with the tools mounted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from swe_rl.paths import TOOLS_DIR
from swe_rl.types import Completion
from tests.rewards.conftest import TinyRepo

TOOLS_MOUNT = "/opt/swe-rl/tools"


@pytest.fixture(scope="session")
def tokenizer():
    """The tokenizer (SmolLM2's, ChatML) of the project's `tiny` model, built on first use."""
    from transformers import AutoTokenizer

    from swe_rl.policy.models import prepare_model

    return AutoTokenizer.from_pretrained(prepare_model("tiny"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyRepo:
    """A real git repository with a bug, its gold patch and the tests that reveal it (tests/rewards)."""
    return TinyRepo(tmp_path_factory.mktemp("agent-tiny"))


@pytest.fixture
def agent_sandbox(tiny):
    """A real LocalSandbox on a fresh clone of the tiny task's base commit, tools on PATH, pytest in /venv."""
    from swe_rl.sandbox.local import LocalSandbox

    with LocalSandbox(tiny.clone(), venv=Path(sys.prefix), ro_binds={str(TOOLS_DIR): TOOLS_MOUNT},
                      path_prepend=[TOOLS_MOUNT], owns_workspace=True) as sb:
        yield sb


def completion(tokenizer, text: str) -> Completion:
    """`text` as a sampled assistant turn: its token ids, closed by `<|im_end|>`, log-probs 0.0."""
    ids = tuple(tokenizer.encode(text, add_special_tokens=False)) + (tokenizer.convert_tokens_to_ids("<|im_end|>"),)
    return Completion(token_ids=ids, logprobs=(0.0,) * len(ids), finish_reason="stop", text=text)


def scripted_policy(tokenizer, actions: list[str]):
    """policy/'s ScriptedPolicy (written concurrently); the test is skipped until it exists."""
    scripted = pytest.importorskip("swe_rl.policy.scripted", reason="swe_rl.policy.scripted.ScriptedPolicy not written yet")
    return scripted.ScriptedPolicy(tokenizer, actions)
