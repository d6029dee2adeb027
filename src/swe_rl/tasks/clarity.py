"""The LLM clarity score of a problem statement (PAPER.md section 3: 0-3, the worst score, 3, is dropped).

Any OpenAI-compatible chat endpoint rates each statement; the reply is parsed strictly
(`parse_score`) and a reply without a score is *unscored*: kept by the funnel and listed in
its clarity step, never silently dropped. Scores (unscored replies too) are cached on disk
per (endpoint, model, prompt, statement), so a rerun of `swe-rl tasks filter` does not re-ask.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from swe_rl.types import SamplingParams, Task

# The SWE-bench Verified annotation rubric the paper's 0-3 scale comes from.
SYSTEM = """You review GitHub issues written for a Python repository before they are given to an engineer.
Rate how clearly the issue specifies what a successful fix must do:
0 - well specified: it is clear what a successful solution looks like.
1 - some blanks to fill in, but there is a sensible interpretation of what is required.
2 - vague: there is room for ambiguity, it is unclear what a successful solution would look like.
3 - almost impossible to understand what is being asked without further information.
Answer with the score only: one digit, 0, 1, 2 or 3."""
PROMPT_VERSION = "clarity-v1"  # part of the cache key: change it when SYSTEM or the parsing changes

# The whole reply, stripped, must be the score: "2", "2.", "Score: 2" or "2/3" (any case).
_SCORE = re.compile(r"(?i)^(?:score\s*[:=]?\s*)?([0-3])(?:\s*/\s*3)?\.?$")


def parse_score(reply: str) -> int | None:
    """The 0-3 score of a reply, or None when the reply is anything but a score (prose, 4, "1 or 2", empty)."""
    m = _SCORE.match(reply.strip())
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class ClarityScore:
    score: int | None  # None: the reply held no score (unscored)
    reply: str

    def to_dict(self) -> dict:
        return {"score": self.score}


class ClarityScorer:
    """Rates statements through `llm_url` (an OpenAI-compatible base URL, with or without /v1)."""

    def __init__(self, llm_url: str, model: str = "default", *, drop: int = 3, cache: Path | None = None,
                 workers: int = 4, timeout: float = 120.0) -> None:
        if not 0 <= drop <= 3:
            raise ValueError(f"clarity drop score must be in 0..3, got {drop}")
        from swe_rl.paths import cache_dir
        from swe_rl.policy.openai import OpenAIPolicy

        self.llm_url, self.model, self.drop, self.workers = llm_url, model, drop, workers
        self.cache = (Path(cache) if cache is not None else cache_dir()) / "clarity"
        self.policy = OpenAIPolicy(llm_url, model, mode="chat", max_workers=1, timeout=timeout)
        self.asked = 0  # requests sent by this scorer (the rest came from the cache)

    def drops(self, s: ClarityScore) -> bool:
        return s.score is not None and s.score >= self.drop

    def score_all(self, tasks: list[Task]) -> dict[str, ClarityScore]:
        """instance_id -> score; uncached statements are asked `workers` at a time."""
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            return dict(zip([t.instance_id for t in tasks], pool.map(self.score, [t.problem_statement for t in tasks])))

    def score(self, statement: str) -> ClarityScore:
        key = hashlib.sha256(json.dumps([PROMPT_VERSION, self.policy.base_url, self.model, statement]).encode()).hexdigest()
        path = self.cache / key[:2] / f"{key}.json"
        if path.exists():
            data = json.loads(path.read_text())
            return ClarityScore(data["score"], data["reply"])
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": statement}]
        try:
            done = self.policy.chat(messages, SamplingParams(temperature=0.0, max_new_tokens=16, seed=0))
        except Exception as e:  # an unreachable endpoint is an error of the run, not an unscored task
            raise RuntimeError(f"clarity score: {self.policy.base_url}/chat/completions failed: {e}") from e
        self.asked += 1
        result = ClarityScore(parse_score(done.text), done.text)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"score": result.score, "reply": result.reply, "model": self.model}))
        tmp.replace(path)  # atomic: a concurrent or killed run never reads half a file
        return result
