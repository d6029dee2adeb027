from __future__ import annotations

import importlib.util
import math
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from swe_rl.training.checkpoint import list_checkpoints
from swe_rl.training.logprobs import masked_nll_sum
from swe_rl.training.metrics_log import read_metrics
from swe_rl.training.packing import pack
from swe_rl.training.sft import SFTConfig, lr_factor, prepare_for_training, step_plan, train_sft, train_step
from swe_rl.training.sft_data import SFTExample


def _examples(tokenizer, n=8):
    out = []
    for k in range(n):
        # Short on purpose: the cost on CPU is the 49k-word output layer, per token.
        prompt = f"<|im_start|>user\nFix bug {k} in m{k}<|im_end|>\n<|im_start|>assistant\n"
        answer = f"open m{k}.py<|im_end|>"
        p, a = tokenizer.encode(prompt), tokenizer.encode(answer)
        out.append(SFTExample(tuple(p + a), tuple([0] * len(p) + [1] * len(a)), f"t{k}", 0))
    return out


def _set_loss(model, examples):
    with torch.no_grad():
        nll, n = masked_nll_sum(model, pack(examples, 4096))
    return float(nll) / n


def test_lr_schedule_by_hand():
    assert [lr_factor(s, 2, 6) for s in range(2)] == [0.5, 1.0]
    # cosine from 1 at step 2 to 0 at step 6 (after the last step, 5)
    for s, want in zip(range(2, 6), [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]):
        assert lr_factor(s, 2, 6) == pytest.approx(want)


def test_step_plan_covers_each_example_once_per_epoch():
    plan = step_plan(10, SFTConfig(batch_size=4, epochs=2, seed=3))
    assert [len(b) for b in plan] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(plan[:3], [])) == list(range(10)) == sorted(sum(plan[3:], []))
    assert plan == step_plan(10, SFTConfig(batch_size=4, epochs=2, seed=3))


def test_micro_batches_do_not_change_the_gradient(tiny_model, tokenizer):
    examples = _examples(tokenizer, 6)
    grads = []
    for rows, checkpointing in ((1, False), (2, False), (100, False), (1, True)):
        cfg = SFTConfig(max_seq_len=64, micro_batch_rows=rows, gradient_checkpointing=checkpointing)
        model = prepare_for_training(tiny_model(), cfg)
        m = train_step(model, examples, cfg)
        grads.append([p.grad.clone() for p in model.parameters()])
        assert m["rows"] > 2
    for other in grads[1:]:
        for g, h in zip(grads[0], other):
            torch.testing.assert_close(g, h, atol=1e-6, rtol=1e-5)


def test_loss_decreases_and_output_loads(tmp_path, tiny_model, tokenizer):
    examples = _examples(tokenizer)
    model = prepare_for_training(tiny_model(), SFTConfig())
    before = _set_loss(model, examples)
    cfg = SFTConfig(lr=1e-2, warmup_steps=2, epochs=6, batch_size=4, max_seq_len=128, tensorboard=False)
    summary = train_sft(model, examples, cfg, tmp_path, tokenizer=tokenizer)
    after = _set_loss(model, examples)
    assert after < 0.5 * before, (before, after)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 13)) and summary["steps"] == 12
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "padding_efficiency", "loss_tokens"} <= set(rows[0])
    exported = AutoModelForCausalLM.from_pretrained(summary["model_dir"])
    assert _set_loss(exported, examples) == pytest.approx(after, abs=1e-5)


def test_resume_continues_to_the_same_weights(tmp_path, tiny_model, tokenizer):
    examples = _examples(tokenizer)
    cfg = SFTConfig(lr=1e-3, warmup_steps=1, epochs=2, batch_size=4, max_seq_len=128, save_every=1, keep_last=10, tensorboard=False)
    straight = prepare_for_training(tiny_model(), cfg)
    train_sft(straight, examples, cfg, tmp_path / "a", tokenizer=tokenizer, export=False)

    run = tmp_path / "b"
    train_sft(prepare_for_training(tiny_model(), cfg), examples, cfg, run, tokenizer=tokenizer, export=False)
    for late in list_checkpoints(run)[2:]:  # as if killed after step 2
        shutil.rmtree(late)
    resumed = prepare_for_training(tiny_model(), cfg)
    summary = train_sft(resumed, examples, cfg, run, tokenizer=tokenizer, resume=True, export=False)
    assert summary["start_step"] == 2
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, atol=1e-7, rtol=0, msg=name)


def test_too_long_examples_are_dropped_and_counted(tmp_path, tiny_model, tokenizer):
    examples = _examples(tokenizer, 4)
    long = SFTExample(tuple(range(5, 205)), tuple([0] + [1] * 199), "long", 0)
    cfg = SFTConfig(batch_size=8, max_seq_len=128, tensorboard=True)
    summary = train_sft(prepare_for_training(tiny_model(), cfg), examples + [long], cfg, tmp_path, export=False)
    assert summary["dropped_too_long"] == 1 and summary["examples"] == 4
    if importlib.util.find_spec("tensorboard"):
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_lora_trains_adapters_and_exports_merged(tmp_path, tiny_model, tokenizer):
    pytest.importorskip("peft")
    examples = _examples(tokenizer, 4)
    cfg = SFTConfig(lr=1e-2, warmup_steps=1, epochs=2, batch_size=4, max_seq_len=128, lora_rank=4, gradient_checkpointing=True, tensorboard=False)
    base = tiny_model()
    original = {k: v.clone() for k, v in base.state_dict().items()}
    model = prepare_for_training(base, cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    summary = train_sft(model, examples, cfg, tmp_path, tokenizer=tokenizer)
    assert (tmp_path / "checkpoints" / "step_00000002" / "adapter_model.safetensors").is_file()
    merged = AutoModelForCausalLM.from_pretrained(summary["model_dir"]).state_dict()
    assert set(merged) == set(original)
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], original["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(merged["model.embed_tokens.weight"], original["model.embed_tokens.weight"])
