from __future__ import annotations

import pytest
import torch

from swe_rl.policy.logprobs import token_logprobs
from swe_rl.training.logprobs import masked_nll_sum, packed_token_logprobs
from swe_rl.training.packing import block_causal_mask, collate, first_fit_decreasing, pack
from swe_rl.training.sft_data import SFTExample


def _examples(lengths, seed=0, vocab=49152):
    g = torch.Generator().manual_seed(seed)
    out = []
    for k, n in enumerate(lengths):
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        mask = [0] * (n // 3) + [1] * (n - n // 3)  # prompt, then "assistant" tokens
        mask[n // 2] = 0  # an observation-like hole
        out.append(SFTExample(tuple(ids), tuple(mask), f"t{k}", 0))
    return out


def test_first_fit_decreasing_by_hand():
    # sorted: 6(#1) 5(#3) 4(#0) 3(#4) 2(#2); capacity 8 -> [6,2] [5,3] [4]
    assert first_fit_decreasing([4, 6, 2, 5, 3], 8) == [[1, 2], [3, 4], [0]]
    with pytest.raises(ValueError, match="1 examples are longer than the row length 8"):
        first_fit_decreasing([4, 9], 8)


def test_collate_layout():
    a, b, c = SFTExample((1, 2, 3), (0, 1, 1)), SFTExample((4, 5), (0, 1)), SFTExample((6, 7, 8, 9), (0, 0, 1, 1))
    batch = collate([a, b, c], [[0, 1], [2]], length=6, pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 0], [6, 7, 8, 9, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]]
    assert batch.seq_ids.tolist() == [[0, 0, 0, 1, 1, -1], [2, 2, 2, 2, -1, -1]]
    assert batch.loss_mask.tolist() == [[0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 0, 0]]
    assert batch.spans == [(0, 0, 3), (0, 3, 2), (1, 0, 4)]
    assert batch.efficiency == 9 / 12
    mask = block_causal_mask(batch.seq_ids)[0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # padding sees itself only: no empty softmax row
    ]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logprobs_equal_per_example(tiny_model, attn):
    model = tiny_model(attn).eval()
    examples = _examples([37, 12, 25, 50, 8])
    batch = pack(examples, 64)
    assert len(batch.spans) == 5 and batch.input_ids.shape[0] < 5  # really packed
    with torch.no_grad():
        packed = batch.unpack(packed_token_logprobs(model, batch))
    order = [k for r in first_fit_decreasing([len(e) for e in examples], 64) for k in r]
    for lp, k in zip(packed, order):
        ref = torch.tensor(token_logprobs(model, examples[k].input_ids))
        torch.testing.assert_close(lp, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_wanted_entries_equal_the_full_output(tiny_model, attn):
    model = tiny_model(attn).eval()
    batch = pack(_examples([37, 12, 25, 50, 8], seed=2), 64)
    wanted = batch.loss_mask.bool()
    with torch.no_grad():
        full = packed_token_logprobs(model, batch)
        only = packed_token_logprobs(model, batch, wanted=batch.loss_mask)
        nothing = packed_token_logprobs(model, batch, wanted=torch.zeros_like(batch.loss_mask))
    torch.testing.assert_close(only[wanted], full[wanted], atol=1e-5, rtol=0)
    assert (full[wanted] != 0).all() and (only[~wanted] == 0).sum() > 0  # the output layer skipped some positions
    torch.testing.assert_close(nothing, full)  # nothing wanted: the whole output (every parameter stays in the graph)


def test_packed_loss_and_gradients_equal_unpacked(tiny_model):
    examples = _examples([30, 17, 44, 9, 21, 26], seed=1)
    total = sum(e.num_loss_tokens for e in examples)

    packed_model = tiny_model()
    nll, n = masked_nll_sum(packed_model, pack(examples, 64))
    assert n == total
    (nll / total).backward()

    ref_model = tiny_model()
    ref_loss = 0.0
    for e in examples:  # one example at a time, no padding, no packing
        ids = torch.tensor([e.input_ids])
        logits = ref_model(input_ids=ids).logits[0, :-1]
        nll_tok = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
        loss = (nll_tok * torch.tensor(e.loss_mask[1:], dtype=torch.float32)).sum() / total
        loss.backward()
        ref_loss += float(loss.detach())

    assert abs(float(nll.detach()) / total - ref_loss) < 1e-5
    for (name, p), q in zip(packed_model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_padding_efficiency_of_ffd():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(200, 3000, (64,), generator=g).tolist()
    rows = first_fit_decreasing(lengths, 8192)
    efficiency = sum(lengths) / (len(rows) * 8192)
    assert len(rows) == -(-sum(lengths) // 8192)  # FFD reaches the lower bound here: 13 rows
    assert efficiency > 0.95
    assert all(sum(lengths[i] for i in r) <= 8192 for r in rows)
    assert sorted(i for r in rows for i in r) == list(range(64))
