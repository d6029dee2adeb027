"""HFPolicy: batched sampling from a transformers model with a sampling loop of our own.

Owning the loop (forward with a KV cache, then `torch.multinomial`) rather than calling
`model.generate` means nothing from the model's `generation_config` can leak in, and the
log-prob of each sampled token is read from the very distribution it was drawn from.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterable

import torch

from swe_rl.policy.chat import stop_token_ids as default_stop_ids
from swe_rl.types import Completion, SamplingParams


def processed_logprobs(logits: torch.Tensor, params: SamplingParams, seen: torch.Tensor | None = None) -> torch.Tensor:
    """log-softmax of `logits` [B, V] after repetition penalty, temperature, top-k, top-p and min-p.

    Filtered tokens get -inf. `seen` [B, V] marks the tokens already in each sequence
    (for the repetition penalty). With the neutral parameters this is log_softmax(logits).
    Temperature 0 means greedy; the log-probs are then those of temperature 1.
    """
    logits = logits.float()
    if params.repetition_penalty != 1.0 and seen is not None:
        p = params.repetition_penalty
        logits = torch.where(seen, torch.where(logits < 0, logits * p, logits / p), logits)
    if params.temperature > 0 and params.temperature != 1.0:
        logits = logits / params.temperature
    neg_inf = torch.finfo(logits.dtype).min
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, neg_inf)
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        mass_before = probs.cumsum(-1) - probs
        drop_sorted = mass_before >= params.top_p  # the most likely token always has mass_before 0
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, neg_inf)
    if params.min_p > 0.0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < params.min_p * probs.max(-1, keepdim=True).values, neg_inf)
    return torch.log_softmax(logits, dim=-1)


class HFPolicy:
    """A transformers causal LM behind the Policy Protocol.

    `model_or_path`: a model name known to `swe_rl.policy.models` (`tiny`, `smollm2-135m`),
    a Hugging Face directory, or a loaded model (then pass `tokenizer`, or `stop_token_ids`).
    `device="auto"` picks CUDA when present; dtype defaults to bfloat16 on GPU, float32 on CPU.
    Each sequence stops at its own end-of-turn token (default: `stop_token_ids(tokenizer)`),
    which is included in the completion.
    """

    def __init__(
        self,
        model_or_path: Any,
        *,
        device: str = "auto",
        dtype: torch.dtype | None = None,
        stop_token_ids: Iterable[int] | None = None,
        tokenizer: Any = None,
        name: str | None = None,
    ) -> None:
        if isinstance(model_or_path, (str, Path)):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from swe_rl.policy.models import resolve_model

            path = resolve_model(model_or_path)
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
            self.name = name or str(model_or_path)
        else:
            self.model = model_or_path.eval()
            if dtype is not None:
                self.model.to(dtype)
            self.tokenizer = tokenizer
            self.name = name or getattr(model_or_path, "name_or_path", "") or type(model_or_path).__name__
        self.device = next(self.model.parameters()).device
        # transformers renamed `past_key_values` to `cache` (5.x); use whichever this version takes.
        forward_args = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"
        if stop_token_ids is None:
            if self.tokenizer is None:
                raise ValueError("HFPolicy: give a tokenizer or explicit stop_token_ids")
            stop_token_ids = default_stop_ids(self.tokenizer)
        self.stop_token_ids = sorted(set(stop_token_ids))
        if not self.stop_token_ids:
            raise ValueError("HFPolicy: no stop token ids (the model could never end a turn)")
        self.version = 0

    def update_weights(self, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Load new weights (or record that they were changed in place) and bump `version`."""
        if state_dict is not None:
            self.model.load_state_dict(state_dict)
        self.version += 1

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        if not prompts:
            return []
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"HFPolicy.generate: prompt {i} is empty")
        completions = self._sample(prompts, params)
        if self.tokenizer is not None:
            decode = self.tokenizer.decode
            completions = [
                Completion(c.token_ids, c.logprobs, c.finish_reason,
                           decode(list(c.token_ids), clean_up_tokenization_spaces=False))
                for c in completions
            ]
        return completions

    @torch.no_grad()
    def _sample(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        from transformers import DynamicCache

        dev, n = self.device, len(prompts)
        width = max(len(p) for p in prompts)
        pad = self.stop_token_ids[0]  # any id works: padded positions are masked out
        ids = torch.full((n, width), pad, dtype=torch.long, device=dev)
        attn = torch.zeros((n, width), dtype=torch.long, device=dev)
        for i, p in enumerate(prompts):  # left padding: every row's last prompt token is at column -1
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attn[i, width - len(p):] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        seen = None
        if params.repetition_penalty != 1.0:
            seen = torch.zeros((n, vocab), dtype=torch.bool, device=dev)
            for i, p in enumerate(prompts):  # per row: padding must not mark (or unmark) its id
                seen[i, torch.tensor(p, dtype=torch.long, device=dev)] = True
        stop = torch.tensor(self.stop_token_ids, device=dev)
        gen = None
        if params.seed is not None:
            gen = torch.Generator(device=dev).manual_seed(params.seed)
        out_ids: list[list[int]] = [[] for _ in range(n)]
        out_lps: list[list[float]] = [[] for _ in range(n)]
        finish = ["length"] * n
        rows = torch.arange(n, device=dev)  # batch row -> prompt index; finished rows are dropped
        cache = DynamicCache(config=self.model.config)
        step_kw = {self._cache_arg: cache, "use_cache": True}
        # The model's own dtype, no autocast: under bf16 autocast the float32 weights are cast again at every
        # decode step (3x slower on an H200) and the gap to a bf16 trainer did not shrink (docs/scaling.md).
        logits = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=1, **step_kw).logits[:, -1]
        next_pos = pos[:, -1] + 1
        for step in range(params.max_new_tokens):
            lp = processed_logprobs(logits[:, :vocab].float(), params, seen)
            if params.temperature == 0:
                tok = lp.argmax(-1)
            else:
                tok = torch.multinomial(lp.exp(), 1, generator=gen)[:, 0]
            tok_lp = lp.gather(1, tok[:, None])[:, 0]
            is_stop = torch.isin(tok, stop)
            for i, t, t_lp, s in zip(rows.tolist(), tok.tolist(), tok_lp.tolist(), is_stop.tolist()):
                out_ids[i].append(t)
                out_lps[i].append(t_lp)
                if s:
                    finish[i] = "stop"
            if step == params.max_new_tokens - 1 or bool(is_stop.all()):
                break
            if bool(is_stop.any()):
                keep = (~is_stop).nonzero()[:, 0]
                cache.batch_select_indices(keep)
                rows, tok, attn, next_pos = rows[keep], tok[keep], attn[keep], next_pos[keep]
                if seen is not None:
                    seen = seen[keep]
            if seen is not None:
                seen[torch.arange(len(tok), device=dev), tok] = True
            attn = torch.cat([attn, attn.new_ones((len(tok), 1))], dim=1)
            logits = self.model(
                input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos[:, None], **step_kw
            ).logits[:, -1]
            next_pos = next_pos + 1
        return [Completion(tuple(t), tuple(l), finish[i]) for i, (t, l) in enumerate(zip(out_ids, out_lps))]  # type: ignore[arg-type]
