"""Token-exact trajectories: the conversation as the exact token ids the sampler saw and produced.

The agent loop grows one `TrajectoryBuilder` per episode: sampled completions are
appended as they came out of the policy, and each observation is tokenised on its
own, from the text the chat template adds for it, so earlier turns are never
re-tokenised (DESIGN.md, "Token-exact trajectories").
"""

from __future__ import annotations

from typing import Any

from swe_rl.types import Completion

END_OF_TURN_TOKENS = ("<|im_end|>",)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """The ids that end an assistant turn: ChatML's `<|im_end|>` (when the vocabulary has it) and eos."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def end_of_turn_id(tokenizer: Any) -> int:
    """The token a well-formed assistant turn ends with: `<|im_end|>` if present, else eos."""
    vocab = tokenizer.get_vocab()
    for t in END_OF_TURN_TOKENS:
        if t in vocab:
            return vocab[t]
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has neither <|im_end|> nor an eos token: cannot end an assistant turn")
    return tokenizer.eos_token_id


class TrajectoryBuilder:
    """Accumulates `token_ids`, `loss_mask`, `sampler_logprobs` and `messages` for one episode.

    Invariants: `loss_mask[i] == 1` exactly for tokens sampled by the policy;
    `sampler_logprobs[i]` is the sampler's log-prob there and 0.0 elsewhere; `spans`
    lists each completion's [start, end) in `token_ids` (to mask, say, a format-error turn).

    After each `add_observation`, `decode(token_ids)` equals
    `apply_chat_template(messages, add_generation_prompt=True, tokenize=False)`.
    Known differences, all outside the ChatML templates used here:
    - After a final `add_completion` the assistant turn is left open: the tokens that would
      close it (`\\n`, or `<|im_end|>\\n` after a length stop) were not sampled and carry no loss,
      so they are not appended.
    - A completion that stopped on a stop token the template does not render (for example
      `<|endoftext|>` where the template closes turns with `<|im_end|>`) keeps that token,
      since it was sampled, and the template's closing text is appended after it.
    - Tokens the sampler produced need not be the tokenizer's canonical encoding of their
      text; decode equality still holds, `encode(render(messages))` may differ. This is
      the point: the trainer sees what was sampled.
    Templates that rewrite earlier turns (trim content, drop old reasoning) are refused
    with a ValueError rather than silently mis-aligned.
    """

    def __init__(self, tokenizer: Any, messages: list[dict[str, str]]) -> None:
        self.tokenizer = tokenizer
        self.messages = [dict(m) for m in messages]
        self._rendered = self._render(self.messages, add_generation_prompt=True)  # text of token_ids so far
        self.token_ids: list[int] = self._encode(self._rendered)
        self.loss_mask: list[int] = [0] * len(self.token_ids)
        self.sampler_logprobs: list[float] = [0.0] * len(self.token_ids)
        self.spans: list[tuple[int, int]] = []
        self._stop_ids = set(stop_token_ids(tokenizer))
        self._pending: list[int] | None = None  # ids of the last completion, until its turn is closed

    def prompt_ids(self) -> list[int]:
        """Everything so far: after `__init__` or `add_observation` it ends with the assistant header."""
        return list(self.token_ids)

    def add_completion(self, c: Completion) -> str:
        """Append the sampled ids (mask 1) with their log-probs; record and return the assistant text."""
        if self._pending is not None:
            raise RuntimeError("add_completion: two completions in a row without add_observation")
        if len(c.logprobs) != len(c.token_ids):
            raise ValueError(f"completion has {len(c.token_ids)} token ids but {len(c.logprobs)} logprobs")
        ids = list(c.token_ids)
        start = len(self.token_ids)
        self.token_ids += ids
        self.loss_mask += [1] * len(ids)
        self.sampler_logprobs += [float(x) for x in c.logprobs]
        self.spans.append((start, len(self.token_ids)))
        body = ids[:-1] if ids and ids[-1] in self._stop_ids else ids
        text = self._decode(body)
        self.messages.append({"role": "assistant", "content": text})
        self._pending = ids
        return text

    def add_observation(self, text: str, role: str = "user") -> None:
        """Close the assistant turn, append the observation message and the next assistant header (mask 0)."""
        if self._pending is None:
            raise RuntimeError("add_observation: no completion to answer (call add_completion first)")
        with_reply = self._render(self.messages, add_generation_prompt=False)
        self.messages.append({"role": role, "content": text})
        new = self._render(self.messages, add_generation_prompt=True)
        if not with_reply.startswith(self._rendered) or not new.startswith(with_reply):
            raise ValueError(
                "chat template is not prefix-stable (adding a message changed how earlier ones render); "
                "token-exact trajectories need a template that only appends"
            )
        reply = with_reply[len(self._rendered):]  # the template's rendering of the assistant turn
        sampled = self._decode(self._pending)
        content = self.messages[-2]["content"]
        if reply.startswith(sampled):
            closing = reply[len(sampled):]
        elif self._pending[-1:] and self._pending[-1] in self._stop_ids and reply.startswith(content):
            closing = reply[len(content):]  # stopped on a token the template does not render
        else:
            raise ValueError(
                f"chat template renders the assistant turn as {reply[:80]!r}..., which does not start with "
                f"the sampled text {sampled[:80]!r}...: the template rewrites message content"
            )
        ids = self._encode(closing + new[len(with_reply):])
        self.token_ids += ids
        self.loss_mask += [0] * len(ids)
        self.sampler_logprobs += [0.0] * len(ids)
        self._rendered = new
        self._pending = None

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
