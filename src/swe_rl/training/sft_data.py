"""SFT examples from the kept RFT trajectories (PAPER.md section 4; issue 6, step `build`).

An example is the trajectory's own token ids with the prompt prefix (every token before the
first sampled assistant token) swapped for a prompt rendered without the one-shot
demonstration, and a loss mask on sampled assistant tokens minus the format-error turns
(kept as context) and, when asked, minus the turns whose edit the tools refused. Examples are
stored as JSONL so a training run can be repeated exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from swe_rl.agent.observation import REJECTED_EDIT
from swe_rl.types import Trajectory, Turn

EXAMPLE_SCHEMA_VERSION = 1
PromptMessages = Callable[[Trajectory], list[dict[str, str]]]


@dataclass(frozen=True)
class SFTExample:
    """One training sequence. `loss_mask[i] == 1`: token i is a target (predicted from tokens < i)."""

    input_ids: tuple[int, ...]
    loss_mask: tuple[int, ...]
    instance_id: str = ""
    sample_index: int = 0

    def __post_init__(self) -> None:
        where = f"example {self.instance_id}#{self.sample_index}"
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError(f"{where}: {len(self.input_ids)} input_ids but {len(self.loss_mask)} loss_mask entries")
        if not self.input_ids:
            raise ValueError(f"{where}: empty")
        if any(m not in (0, 1) for m in self.loss_mask):
            raise ValueError(f"{where}: loss_mask holds values other than 0 and 1")
        if self.loss_mask[0]:
            # The first token has no context to be predicted from; packing relies on this too.
            raise ValueError(f"{where}: loss_mask[0] is 1 (the first token cannot be a target)")

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_loss_tokens(self) -> int:
        return sum(self.loss_mask)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": EXAMPLE_SCHEMA_VERSION,
            "instance_id": self.instance_id,
            "sample_index": self.sample_index,
            "input_ids": list(self.input_ids),
            "loss_mask": list(self.loss_mask),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SFTExample:
        if d.get("schema_version") != EXAMPLE_SCHEMA_VERSION:
            raise ValueError(f"example {d.get('instance_id')!r}: schema_version {d.get('schema_version')} is not {EXAMPLE_SCHEMA_VERSION}")
        return cls(tuple(d["input_ids"]), tuple(d["loss_mask"]), d.get("instance_id", ""), d.get("sample_index", 0))


def _where(traj: Trajectory) -> str:
    return f"trajectory {traj.instance_id}#{traj.sample_index}"


def assistant_runs(loss_mask: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of each contiguous run of 1s: the i-th run is the i-th assistant turn's completion."""
    runs, start = [], None
    for i, m in enumerate(loss_mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(loss_mask)))
    return runs


def sft_loss_mask(traj: Trajectory, *, mask_rejected_edits: bool = False) -> list[int]:
    """The trajectory's loss mask with every format-error turn zeroed (PAPER.md: masked out, kept as context).

    mask_rejected_edits: also zero each turn whose edit the tools refused (a syntax error; the file is
    unchanged), so the example teaches what came after the refusal, not the refused text.
    """
    runs = assistant_runs(traj.loss_mask)
    if len(runs) != len(traj.turns):
        raise ValueError(
            f"{_where(traj)}: loss_mask has {len(runs)} runs of assistant tokens but the trajectory has "
            f"{len(traj.turns)} turns (each turn's completion must be exactly one run)"
        )
    mask = list(traj.loss_mask)
    for (start, end), turn in zip(runs, traj.turns):
        if turn.format_error or (mask_rejected_edits and rejected_edit(turn)):
            mask[start:end] = [0] * (end - start)
    return mask


def rejected_edit(turn: Turn) -> bool:
    """The tools refused this turn's change (it would have broken Python syntax): nothing was written."""
    return turn.observation.startswith(REJECTED_EDIT)


def prompt_length(traj: Trajectory) -> int:
    """Number of tokens before the first sampled assistant token (system, user, first assistant header)."""
    try:
        return traj.loss_mask.index(1)
    except ValueError:
        raise ValueError(f"{_where(traj)}: loss_mask has no assistant token") from None


