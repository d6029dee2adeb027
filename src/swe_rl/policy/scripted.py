"""ScriptedPolicy: a deterministic policy that answers with given assistant texts.

It drives end-to-end tests of the agent loop and produces demonstration
trajectories (for example from a task's gold patch) through the same token path
as a sampled model: texts are tokenised, closed with the end-of-turn token.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from swe_rl.policy.chat import end_of_turn_id
from swe_rl.types import Completion, SamplingParams

# Emitted once the script is exhausted: a well-formed turn that ends the episode.
FALLBACK_ACTION = "The scripted actions are exhausted, so I submit what I have.\n\n```\nsubmit\n```"


class ScriptedPolicy:
    """Emits `actions[k]` as the k-th assistant turn of each conversation.

    k is read from the prompt itself (the number of assistant headers already in it,
    minus the one the prompt ends with), so a batch may mix episodes at different
    turns and the policy keeps no per-episode state. `actions` may also be a callable
    `(k, prompt_text) -> str`. Past the end of a list, `fallback` (default: a `submit`
    turn) is emitted. Each completion is the text's tokens plus the end-of-turn token,
    with log-probs 0.0; beyond `max_new_tokens` it is cut and finishes by "length".
    """

    def __init__(
        self,
        tokenizer: Any,
        actions: Sequence[str] | Callable[[int, str], str],
        *,
        fallback: str = FALLBACK_ACTION,
        name: str = "scripted",
    ) -> None:
        self.tokenizer = tokenizer
        self.actions = actions if callable(actions) else list(actions)
        self.fallback = fallback
        self.name = name
        self.version = 0
        self._eot = end_of_turn_id(tokenizer)
        probe = [{"role": "user", "content": "x"}]
        closed = tokenizer.apply_chat_template(probe, tokenize=False)
        header = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)[len(closed):]
        self._header = tokenizer.encode(header, add_special_tokens=False)  # e.g. "<|im_start|>assistant\n"

    def turn_index(self, prompt: list[int]) -> int:
        """How many assistant turns the prompt already holds (0 for the first)."""
        h, n = self._header, len(self._header)
        count = sum(1 for i in range(len(prompt) - n + 1) if prompt[i : i + n] == h)
        return max(count - 1, 0)

    def action(self, k: int, prompt_text: str) -> str:
        if callable(self.actions):
            return self.actions(k, prompt_text)
        return self.actions[k] if k < len(self.actions) else self.fallback

    def generate(self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None = None) -> list[Completion]:
        out = []
        for prompt in prompts:
            text = self.action(self.turn_index(prompt), self.tokenizer.decode(prompt, skip_special_tokens=False))
            ids = self.tokenizer.encode(text, add_special_tokens=False) + [self._eot]
            finish = "stop"
            if len(ids) > params.max_new_tokens:
                ids, finish = ids[: params.max_new_tokens], "length"
            decoded = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            out.append(Completion(tuple(ids), (0.0,) * len(ids), finish, decoded))  # type: ignore[arg-type]
        return out
