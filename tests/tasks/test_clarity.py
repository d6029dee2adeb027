"""The LLM clarity score against a real OpenAI-compatible HTTP server (stdlib, deterministic by statement)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from swe_rl.tasks.clarity import ClarityScorer, parse_score
from swe_rl.types import Task

SHORT = 60  # statements shorter than this are "unclear" (3); see Judge.reply


class Judge(BaseHTTPRequestHandler):
    """/v1/chat/completions: 3 for a short statement, 0 for a long one, prose for one that says UNSURE."""

    requests: list[str] = []

    @staticmethod
    def reply(statement: str) -> str:
        if "UNSURE" in statement:
            return "It is hard to say without the code."
        return "Score: 3" if len(statement) < SHORT else "0"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions" or body["messages"][0]["role"] != "system":
            self.send_error(404)
            return
        statement = body["messages"][-1]["content"]
        Judge.requests.append(statement)
        data = json.dumps({"choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": self.reply(statement)}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def judge_url():
    Judge.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def task(iid: str, statement: str) -> Task:
    return Task(iid, "local/x", "0" * 40, statement)


@pytest.mark.parametrize("reply, score", [
    ("2", 2), (" 0\n", 0), ("Score: 3", 3), ("score=1", 1), ("1/3", 1), ("2.", 2),
    ("4", None), ("1 or 2", None), ("", None), ("The score is 2 because the issue is vague.", None), ("-1", None),
])
def test_parse_score_accepts_only_a_bare_score(reply, score):
    assert parse_score(reply) == score


def test_scores_drop_rule_and_cache(judge_url, tmp_path):
    tasks = [task("short", "it breaks"), task("long", "x" * SHORT + " a full report with a reproduction"),
             task("unsure", "UNSURE " + "y" * SHORT)]
    scorer = ClarityScorer(judge_url, "judge", cache=tmp_path, workers=2)
    scores = scorer.score_all(tasks)
    assert {k: v.score for k, v in scores.items()} == {"short": 3, "long": 0, "unsure": None}
    assert scores["unsure"].reply.startswith("It is hard")
    assert [scorer.drops(scores[t.instance_id]) for t in tasks] == [True, False, False]  # unscored is kept
    assert scorer.asked == 3 and sorted(Judge.requests) == sorted(t.problem_statement for t in tasks)

    again = ClarityScorer(judge_url, "judge", cache=tmp_path)  # a rerun: every score (unscored too) is cached
    assert again.score_all(tasks) == scores and again.asked == 0 and len(Judge.requests) == 3
    other_model = ClarityScorer(judge_url, "another-judge", cache=tmp_path)
    other_model.score(tasks[0].problem_statement)
    assert other_model.asked == 1  # the model is part of the cache key


def test_drop_threshold_is_configurable(judge_url, tmp_path):
    with pytest.raises(ValueError, match="0..3"):
        ClarityScorer(judge_url, drop=4, cache=tmp_path)
    strict = ClarityScorer(judge_url, drop=0, cache=tmp_path)
    assert strict.drops(strict.score("x" * SHORT * 2))  # 0 >= 0


def test_unreachable_endpoint_fails_naming_it(tmp_path):
    scorer = ClarityScorer("http://127.0.0.1:9", cache=tmp_path, timeout=5)
    with pytest.raises(RuntimeError, match=r"127\.0\.0\.1:9/v1/chat/completions"):
        scorer.score("anything")
    assert not list(tmp_path.rglob("*.json"))  # a failed request is not cached as unscored


@pytest.mark.slow  # grades the synthesized tasks (conftest.py)
def test_filter_cli_adds_the_clarity_row(synth, judge_url, tmp_path):
    from swe_rl.tasks.filter import filter_cli
    from swe_rl.tasks.loaders import load_tasks

    records = [json.loads(x) for x in synth["out"].read_text().splitlines()[:3]]
    records[0]["problem_statement"] = "broken"  # short: scored 3, dropped
    records[1]["problem_statement"] += "\nUNSURE"  # unscored: kept and listed
    src = synth["out"].with_name("clarity.jsonl")  # beside the tasks: repo_url "repos/calc" is relative
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "kept.jsonl"
    assert filter_cli(str(src), out=out, reruns=1, cache=synth["cache"], jobs=2, llm_url=judge_url,
                      llm_model="judge") == 0
    steps = {s["step"]: s for s in json.loads((tmp_path / "kept.funnel.json").read_text())["steps"]}
    row = steps["LLM clarity score < 3"]
    assert row["kept"] == 2 and list(row["dropped"]) == [records[0]["instance_id"]]
    assert list(row["unscored_kept"]) == [records[1]["instance_id"]]
    kept = load_tasks(out)
    assert [t.instance_id for t in kept] == [r["instance_id"] for r in records[1:]]
    assert [t.extra["clarity"]["score"] for t in kept] == [None, 0]
