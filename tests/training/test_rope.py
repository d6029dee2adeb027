"""YaRN x4 on the `tiny` Qwen2-architecture model: positions 4x past its original range."""

from __future__ import annotations

import math

import pytest
import torch

from swe_rl.training.rope import apply_yarn, yarn_factor


def test_yarn_x4_runs_at_4x_the_original_positions_and_survives_a_save(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model()
    original = model.config.max_position_embeddings
    before = model.model.rotary_emb.inv_freq.clone()
    assert apply_yarn(model, 4.0)
    assert not apply_yarn(model, 4.0)  # idempotent
    rot = model.model.rotary_emb
    assert yarn_factor(model.config) == 4.0 and model.config.max_position_embeddings == 4 * original
    # YaRN keeps the fastest frequencies, interpolates the slowest by the factor, scales attention by 0.1 ln s + 1.
    assert rot.inv_freq[0] == pytest.approx(float(before[0]))
    assert rot.inv_freq[-1] == pytest.approx(float(before[-1]) / 4, rel=1e-5)
    assert rot.attention_scaling == pytest.approx(0.1 * math.log(4) + 1)
    ids = torch.randint(10, 500, (1, 24), generator=torch.Generator().manual_seed(0))
    far = torch.arange(4 * original - 24, 4 * original)[None]  # the last positions of the 4x range
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=far).logits
    assert torch.isfinite(logits).all()
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32, attn_implementation="sdpa")
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids, position_ids=far).logits, logits)


def test_yarn_never_shrinks(tiny_model):
    model = tiny_model()
    assert not apply_yarn(model, 1.0)
    apply_yarn(model, 2.0)
    with pytest.raises(ValueError, match="shrink"):
        apply_yarn(model, 1.0)
