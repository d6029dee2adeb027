"""The Policy seam: token-id prompts in, sampled token ids with their log-probs out.

The agent loop and the rollout workers only see this Protocol; the backends
(hf, openai, vllm, scripted) live in sibling modules.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from swe_rl.types import Completion, SamplingParams


@runtime_checkable
class Policy(Protocol):
    """A text generator that reports exactly what it sampled.

    `generate` returns one Completion per prompt, in order. Sampling parameters are
    explicit on every call: a backend never applies a model's own generation defaults
    (a `generation_config.json` with temperature 0.7 must change nothing). A completion
    that ends on a stop token includes that token in `token_ids` (it was sampled and is
    trained on). `version` increases whenever the weights change.
    """

    name: str
    version: int
    tokenizer: Any  # a transformers tokenizer; None for chat-only servers

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]: ...
