"""VLLMPolicy: an in-process vLLM engine behind the Policy Protocol (GPU scale).

vLLM is imported lazily so the rest of swe-rl runs without it. The engine is built
with `generation_config="vllm"` (the model's own sampling defaults are ignored) and
`logprobs_mode="processed_logprobs"` (log-probs of the distribution actually sampled).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swe_rl.policy.chat import stop_token_ids as default_stop_ids
from swe_rl.types import Completion, SamplingParams


class VLLMPolicy:
    """`VLLMPolicy(model_or_dir, **engine_kwargs)`; engine_kwargs go to `vllm.LLM` (e.g. gpu_memory_utilization)."""

    def __init__(self, model_or_path: str | Path, *, stop_token_ids: list[int] | None = None, name: str | None = None,
                 **engine_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as e:
            raise ImportError("VLLMPolicy needs vLLM: pip install 'swe-rl[vllm]' (GPU only)") from e
        from swe_rl.policy.models import resolve_model

        path = resolve_model(model_or_path)
        kwargs = {"generation_config": "vllm", "logprobs_mode": "processed_logprobs", "dtype": "bfloat16"}
        self.llm = vllm.LLM(model=str(path), **(kwargs | engine_kwargs))
        self.tokenizer = self.llm.get_tokenizer()
        self.stop_token_ids = sorted(stop_token_ids or default_stop_ids(self.tokenizer))
        self.name = name or str(model_or_path)
        self.version = 0
        self._vllm = vllm

    def _sampling_params(self, params: SamplingParams, index: int) -> Any:
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
            seed=None if params.seed is None else params.seed + index,
        )

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
            [self._sampling_params(params, i) for i in range(len(prompts))],
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

    def update_weights(self, state_dict: dict[str, Any]) -> None:
        """Load trainer weights into the engine in place and bump `version`.

        `LLM.apply_model` runs the loader inside each worker (recent vLLM); older
        versions expose the single-GPU model handle directly.
        """
        weights = list(state_dict.items())
        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(lambda model: model.load_weights(weights))
        else:
            self.llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights(weights)
        self.llm.reset_prefix_cache()
        self.version += 1
