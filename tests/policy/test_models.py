"""Bundled models: built from installed packages only, cached atomically, resolvable by name or path."""

from __future__ import annotations

import json

import pytest

from swe_rl.cli import main
from swe_rl.policy.models import END_OF_TURN, load_model, prepare_model, resolve_model


def test_prepare_tiny_via_cli_then_rerun_is_a_noop(tmp_path, capsys):
    assert main(["model", "prepare", "tiny", "--cache-dir", str(tmp_path)]) == 0
    path = tmp_path / "models" / "tiny"
    assert capsys.readouterr().out.strip() == str(path)
    weights = path / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert prepare_model("tiny", tmp_path) == path and weights.stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny"]  # no temporary left behind
    config = json.loads((path / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("qwen2", 2, 64)
    # a stale recipe is rebuilt in place
    (path / "swe_rl_model.json").write_text(json.dumps({"name": "tiny", "recipe": 0}))
    assert prepare_model("tiny", tmp_path) == path and weights.stat().st_mtime_ns != stamp


def test_tiny_has_a_real_chatml_tokenizer(tiny_dir):
    model, tok = load_model(tiny_dir)
    assert tok.eos_token == END_OF_TURN
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert tok.decode(tok.encode("def f():\n    return 1", add_special_tokens=False)) == "def f():\n    return 1"
    assert model.config.vocab_size == len(tok)


def test_resolve_model_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="'nope'"):
        resolve_model("nope")
    assert resolve_model(resolve_model("tiny")) == resolve_model("tiny")
    with pytest.raises(ValueError, match="unknown model 'big'"):
        prepare_model("big", tmp_path)


@pytest.mark.slow
def test_smollm2_converted_from_gguf_answers_in_chatml():
    """~45 s the first time (GGUF de-quantization), then cached."""
    from swe_rl.policy.chat import TrajectoryBuilder
    from swe_rl.policy.hf import HFPolicy
    from swe_rl.types import SamplingParams

    path = prepare_model("smollm2-135m")
    policy = HFPolicy(path, device="cpu")
    tok = policy.tokenizer
    assert tok.eos_token == END_OF_TURN and policy.stop_token_ids == [tok.convert_tokens_to_ids(END_OF_TURN)]
    assert "You are a helpful AI assistant named SmolLM" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False
    )
    b = TrajectoryBuilder(tok, [{"role": "user", "content": "What is the capital of France?"}])
    (c,) = policy.generate([b.prompt_ids()], SamplingParams(temperature=0.0, max_new_tokens=40))
    assert c.finish_reason == "stop" and "Paris" in b.add_completion(c)
