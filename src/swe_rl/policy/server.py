"""A small OpenAI-compatible HTTP server in front of any Policy that has a tokenizer.

It speaks the subset `OpenAIPolicy` uses, with vLLM's extensions: `/v1/completions`
with token-id prompts, `logprobs`, `return_tokens_as_token_ids`, `return_token_ids`,
and `/v1/chat/completions`. `swe-rl model serve` runs it; tests use it as a real server.
Requests are served one at a time (no batching across requests).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from swe_rl.types import Completion, SamplingParams


class BadRequest(ValueError):
    pass


def _params(body: dict[str, Any]) -> SamplingParams:
    for key in ("n", "best_of"):
        if body.get(key, 1) != 1:
            raise BadRequest(f"{key}={body[key]} is not supported (only 1)")
    if body.get("echo"):
        raise BadRequest("echo is not supported")
    try:
        return SamplingParams(
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            top_k=int(body.get("top_k", -1)),
            min_p=float(body.get("min_p", 0.0)),
            repetition_penalty=float(body.get("repetition_penalty", 1.0)),
            max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 16),
            seed=None if body.get("seed") is None else int(body["seed"]),
        )
    except (TypeError, ValueError) as e:
        raise BadRequest(f"bad sampling parameter: {e}") from None


class PolicyServer:
    """Turns OpenAI-style request bodies into `policy.generate` calls and back."""

    def __init__(self, policy: Any, model_name: str | None = None) -> None:
        if policy.tokenizer is None:
            raise ValueError("PolicyServer needs a policy with a tokenizer")
        self.policy = policy
        self.model_name = model_name or policy.name
        self._lock = threading.Lock()

    def _generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        with self._lock:
            return self.policy.generate(prompts, params)

    def _token_text(self, token_id: int) -> str:
        return self.policy.tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "swe-rl"}]}

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        tok = self.policy.tokenizer
        if isinstance(prompt, str):
            prompts = [tok.encode(prompt, add_special_tokens=False)]
        elif isinstance(prompt, list) and prompt and all(isinstance(x, int) for x in prompt):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(x, (list, str)) for x in prompt):
            prompts = [p if isinstance(p, list) else tok.encode(p, add_special_tokens=False) for p in prompt]
        else:
            raise BadRequest("prompt must be a string, a list of token ids, or a list of those")
        params = _params(body)
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        choices, n_out = [], 0
        for i, c in enumerate(self._generate(prompts, params)):
            n_out += len(c.token_ids)
            choice: dict[str, Any] = {"index": i, "text": c.text, "finish_reason": c.finish_reason}
            if body.get("logprobs") is not None:
                tokens = [f"token_id:{t}" if as_ids else self._token_text(t) for t in c.token_ids]
                choice["logprobs"] = {"tokens": tokens, "token_logprobs": list(c.logprobs), "top_logprobs": None}
            if body.get("return_token_ids"):
                choice["token_ids"] = list(c.token_ids)
                choice["prompt_token_ids"] = prompts[i]
            choices.append(choice)
        return self._envelope("text_completion", choices, prompts, choices_tokens=n_out)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise BadRequest("messages must be a list of {role, content}")
        tok = self.policy.tokenizer
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt = tok.encode(text, add_special_tokens=False)
        (c,) = self._generate([prompt], _params(body))
        ids = list(c.token_ids)
        stops = getattr(self.policy, "stop_token_ids", [])
        body_ids = ids[:-1] if ids and ids[-1] in stops else ids  # the end-of-turn token is not content
        content = tok.decode(body_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        choice: dict[str, Any] = {
            "index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": c.finish_reason,
        }
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [
                {"token": self._token_text(t), "logprob": lp, "top_logprobs": []}
                for t, lp in zip(body_ids, c.logprobs)
            ]}
        return self._envelope("chat.completion", [choice], [prompt], choices_tokens=len(ids))

    def _envelope(self, obj: str, choices: list, prompts: list[list[int]], choices_tokens: int) -> dict[str, Any]:
        prompt_tokens = sum(len(p) for p in prompts)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}", "object": obj, "created": int(time.time()), "model": self.model_name,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": choices_tokens,
                      "total_tokens": prompt_tokens + choices_tokens},
        }


def _handler(server: PolicyServer, chat_only: bool = False) -> type[BaseHTTPRequestHandler]:
    routes = {"/v1/chat/completions": server.chat}
    if not chat_only:  # chat_only mimics hosted APIs that take no token-id prompts
        routes["/v1/completions"] = server.completions

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, server.models())
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            route = routes.get(self.path.rstrip("/"))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if route is None:
                return self._error(404, f"no route {self.path}")
            try:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise BadRequest("request body must be a JSON object")
                self._send(200, route(body))
            except (json.JSONDecodeError, BadRequest) as e:
                self._error(400, str(e))

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise
            pass

    return Handler


def start_server(
    policy: Any, host: str = "127.0.0.1", port: int = 0, *, chat_only: bool = False
) -> tuple[ThreadingHTTPServer, str]:
    """Serve `policy` from a daemon thread; returns (server, base_url). `server.shutdown()` stops it."""
    httpd = ThreadingHTTPServer((host, port), _handler(PolicyServer(policy), chat_only))
    threading.Thread(target=httpd.serve_forever, daemon=True, name="policy-server").start()
    return httpd, f"http://{host}:{httpd.server_address[1]}"


def serve_cli(model: str, host: str = "127.0.0.1", port: int = 8000, cache: Path | None = None) -> int:
    from swe_rl.policy.hf import HFPolicy
    from swe_rl.policy.models import resolve_model

    policy = HFPolicy(resolve_model(model, cache), name=model)
    httpd = ThreadingHTTPServer((host, port), _handler(PolicyServer(policy)))
    print(f"serving {model} at http://{host}:{httpd.server_address[1]}/v1", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
