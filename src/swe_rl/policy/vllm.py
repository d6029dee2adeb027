"""VLLMPolicy: an in-process vLLM engine behind the Policy Protocol, fed the trainer's weights (GPU scale).

vLLM is imported lazily so the rest of swe-rl runs without it. The engine ignores the model's
generation config (`generation_config="vllm"`), returns the log-probs of the distribution it
actually sampled from (`logprobs_mode="processed_logprobs"`), and takes new weights straight from
the trainer's tensors through `collective_rpc` (no checkpoint on disk). With `sleep`, it frees
its GPU memory while the trainer runs and wakes for the weight sync (one GPU for both).
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from swe_rl.policy.chat import stop_token_ids as default_stop_ids
from swe_rl.policy.protocol import row_seeds
from swe_rl.types import Completion, SamplingParams

DTYPES = ("bfloat16", "float16", "float32", "auto")


@dataclass(frozen=True)
class VLLMConfig:
    """The engine's knobs; every other vLLM default is kept."""

    gpu_memory_utilization: float = 0.3  # share of the GPU for vLLM (weights + KV cache); colocated, the trainer gets the rest
    sleep: bool = True  # release vLLM's GPU memory while the trainer runs (sleep mode), wake for the weight sync
    sleep_level: int = 1  # 1: weights to CPU, KV cache dropped; 2: both dropped (the sync rewrites the weights anyway)
    device: str = ""  # "" = the trainer's GPU (colocated); "cuda:N" = a GPU of its own (the engine runs in a child process)
    max_model_len: int = 0  # 0 = the model's own; else prompt + generation limit per sequence
    enforce_eager: bool = False  # true skips CUDA-graph capture: faster start, slower decoding
    dtype: str = "bfloat16"  # the engine's weights; the trainer keeps float32 masters
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"vllm.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.sleep_level not in (1, 2):
            raise ValueError(f"vllm.sleep_level must be 1 or 2, got {self.sleep_level}")
        if self.device and not re.fullmatch(r"cuda:\d+", self.device):
            raise ValueError(f"vllm.device must be '' (the trainer's GPU) or 'cuda:N', got {self.device!r}")
        if self.max_model_len < 0:
            raise ValueError(f"vllm.max_model_len must be >= 0, got {self.max_model_len}")
        if self.dtype not in DTYPES:
            raise ValueError(f"vllm.dtype must be one of {DTYPES}, got {self.dtype!r}")

    @property
    def in_process(self) -> bool:
        """Colocated engines run in this process, so a weight sync hands over tensors by reference."""
        return not self.device

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `vllm.LLM` (besides the model)."""
        kwargs: dict[str, Any] = {
            "generation_config": "vllm",  # never the model's own sampling defaults
            "logprobs_mode": "processed_logprobs",  # log-probs of what was sampled from
            "dtype": self.dtype,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enable_sleep_mode": self.sleep,
            "enforce_eager": self.enforce_eager,
            "seed": self.seed,
        }
        if self.max_model_len:
            kwargs["max_model_len"] = self.max_model_len
        return kwargs


# Module wrappers that prefix parameter names: FSDP1, activation checkpointing, torch.compile, DDP.
_WRAPPERS = re.compile(r"(^|\.)(_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod|module)\.")


def vllm_weight_name(name: str) -> str:
    """The Hugging Face checkpoint name of a trainer state-dict key (what vLLM's `load_weights` expects)."""
    if name.startswith("base_model.model.") or ".lora_" in name:
        raise ValueError(f"weight {name!r}: a LoRA/PEFT model; merge the adapter first (training.checkpoint.export_model)")
    while _WRAPPERS.search(name):
        name = _WRAPPERS.sub(r"\1", name, count=1)
    return name


def vllm_weights(weights: Mapping[str, Any] | Iterable[tuple[str, Any]], dtype: Any = None, device: Any = None) -> Iterator[tuple[str, Any]]:
    """(checkpoint name, tensor) pairs for the engine: wrapper prefixes stripped, DTensors gathered, cast to `dtype`.

    Casting before the hand-over halves what crosses to the engine; vLLM fuses q/k/v and gate/up itself.
    """
    items = weights.items() if isinstance(weights, Mapping) else weights
    for name, t in items:
        if hasattr(t, "full_tensor"):  # a DTensor shard under FSDP
            t = t.full_tensor()
        t = t.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        if device is not None:
            t = t.to(device)
        yield vllm_weight_name(name), t


def _load_into_worker(worker: Any, weights: list[tuple[str, Any]]) -> int:
    """Runs inside each vLLM worker (`collective_rpc`): copy the tensors into the engine's parameters."""
    loaded = worker.model_runner.model.load_weights(weights)
    return len(loaded) if loaded is not None else len(weights)


class VLLMPolicy:
    """`VLLMPolicy(model_or_dir, config)`: a vLLM engine sampling for the RL loop.

    `update_weights(state_dict)` pushes the trainer's weights (version + 1); `sleep()` frees the
    engine's GPU memory until the next `update_weights` or `generate` wakes it.
    """

    def __init__(self, model_or_path: str | Path, config: VLLMConfig | None = None, *, stop_token_ids: list[int] | None = None,
                 name: str | None = None, **engine_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as e:
            raise ImportError("VLLMPolicy needs vLLM: pip install 'swe-rl[vllm]' (GPU only)") from e
        from swe_rl.policy.models import resolve_model

        self.config = config or VLLMConfig()
        path = resolve_model(model_or_path)
        if self.config.in_process:
            # The engine core in this process: collective_rpc then calls the worker directly,
            # so the weight sync passes GPU tensors by reference (no pickling, no copy to CPU).
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            self.llm = vllm.LLM(model=str(path), **(self.config.engine_kwargs() | engine_kwargs))
        else:
            # A GPU of its own: the engine core is a child process that sees only that GPU. The sync
            # pickles a module-level function and CPU tensors to it.
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
            os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            index = int(self.config.device.split(":")[1])  # cuda:N counts the devices this process sees
            physical = visible.split(",") if visible else [str(i) for i in range(index + 1)]
            if index >= len(physical):
                raise ValueError(f"vllm.device {self.config.device}: only {len(physical)} visible GPU(s) (CUDA_VISIBLE_DEVICES={visible})")
            os.environ["CUDA_VISIBLE_DEVICES"] = physical[index]
            try:
                self.llm = vllm.LLM(model=str(path), **(self.config.engine_kwargs() | engine_kwargs))
            finally:
                if visible is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES")
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = visible
        self.tokenizer = self.llm.get_tokenizer()
        self.stop_token_ids = sorted(stop_token_ids or default_stop_ids(self.tokenizer))
        self.name = name or str(model_or_path)
        self.version = 0
        self.asleep = False
        self._awake_tags: set[str] = set()  # woken parts while `asleep` (wake_up by tags)
        self._vllm = vllm
        import torch

        self._dtype = getattr(torch, self.config.dtype) if self.config.dtype != "auto" else self.llm.llm_engine.model_config.dtype

    def _sampling_params(self, params: SamplingParams, seed: int | None) -> Any:
        return self._vllm.SamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,  # vLLM: -1 (or 0 in recent versions) = off
            min_p=params.min_p,
            repetition_penalty=params.repetition_penalty,
            presence_penalty=0.0,
            frequency_penalty=0.0,
            max_tokens=params.max_new_tokens,
            logprobs=0,  # the sampled token's log-prob only
            stop_token_ids=self.stop_token_ids,
            skip_special_tokens=False,
            seed=seed,
        )

    def generate(self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None = None) -> list[Completion]:
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        self.wake_up()
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
            [self._sampling_params(params, seed) for seed in row_seeds(params, len(prompts), seeds)],
            use_tqdm=False,
        )
        completions = []
        for out in outputs:
            o = out.outputs[0]
            ids = list(o.token_ids)
            lps = [float(step[t].logprob) for step, t in zip(o.logprobs, ids)]
            finish = "stop" if o.finish_reason == "stop" else "length"
            completions.append(Completion(tuple(ids), tuple(lps), finish, o.text))  # type: ignore[arg-type]
        return completions

    def sleep(self) -> None:
        """Free the engine's GPU memory for the trainer (no-op without sleep mode)."""
        if self.config.sleep and not self.asleep:
            self.llm.sleep(level=self.config.sleep_level)
            self.asleep = True

    def _wake(self, tags: list[str] | None) -> None:
        if not self.asleep:
            return
        if tags is not None and "tags" in inspect.signature(self.llm.wake_up).parameters:
            self.llm.wake_up(tags=tags)
        else:
            self.llm.wake_up()
            self.asleep = False
            return
        self._awake_tags |= set(tags)
        if {"weights", "kv_cache"} <= self._awake_tags:
            self.asleep = False
            self._awake_tags = set()

    def wake_up(self) -> None:
        """Weights and KV cache back on the GPU."""
        self._wake(["weights", "kv_cache"])

    def update_weights(self, state_dict: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> None:
        """Load the trainer's weights into the engine in place and bump `version`.

        Weights first, KV cache after: during the copy only the weights occupy vLLM's share of the
        GPU. Cached prefixes were computed by the old weights and are dropped.
        """
        if state_dict is None:
            raise ValueError("VLLMPolicy keeps its own copy of the weights: update_weights needs the trainer's state dict")
        import torch

        device = "cpu" if not self.config.in_process else None  # CUDA tensors do not cross processes here
        weights = list(vllm_weights(state_dict, dtype=self._dtype, device=device))
        self._wake(["weights"])
        loaded = self.llm.collective_rpc(_load_into_worker, args=(weights,))
        if not loaded or min(loaded) == 0:
            raise RuntimeError(f"VLLMPolicy.update_weights: the engine loaded nothing of {len(weights)} tensors ({loaded})")
        del weights
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the bf16 copies, before the KV cache comes back
        self._wake(["kv_cache"])
        self.llm.reset_prefix_cache()
        self.version += 1
