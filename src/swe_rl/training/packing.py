"""Sequence packing: many examples per row, none attending to another (issue 6, `train`).

Rows are filled first-fit decreasing. Position ids restart at 0 for each example; for
`sdpa`/`eager` attention an explicit block-diagonal causal 4D mask keeps examples apart, for
flash attention the real tokens are flattened into one row and the varlen kernel gets the
sequence boundaries (transformers derives them from the restarting position ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

FLASH = ("flash_attention_2", "flash_attention_3")


class Packable(Protocol):
    input_ids: Sequence[int]
    loss_mask: Sequence[int]


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of at most `capacity` tokens (longest first, first bin that fits)."""
    too_long = [i for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        raise ValueError(f"packing: {len(too_long)} examples are longer than the row length {capacity} (first: #{too_long[0]}, {lengths[too_long[0]]} tokens)")
    bins: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for b, room in enumerate(free):
            if lengths[i] <= room:
                bins[b].append(i)
                free[b] -= lengths[i]
                break
        else:
            bins.append([i])
            free.append(capacity - lengths[i])
    return bins


@dataclass
class PackedBatch:
    """Examples laid out in rows. Per-token tensors are [R, L]; `spans[k]` = (row, start, length) of example k."""

    input_ids: torch.Tensor  # [R, L] long, pad_id on padding
    position_ids: torch.Tensor  # [R, L] long, restarting at 0 per example (and per padding run)
    seq_ids: torch.Tensor  # [R, L] long, index k of the example in this batch; -1 on padding
    loss_mask: torch.Tensor  # [R, L] float, 1 where the token is a target
    spans: list[tuple[int, int, int]]

    @property
    def num_real_tokens(self) -> int:
        return int((self.seq_ids >= 0).sum())

    @property
    def num_tokens(self) -> int:
        return self.input_ids.numel()

    @property
    def efficiency(self) -> float:
        """Real tokens / processed tokens (1.0 = no padding)."""
        return self.num_real_tokens / max(self.num_tokens, 1)

    def to(self, device: torch.device | str) -> PackedBatch:
        return PackedBatch(*(t.to(device) for t in (self.input_ids, self.position_ids, self.seq_ids, self.loss_mask)), self.spans)

    def unpack(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Per-example slices of a [R, L] tensor, in the batch's example order."""
        return [values[r, s : s + n] for r, s, n in self.spans]


def collate(examples: Sequence[Packable], rows: Sequence[Sequence[int]], *, length: int | None = None, pad_id: int = 0) -> PackedBatch:
    """Lay out `examples[i]` for i in each row; rows are padded to `length` (default: the longest row)."""
    row_lens = [sum(len(examples[i].input_ids) for i in row) for row in rows]
    L = max(row_lens) if length is None else length
    if max(row_lens) > L:
        raise ValueError(f"collate: a row holds {max(row_lens)} tokens, more than the length {L}")
    R = len(rows)
    input_ids = torch.full((R, L), pad_id, dtype=torch.long)
    # Padding gets its own increasing positions: a run of its own, never a continuation of an example.
    position_ids = torch.arange(L, dtype=torch.long).repeat(R, 1)
    seq_ids = torch.full((R, L), -1, dtype=torch.long)
    loss_mask = torch.zeros((R, L), dtype=torch.float32)
    spans: list[tuple[int, int, int]] = []
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            ex = examples[i]
            n = len(ex.input_ids)
            if ex.loss_mask[0]:
                raise ValueError(f"collate: example #{i} has loss on its first token (it has no context)")
            input_ids[r, start : start + n] = torch.tensor(ex.input_ids, dtype=torch.long)
            position_ids[r, start : start + n] = torch.arange(n)
            seq_ids[r, start : start + n] = len(spans)
            loss_mask[r, start : start + n] = torch.tensor(ex.loss_mask, dtype=torch.float32)
            spans.append((r, start, n))
            start += n
        position_ids[r, start:] = torch.arange(L - start)
    return PackedBatch(input_ids, position_ids, seq_ids, loss_mask, spans)


def pack(examples: Sequence[Packable], row_len: int, *, pad_id: int = 0, length: int | None = None) -> PackedBatch:
    """First-fit-decreasing packing of all `examples` into rows of at most `row_len` tokens, as one batch."""
    return collate(examples, first_fit_decreasing([len(e.input_ids) for e in examples], row_len), length=length, pad_id=pad_id)


def block_causal_mask(seq_ids: torch.Tensor) -> torch.Tensor:
    """[R, 1, L, L] bool, True where query q may attend key k: same example and k <= q.

    Padding tokens attend to themselves only, so no query row is empty (an all-masked row is NaN in softmax).
    """
    L = seq_ids.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=seq_ids.device).tril()
    same = seq_ids[:, :, None] == seq_ids[:, None, :]
    same &= (seq_ids[:, :, None] >= 0) | torch.eye(L, dtype=torch.bool, device=seq_ids.device)
    return (same & causal)[:, None]


def attention_inputs(batch: PackedBatch, attn_implementation: str, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Model keyword arguments that keep the examples of `batch` apart, for sdpa or eager attention."""
    if attn_implementation in FLASH:
        raise ValueError("attention_inputs: flash attention takes the flattened path (see packed_forward_inputs)")
    mask = block_causal_mask(batch.seq_ids)
    if attn_implementation == "eager":  # eager adds the mask to the scores
        mask = torch.where(mask, torch.zeros((), dtype=dtype, device=mask.device), torch.finfo(dtype).min)
    elif attn_implementation != "sdpa":
        raise ValueError(f"packing: attention implementation {attn_implementation!r} is not supported (sdpa, eager, flash_attention_2/3)")
    return {"input_ids": batch.input_ids, "position_ids": batch.position_ids, "attention_mask": mask}


def flash_inputs(batch: PackedBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Real tokens as one [1, N] row for the varlen kernel, plus the boolean [R, L] selector to scatter back."""
    real = batch.seq_ids >= 0
    lengths = torch.tensor([n for _, _, n in batch.spans], dtype=torch.int32, device=batch.input_ids.device)
    cu = torch.nn.functional.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
    # Spans are in row-major order, so flattening `real` visits the examples in span order.
    inputs = {
        "input_ids": batch.input_ids[real][None],
        "position_ids": batch.position_ids[real][None],
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
        "max_length_q": int(lengths.max()),
        "max_length_k": int(lengths.max()),
    }
    return inputs, real
