"""The Policy seam: token-id prompts in, sampled token ids with their log-probs out.

The agent loop and the rollout workers only see this Protocol; the backends
(hf, openai, vllm, scripted) live in sibling modules.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from swe_rl.types import Completion, SamplingParams


@runtime_checkable
class Policy(Protocol):
    """A text generator that reports exactly what it sampled.

    `generate` returns one Completion per prompt, in order. Sampling parameters are
    explicit on every call: a backend never applies a model's own generation defaults
    (a `generation_config.json` with temperature 0.7 must change nothing). A completion
    that ends on a stop token includes that token in `token_ids` (it was sampled and is
    trained on). `version` increases whenever the weights change.
    Seeds (`row_seeds`): prompt i is sampled from its own random stream, seeded `seeds[i]`, or
    `params.seed + i` without `seeds`, so what a prompt draws does not depend on the other
    prompts of its call (the rollout engine seeds each turn of each episode: a resumed or
    re-batched run samples what an uninterrupted one did).
    """

    name: str
    version: int
    tokenizer: Any  # a transformers tokenizer; None for chat-only servers

    def generate(self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None = None) -> list[Completion]: ...


def row_seeds(params: SamplingParams, n: int, seeds: Sequence[int] | None) -> list[int | None]:
    """The seed of each of a call's `n` prompts: `seeds[i]`, else `params.seed + i`, else None (unseeded)."""
    if seeds is not None:
        if len(seeds) != n:
            raise ValueError(f"generate: {len(seeds)} seeds for {n} prompts")
        return [int(s) for s in seeds]
    return [None if params.seed is None else params.seed + i for i in range(n)]
