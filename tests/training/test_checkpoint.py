from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from swe_rl.training.checkpoint import (
    checkpoint_bytes,
    ensure_free_space,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def _one_step(model, optimizer, scheduler):
    ids = torch.arange(10, 30)[None]
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def _setup(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return opt, sched


def test_roundtrip_restores_weights_optimizer_scheduler_rng_and_generates(tmp_path, tiny_model, tokenizer):
    model = tiny_model()
    opt, sched = _setup(model)
    _one_step(model, opt, sched)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    path = save_checkpoint(tmp_path, model, tokenizer, opt, sched, step=1, extra={"pool": ["a", "b"]})
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    _one_step(model, opt, sched)  # move on, then come back

    fresh = tiny_model()
    fresh_opt, fresh_sched = _setup(fresh)
    state = load_checkpoint(path, fresh, fresh_opt, fresh_sched)
    assert (state.step, state.extra) == (1, {"pool": ["a", "b"]})
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    assert fresh_sched.last_epoch == 1
    saved = AutoModelForCausalLM.from_pretrained(path)  # a plain Hugging Face directory
    for (name, p), q, r in zip(saved.named_parameters(), fresh.parameters(), model.parameters()):
        assert torch.equal(p, q), name
    assert not all(torch.equal(q, r) for q, r in zip(fresh.parameters(), model.parameters()))
    exp_avg = [fresh_opt.state[p]["exp_avg"] for p in fresh.parameters()]
    assert all(e.abs().sum() > 0 for e in exp_avg[:3])

    tok = AutoTokenizer.from_pretrained(path)
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = saved.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 5 or out[0, -1] == tok.eos_token_id


def test_keep_last_and_latest(tmp_path, tiny_model):
    model = tiny_model()
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, model, step=step, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004", "step_00000006"]
    assert latest_checkpoint(tmp_path).name == "step_00000006"
    assert latest_checkpoint(tmp_path / "nothing") is None


class _CrashingTokenizer:
    def save_pretrained(self, path):
        (path / "tokenizer.json").write_text("{half")
        raise KeyboardInterrupt("killed while writing")


def test_interrupted_write_leaves_previous_checkpoint(tmp_path, tiny_model):
    model = tiny_model()
    good = save_checkpoint(tmp_path, model, step=1, keep_last=1)
    before = sorted(p.name for p in good.rglob("*"))
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, model, _CrashingTokenizer(), step=2, keep_last=1)
    assert latest_checkpoint(tmp_path) == good
    assert sorted(p.name for p in good.rglob("*")) == before
    # A temporary directory a SIGKILL would leave behind is never taken for a checkpoint.
    (tmp_path / "checkpoints" / ".tmp-step_00000003-1-1").mkdir()
    assert latest_checkpoint(tmp_path) == good
    assert load_checkpoint(good, tiny_model()).step == 1


def test_size_estimate_matches_what_is_written(tmp_path, tiny_model):
    model = tiny_model()
    opt, sched = _setup(model)
    _one_step(model, opt, sched)
    ckpt = save_checkpoint(tmp_path, model, None, opt, sched, step=1)
    written = sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file())
    estimate = checkpoint_bytes(model, opt.state_dict())  # what save_checkpoint checks the free space against
    assert 0.9 * written < estimate < 1.1 * written


def test_a_disk_too_full_for_the_checkpoint_is_a_clear_error(tmp_path):
    import shutil

    ensure_free_space(tmp_path, 1)
    with pytest.raises(OSError, match="GiB free, a checkpoint needs about .* previous checkpoints are intact"):
        ensure_free_space(tmp_path, shutil.disk_usage(tmp_path).free + 2**40)


def test_load_rejects_incomplete_dir(tmp_path, tiny_model):
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path / "x")