def rebase_prefix(traj: Trajectory, new_prefix_ids: Sequence[int], loss_mask: Sequence[int] | None = None) -> SFTExample:
    """Replace the prompt prefix by `new_prefix_ids`; every token from the first completion on is kept exactly."""
    n = prompt_length(traj)
    mask = list(traj.loss_mask if loss_mask is None else loss_mask)
    if len(mask) != len(traj.token_ids):
        raise ValueError(f"{_where(traj)}: {len(traj.token_ids)} token_ids but {len(mask)} loss_mask entries")
    if not new_prefix_ids:
        raise ValueError(f"{_where(traj)}: the new prompt prefix is empty")
    return SFTExample(
        input_ids=tuple(new_prefix_ids) + tuple(traj.token_ids[n:]),
        loss_mask=(0,) * len(new_prefix_ids) + tuple(mask[n:]),
        instance_id=traj.instance_id,
        sample_index=traj.sample_index,
    )


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` plus the assistant header, rendered exactly as the agent renders a first prompt."""
    from swe_rl.policy.chat import TrajectoryBuilder

    return TrajectoryBuilder(tokenizer, messages).prompt_ids()


def demonstration_block(demonstration: str) -> str:
    """The text the agent puts in front of the instance prompt for `demonstration` (agent/prompts.py)."""
    from swe_rl.agent.prompts import load_template, render

    return render(load_template("demonstration.txt"), demonstration=demonstration.strip()).lstrip()


def without_demonstration(block: str) -> PromptMessages:
    """A `prompt_messages` function: the trajectory's system and first user message, `block` cut from the user's start.

    `block` is `demonstration_block(demo)`; the agent builds the user message as `(block + instance).strip()`,
    so cutting it and stripping gives exactly the instance prompt rendered without a demonstration.
    """

    def prompt_messages(traj: Trajectory) -> list[dict[str, str]]:
        if len(traj.messages) < 2 or [m["role"] for m in traj.messages[:2]] != ["system", "user"]:
            raise ValueError(f"{_where(traj)}: messages do not start with a system and a user message")
        system, user = traj.messages[0], traj.messages[1]
        if not user["content"].startswith(block):
            raise ValueError(f"{_where(traj)}: the first user message does not start with the demonstration block")
        return [dict(system), {"role": "user", "content": user["content"][len(block):].strip()}]

    return prompt_messages


def _check_prefix(traj: Trajectory, tokenizer: Any) -> None:
    """The stored prefix must be the template rendering of the stored first messages, else swapping it is unsound."""
    expected = prompt_ids(tokenizer, [dict(m) for m in traj.messages[:2]])
    actual = list(traj.token_ids[: prompt_length(traj)])
    if expected != actual:
        first = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))
        raise ValueError(
            f"{_where(traj)}: the prompt prefix ({len(actual)} tokens) is not the chat-template rendering of its "
            f"first two messages ({len(expected)} tokens); first difference at token {first}"
        )


def build_example(traj: Trajectory, tokenizer: Any = None, prompt_messages: PromptMessages | None = None, *,
                  check_prefix: bool = True, mask_rejected_edits: bool = False) -> SFTExample:
    """One SFT example; with `prompt_messages`, the prefix is re-rendered from the messages it returns."""
    mask = sft_loss_mask(traj, mask_rejected_edits=mask_rejected_edits)
    if prompt_messages is None:
        return rebase_prefix(traj, traj.token_ids[: prompt_length(traj)], mask)
    if tokenizer is None:
        raise ValueError("build_example: prompt_messages needs a tokenizer to render the new prefix")
    if check_prefix:
        _check_prefix(traj, tokenizer)
    return rebase_prefix(traj, prompt_ids(tokenizer, prompt_messages(traj)), mask)


def build_examples(
    trajectories: Iterable[Trajectory],
    tokenizer: Any = None,
    *,
    prompt_messages: PromptMessages | None = None,
    check_prefix: bool = True,
    mask_rejected_edits: bool = False,
) -> list[SFTExample]:
    """SFT examples from kept trajectories (filtering is the caller's: resolved, not ended at a limit).

    prompt_messages: maps a trajectory to the [system, user] messages of its new prompt, e.g.
      `without_demonstration(demonstration_block(demo))`; None keeps the sampled prompt.
    check_prefix: verify each stored prefix is the template rendering of the stored messages first.
    mask_rejected_edits: mask the turns whose edit the tools refused, as format-error turns are (`sft_loss_mask`).
    Examples with no loss token left (every turn a format error) are dropped.
    """
    examples = [build_example(t, tokenizer, prompt_messages, check_prefix=check_prefix, mask_rejected_edits=mask_rejected_edits)
                for t in trajectories]
    return [e for e in examples if e.num_loss_tokens > 0]


def write_examples(path: str | Path, examples: Iterable[SFTExample]) -> int:
    """Write JSONL (one example per line) through a temporary file, so a crash leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w") as f:
        for e in examples:
            f.write(json.dumps(e.to_dict()) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_examples(path: str | Path) -> list[SFTExample]:
    path = Path(path)
    out = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(SFTExample.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: invalid SFT example: {e}") from None
    return out
