"""OpenAIPolicy against a real OpenAI-compatible server (policy/server.py over HFPolicy on `tiny`)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from swe_rl.policy.chat import TrajectoryBuilder
from swe_rl.policy.logprobs import token_logprobs
from swe_rl.policy.openai import OpenAIPolicy, ServerError, chatml_messages
from swe_rl.policy.server import start_server
from swe_rl.types import SamplingParams

MESSAGES = [{"role": "system", "content": "sys"}, {"role": "user", "content": "list the files"}]


@pytest.fixture(scope="module")
def server(tiny_policy):
    httpd, url = start_server(tiny_policy)
    yield url
    httpd.shutdown()


@pytest.fixture(scope="module")
def chat_only_server(tiny_policy):
    httpd, url = start_server(tiny_policy, chat_only=True)
    yield url
    httpd.shutdown()


def test_completions_are_token_exact_and_match_local_sampling(server, tiny_policy, tokenizer):
    remote = OpenAIPolicy(server, "tiny", tokenizer=tokenizer)
    prompts = [TrajectoryBuilder(tokenizer, MESSAGES).prompt_ids(), tokenizer.encode("hello", add_special_tokens=False)]
    params = SamplingParams(max_new_tokens=16, seed=11)
    out = remote.generate(prompts, params)
    assert remote.mode == "completions"
    for i, (p, c) in enumerate(zip(prompts, out)):
        # prompt i is sampled with seed 11 + i: the same as asking the local policy for that prompt alone
        (local,) = tiny_policy.generate([p], SamplingParams(max_new_tokens=16, seed=11 + i))
        assert c == local
        ref = token_logprobs(tiny_policy.model, p + list(c.token_ids))[len(p):]
        assert max(abs(a - b) for a, b in zip(ref, c.logprobs)) < 1e-4


def test_auto_falls_back_to_chat_when_server_has_no_completions(chat_only_server, tokenizer):
    remote = OpenAIPolicy(chat_only_server, "tiny", tokenizer=tokenizer)
    b = TrajectoryBuilder(tokenizer, MESSAGES)
    (c,) = remote.generate([b.prompt_ids()], SamplingParams(max_new_tokens=16, seed=1))
    assert remote.mode == "chat"
    assert set(c.logprobs) == {0.0}  # text only: not token-exact
    assert tokenizer.decode(list(c.token_ids), skip_special_tokens=True) == c.text
    assert b.add_completion(c) == c.text


def test_completions_mode_without_completions_route_is_an_error(chat_only_server):
    with pytest.raises(ServerError, match="HTTP 404"):
        OpenAIPolicy(chat_only_server, "tiny", mode="completions").generate([[1, 2, 3]], SamplingParams())


def test_chat_messages_round_trip(tokenizer):
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert chatml_messages(text) == MESSAGES
    with pytest.raises(ValueError, match="assistant"):
        chatml_messages("<|im_start|>user\nhi<|im_end|>\n")


def test_server_rejects_bad_requests(server):
    def post(route, body):
        req = urllib.request.Request(server + route, data=json.dumps(body).encode(), method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        return e.value.code, json.loads(e.value.read())["error"]["message"]

    assert post("/v1/completions", {"prompt": {"x": 1}}) == (400, "prompt must be a string, a list of token ids, or a list of those")
    assert post("/v1/completions", {"prompt": [1], "n": 2})[1] == "n=2 is not supported (only 1)"
    assert post("/v1/chat/completions", {"messages": "hi"})[0] == 400
    assert post("/v1/nope", {})[0] == 404
    with urllib.request.urlopen(server + "/v1/models", timeout=30) as r:
        assert json.loads(r.read())["data"][0]["id"] == "tiny"


def test_server_down_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        OpenAIPolicy(f"http://127.0.0.1:{port}", "tiny", timeout=5).generate([[1]], SamplingParams())
