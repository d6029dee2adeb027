"""OpenAIPolicy: any OpenAI-compatible server (vLLM's `vllm serve`, `swe-rl model serve`, hosted APIs).

Token-exact where the server allows it: `/v1/completions` with the prompt as token ids
and the sampled ids and log-probs read back (vLLM's `return_token_ids` /
`return_tokens_as_token_ids`). Otherwise `/v1/chat/completions`, recorded as text:
those completions are NOT token-exact (ids come from local tokenisation, log-probs are
0.0), fit for evaluation, not for RL. Plain urllib; one request per prompt, in parallel.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Literal, Sequence

from swe_rl.policy.chat import end_of_turn_id, stop_token_ids
from swe_rl.policy.protocol import row_seeds
from swe_rl.types import Completion, SamplingParams

_CHATML = re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n", re.S)
_FALLBACK_STATUS = {400, 404, 405, 422, 501}  # "this server does not do token-id completions"


def chatml_messages(prompt_text: str) -> list[dict[str, str]]:
    """Split a ChatML prompt that ends with an open assistant header back into messages."""
    header = "<|im_start|>assistant\n"
    if not prompt_text.endswith(header):
        raise ValueError("chat mode needs a ChatML prompt ending with '<|im_start|>assistant\\n'")
    messages = [{"role": r, "content": c} for r, c in _CHATML.findall(prompt_text[: -len(header)])]
    if not messages:
        raise ValueError("chat mode: no ChatML messages found in the prompt")
    return messages


class OpenAIPolicy:
    """A Policy backed by an OpenAI-compatible HTTP server.

    `mode`: "completions" (token ids in and out; needs vLLM-style extensions), "chat"
    (text; needs a ChatML `tokenizer` to turn token prompts back into messages), or
    "auto" (try completions once, fall back to chat if the server refuses or returns no ids).
    Every sampling parameter is sent explicitly, so a server's model-specific defaults
    (vLLM reads `generation_config.json` unless told otherwise) never apply.
    Prompt i of a call is sent with its seed (`row_seeds`: seeds[i], or params.seed + i).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        tokenizer: Any = None,
        mode: Literal["auto", "completions", "chat"] = "auto",
        timeout: float = 600.0,
        max_workers: int = 8,
        name: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url.rstrip("/").endswith("/v1") else base_url.rstrip("/") + "/v1"
        self.model = model
        self.api_key = api_key
        self.tokenizer = tokenizer
        self.mode = mode
        self.timeout = timeout
        self.max_workers = max_workers
        self.name = name or model
        self.version = 0

    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url + route
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise ServerError(e.code, f"{url}: HTTP {e.code}: {detail}") from None
        except urllib.error.URLError as e:
            raise ConnectionError(f"{url}: {e.reason}") from None

    def _sampling(self, params: SamplingParams, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": params.max_new_tokens, "temperature": params.temperature,
            "top_p": params.top_p, "top_k": params.top_k, "min_p": params.min_p,
            "repetition_penalty": params.repetition_penalty,
        }
        if seed is not None:
            body["seed"] = seed
        return body

    def generate(self, prompts: list[list[int]], params: SamplingParams, seeds: Sequence[int] | None = None) -> list[Completion]:
        if not prompts:
            return []
        seeds = row_seeds(params, len(prompts), seeds)
        if self.mode == "auto":
            try:
                first = self._complete(prompts[0], params, seeds[0])
            except (ServerError, MissingTokenIds) as e:
                if isinstance(e, ServerError) and e.status not in _FALLBACK_STATUS:
                    raise
                self.mode = "chat"
            else:
                self.mode = "completions"
                return [first] + self._map(self._complete, prompts[1:], params, seeds[1:])
        if self.mode == "completions":
            return self._map(self._complete, prompts, params, seeds)
        return self._map(self._chat_prompt, prompts, params, seeds)

    def _map(self, fn, prompts: list[list[int]], params: SamplingParams, seeds: list[int | None]) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(lambda ps: fn(ps[0], params, ps[1]), zip(prompts, seeds)))

    def _complete(self, prompt: list[int], params: SamplingParams, seed: int | None) -> Completion:
        body = self._sampling(params, seed) | {
            "prompt": list(prompt), "logprobs": 0, "return_tokens_as_token_ids": True,
            "return_token_ids": True, "skip_special_tokens": False,
        }
        if self.tokenizer is not None:
            body["stop_token_ids"] = stop_token_ids(self.tokenizer)
        choice = self._post("/completions", body)["choices"][0]
        lp = choice.get("logprobs") or {}
        ids = choice.get("token_ids")
        if ids is None and lp.get("tokens") and all(str(t).startswith("token_id:") for t in lp["tokens"]):
            ids = [int(str(t).split(":", 1)[1]) for t in lp["tokens"]]
        logprobs = lp.get("token_logprobs")
        if ids is None or logprobs is None or len(ids) != len(logprobs):
            raise MissingTokenIds(f"{self.base_url}/completions returned no sampled token ids with log-probs")
        return Completion(tuple(ids), tuple(float(x) for x in logprobs), _finish(choice), choice.get("text", ""))

    def _chat_prompt(self, prompt: list[int], params: SamplingParams, seed: int | None) -> Completion:
        if self.tokenizer is None:
            raise ValueError("OpenAIPolicy in chat mode needs a tokenizer to turn token prompts into messages")
        text = self.tokenizer.decode(prompt, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return self.chat(chatml_messages(text), replace(params, seed=seed))

    def chat(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        """One chat completion, as text. token_ids are a local tokenisation (empty without a
        tokenizer), plus the end-of-turn token when the turn stopped; log-probs are 0.0."""
        choice = self._post("/chat/completions", self._sampling(params, params.seed) | {"messages": messages})["choices"][0]
        content = (choice.get("message") or {}).get("content") or ""
        finish = _finish(choice)
        ids: list[int] = []
        if self.tokenizer is not None:
            ids = self.tokenizer.encode(content, add_special_tokens=False)
            if finish == "stop":
                ids.append(end_of_turn_id(self.tokenizer))
        return Completion(tuple(ids), (0.0,) * len(ids), finish, content)


def _finish(choice: dict[str, Any]) -> Literal["stop", "length"]:
    reason = choice.get("finish_reason")
    if reason not in ("stop", "length"):
        raise ServerError(200, f"unexpected finish_reason {reason!r} from server")
    return reason


class ServerError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MissingTokenIds(RuntimeError):
    pass
