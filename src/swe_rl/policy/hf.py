"""HFPolicy: batched sampling from a transformers model with a sampling loop of our own.

Owning the loop (forward with a KV cache, then `torch.multinomial`) rather than calling
`model.generate` means nothing from the model's `generation_config` can leak in, and the
log-prob of each sampled token is read from the very distribution it was drawn from.
A multi-turn episode's next prompt extends its last one, so each finished row's KV cache is
kept until the next call and only the new tokens are prefilled (`reuse_prefix`). Decoding appends
into room reserved in the KV cache rather than concatenating (`_decode_cache`).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from swe_rl.policy.chat import stop_token_ids as default_stop_ids
from swe_rl.policy.protocol import row_seeds
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


@dataclass(frozen=True)
class _Prefix:
    """One finished row's KV cache: the token ids it covers and, per layer, (keys, values) [heads, len, dim]."""

    ids: tuple[int, ...]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    tag: tuple  # the weights and positions it was computed under: reusable only under the same


@functools.cache
def _room_layer_class() -> type | None:
    """A DynamicLayer that appends into spare room instead of concatenating (None before transformers 4.56).

    A plain DynamicLayer copies its whole cache at every decode step (`torch.cat`): at 1,800 cached
    tokens and batch 8 that copy was 85% of a step on CPU. With room reserved for the new tokens a
    step writes one column in place (benchmarks/results/kv_room.json). Defined on first use: importing
    transformers' cache module costs a second.
    """
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return None

    class RoomLayer(DynamicLayer):
        def __init__(self, room: int) -> None:
            super().__init__()
            self.room = room  # spare columns allocated beyond what an update needs
            self.key_buffer = self.value_buffer = None  # [batch, heads, capacity, dim]; keys/values view their front

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = self.get_seq_length()
            m = n + key_states.shape[-2]
            if self.key_buffer is None or m > self.key_buffer.shape[-2]:
                keys = key_states.new_empty((*key_states.shape[:2], m + self.room, key_states.shape[-1]))
                values = value_states.new_empty((*value_states.shape[:2], m + self.room, value_states.shape[-1]))
                if n:
                    keys[..., :n, :], values[..., :n, :] = self.keys, self.values
                self.key_buffer, self.value_buffer = keys, values
            self.key_buffer[..., n:m, :] = key_states
            self.value_buffer[..., n:m, :] = value_states
            self.keys, self.values = self.key_buffer[..., :m, :], self.value_buffer[..., :m, :]
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            n = self.get_seq_length()
            if n:
                self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
                self.keys, self.values = self.key_buffer[..., :n, :], self.value_buffer[..., :n, :]

    return RoomLayer


def _decode_cache(config: Any, room: int) -> Any:
    """A DynamicCache for one `generate` call, its plain layers swapped for ones with `room` spare columns.

    Only exact DynamicLayers are swapped: a sliding-window or other special layer keeps its own logic.
    """
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    room_layer = _room_layer_class()
    if room_layer is not None and hasattr(cache, "layers"):
        plain = room_layer.__mro__[1]
        cache.layers = [room_layer(room) if type(layer) is plain else layer for layer in cache.layers]
    return cache


def _shared_start(kept: tuple[int, ...], prompt: list[int], limit: int) -> int:
    """How many first tokens `kept` and `prompt` share, at most `limit`."""
    n = min(len(kept), limit)
    if kept[:n] == tuple(prompt[:n]):
        return n
    differ = torch.tensor(kept[:n]) != torch.tensor(prompt[:n])
    return int(differ.nonzero()[0, 0])


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) [batch, heads, seq, dim] of every layer of a DynamicCache, across transformers versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


class HFPolicy:
    """A transformers causal LM behind the Policy Protocol.

    `model_or_path`: a model name known to `swe_rl.policy.models` (`tiny`, `smollm2-135m`),
    a Hugging Face directory, or a loaded model (then pass `tokenizer`, or `stop_token_ids`).
    `device="auto"` picks CUDA when present; dtype defaults to bfloat16 on GPU, float32 on CPU.
    Each sequence stops at its own end-of-turn token (default: `stop_token_ids(tokenizer)`),
    which is included in the completion. `reuse_prefix`: a prompt that extends a row of the
    previous call (the next turn of an episode) prefills only its new tokens from that row's
    kept KV cache; new weights (`update_weights`) or positions (YaRN) invalidate what was kept.
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
        reuse_prefix: bool = True,
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
        self.reuse_prefix = reuse_prefix
        self._prefixes: list[_Prefix] = []  # the previous call's rows
        self.prefill_tokens = self.reused_tokens = 0  # counters: tokens run through the model vs taken from a kept cache

    def update_weights(self, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Load new weights (or record that they were changed in place) and bump `version`."""
        if state_dict is not None:
            self.model.load_state_dict(state_dict)
        self.version += 1
        self._prefixes = []

    def generate(self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None = None) -> list[Completion]:
        if not prompts:
            return []
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"HFPolicy.generate: prompt {i} is empty")
        completions = self._sample(prompts, params, row_seeds(params, len(prompts), seeds))
        if self.tokenizer is not None:
            decode = self.tokenizer.decode
            completions = [
                Completion(c.token_ids, c.logprobs, c.finish_reason,
                           decode(list(c.token_ids), clean_up_tokenization_spaces=False))
                for c in completions
            ]
        return completions

    def _tag(self) -> tuple:
        return (self.version, repr(getattr(self.model.config, "rope_scaling", None)))

    def _kept_prefix(self, prompt: list[int], candidates: list[_Prefix], tag: tuple) -> tuple[_Prefix | None, int]:
        """The kept row sharing the longest start with `prompt`, and how many of its tokens to take.

        At least the prompt's last token is left to run. A cache position depends only on the tokens up to
        it, so the shared start of another row serves too: the system prompt, or one task's G samples.
        """
        best, best_n = None, 0
        if not self.reuse_prefix:
            return best, best_n
        for p in candidates:
            if p.tag == tag and (n := _shared_start(p.ids, prompt, len(prompt) - 1)) > best_n:
                best, best_n = p, n
        return best, best_n

    def _row_prefix(self, prompt: list[int], hit: _Prefix | None, n: int, tag: tuple) -> _Prefix:
        """The KV cache of `prompt[:-1]`: `hit`'s first `n` tokens, then one forward over the rest, unpadded."""
        row = prompt[n:-1]
        if not row:
            assert hit is not None  # n == len(prompt) - 1 > 0
            return _Prefix(tuple(prompt[:-1]), [(k[:, :n], v[:, :n]) for k, v in hit.kv], tag)
        cache = _decode_cache(self.model.config, room=len(row))
        for layer, (k, v) in enumerate(hit.kv if hit else []):
            cache.update(k[None, :, :n], v[None, :, :n], layer)
        self.model(input_ids=torch.tensor([row], device=self.device), logits_to_keep=1, use_cache=True,
                   position_ids=torch.arange(n, len(prompt) - 1, device=self.device)[None], **{self._cache_arg: cache})
        return _Prefix(tuple(prompt[:-1]), [(k[0], v[0]) for k, v in _layers(cache)], tag)

    def _prefill(self, prompts: list[list[int]], cache: Any, tag: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input ids, attention mask, position ids) of the first forward; each row's prefix goes into `cache`.

        Each row but its last token is prefilled on its own (`_row_prefix`): rows of one call differ by
        hundreds of tokens (a file window against "No matches found"), and a padded batch would run every
        row at the longest one's width. The batch then runs the last tokens, [left pad | row prefix | last
        token]: the mask hides the pads, position ids count only real tokens.
        """
        dev, n = self.device, len(prompts)
        rows: list[_Prefix] = []
        for p in prompts:
            hit, shared = self._kept_prefix(p, self._prefixes + rows, tag)
            rows.append(self._row_prefix(p, hit, shared, tag) if len(p) > 1 else _Prefix((), [], tag))
            self.reused_tokens += shared
            self.prefill_tokens += len(p) - shared
        width = max(len(r.ids) for r in rows)
        ids = torch.tensor([[p[-1]] for p in prompts], dtype=torch.long, device=dev)
        attn = torch.zeros((n, width + 1), dtype=torch.long, device=dev)
        pos = torch.tensor([[len(p) - 1] for p in prompts], dtype=torch.long, device=dev)
        for i, r in enumerate(rows):
            attn[i, width - len(r.ids):] = 1
        if width:
            for layer, (k0, v0) in enumerate(next(r for r in rows if r.ids).kv):
                keys = k0.new_zeros((n, k0.shape[0], width, k0.shape[2]))
                values = v0.new_zeros((n, v0.shape[0], width, v0.shape[2]))
                for i, r in enumerate(rows):
                    if r.ids:
                        keys[i, :, width - len(r.ids):], values[i, :, width - len(r.ids):] = r.kv[layer]
                cache.update(keys, values, layer)
        return ids, attn, pos

    def _keep(self, store: list[_Prefix], cache: Any, attn: torch.Tensor, batch_rows: list[int], ids: list[tuple[int, ...]],
              tag: tuple) -> None:
        """Keep the KV of batch rows `batch_rows` (which cover `ids`) for the next call, padding removed."""
        if not self.reuse_prefix:
            return
        layers = _layers(cache)
        for b, covered in zip(batch_rows, ids):
            real = attn[b].bool()
            store.append(_Prefix(covered, [(k[b][:, real], v[b][:, real]) for k, v in layers], tag))

    @torch.no_grad()
    def _sample(self, prompts: list[list[int]], params: SamplingParams, seeds: list[int | None]) -> list[Completion]:
        dev, n = self.device, len(prompts)
        cache = _decode_cache(self.model.config, room=params.max_new_tokens)
        tag = self._tag()  # the weights and positions of this whole call
        ids, attn, pos = self._prefill(prompts, cache, tag)
        store: list[_Prefix] = []
        vocab = self.model.get_output_embeddings().weight.shape[0]
        seen = None
        if params.repetition_penalty != 1.0:
            seen = torch.zeros((n, vocab), dtype=torch.bool, device=dev)
            for i, p in enumerate(prompts):  # per row: padding must not mark (or unmark) its id
                seen[i, torch.tensor(p, dtype=torch.long, device=dev)] = True
        stop = torch.tensor(self.stop_token_ids, device=dev)
        # One random stream per prompt: a row's draws must not depend on which rows share its call.
        gens = [None if s is None else torch.Generator(device=dev).manual_seed(s) for s in seeds]
        out_ids: list[list[int]] = [[] for _ in range(n)]
        out_lps: list[list[float]] = [[] for _ in range(n)]
        finish = ["length"] * n
        rows = torch.arange(n, device=dev)  # batch row -> prompt index; finished rows are dropped
        step_kw = {self._cache_arg: cache, "use_cache": True}
        # The model's own dtype, no autocast: under bf16 autocast the float32 weights are cast again at every
        # decode step (3x slower on an H200) and the gap to a bf16 trainer did not shrink (docs/scaling.md).
        logits = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=1, **step_kw).logits[:, -1]
        next_pos = pos[:, -1] + 1

        def covered(i: int) -> tuple[int, ...]:  # the cache holds every token but the one just sampled
            return tuple(prompts[i]) + tuple(out_ids[i][:-1])

        for step in range(params.max_new_tokens):
            lp = processed_logprobs(logits[:, :vocab].float(), params, seen)
            if params.temperature == 0:
                tok = lp.argmax(-1)
            else:
                probs = lp.exp()
                tok = torch.cat([torch.multinomial(probs[b], 1, generator=gens[i]) for b, i in enumerate(rows.tolist())])
            tok_lp = lp.gather(1, tok[:, None])[:, 0]
            is_stop = torch.isin(tok, stop)
            for i, t, t_lp, s in zip(rows.tolist(), tok.tolist(), tok_lp.tolist(), is_stop.tolist()):
                out_ids[i].append(t)
                out_lps[i].append(t_lp)
                if s:
                    finish[i] = "stop"
            if step == params.max_new_tokens - 1 or bool(is_stop.all()):
                self._keep(store, cache, attn, list(range(len(rows))), [covered(i) for i in rows.tolist()], tag)
                break
            if bool(is_stop.any()):
                done = is_stop.nonzero()[:, 0].tolist()
                self._keep(store, cache, attn, done, [covered(rows[b].item()) for b in done], tag)
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
        self._prefixes = store
        return [Completion(tuple(t), tuple(l), finish[i]) for i, (t, l) in enumerate(zip(out_ids, out_lps))]  # type: ignore[arg-type]
