"""Plain records shared by every package: tasks, command results, trajectories, grades.

Nothing here does work; each package reads and writes these types, so the
contracts of DESIGN.md live in one place. Records that go to disk have
`to_dict` / `from_dict` with a schema version.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

SCHEMA_VERSION = 1

ExitReason = Literal["submitted", "turn_limit", "context_limit", "format_error_limit", "sandbox_error"]
GradeStatus = Literal["resolved", "unresolved", "error"]


@dataclass(frozen=True)
class InstallConfig:
    """How to build a task's environment (SWE-rebench's `install_config`)."""

    python: str = ""  # "3.11"; "" = the interpreter that runs swe-rl
    pre_install: tuple[str, ...] = ()  # shell commands run before `install` (repo checked out at /repo)
    install: str = ""  # shell command installing the repository itself, e.g. "pip install -e ."
    pip_packages: tuple[str, ...] = ()  # extra requirements, e.g. ("pytest==8.3.3",)
    test_cmd: str = "pytest -rA"  # the test ids are appended to it
    log_parser: str = "pytest"  # name in the log-parser registry of rewards/


@dataclass(frozen=True)
class Task:
    """One SWE-bench-schema task. Field names follow the public datasets exactly."""

    instance_id: str
    repo: str  # "owner/name"
    base_commit: str
    problem_statement: str
    patch: str = ""  # the gold patch (never shown to the agent)
    test_patch: str = ""  # tests that reveal the bug (never shown to the agent)
    FAIL_TO_PASS: tuple[str, ...] = ()
    PASS_TO_PASS: tuple[str, ...] = ()
    version: str = ""
    environment_setup_commit: str = ""  # "" = base_commit
    repo_url: str = ""  # git URL, local repository path or git bundle; "" = https://github.com/{repo}.git
    install_config: InstallConfig = field(default_factory=InstallConfig)
    image_name: str = ""  # container image for the docker backend
    hints_text: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # every other field of the source record

    @property
    def env_commit(self) -> str:
        return self.environment_setup_commit or self.base_commit


@dataclass(frozen=True)
class ExecResult:
    """What one command in a sandbox produced."""

    output: str  # stdout and stderr interleaved, capped (see `truncated`)
    exit_code: int  # -1 when the command was killed by the timeout
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0


@dataclass(frozen=True)
class SamplingParams:
    """Explicit sampling parameters. RL requires the neutral values (PAPER.md section 5)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 = off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None

    def assert_unbiased(self) -> None:
        """Raise unless these parameters sample from the policy's own distribution."""
        wrong = []
        if self.temperature != 1.0:
            wrong.append(f"temperature={self.temperature} (must be 1.0)")
        if self.top_p != 1.0:
            wrong.append(f"top_p={self.top_p} (must be 1.0)")
        if self.top_k not in (-1, 0):
            wrong.append(f"top_k={self.top_k} (must be off: -1)")
        if self.min_p != 0.0:
            wrong.append(f"min_p={self.min_p} (must be 0.0)")
        if self.repetition_penalty != 1.0:
            wrong.append(f"repetition_penalty={self.repetition_penalty} (must be 1.0)")
        if wrong:
            raise ValueError("RL sampling must be unbiased: " + ", ".join(wrong))


@dataclass(frozen=True)
class Completion:
    """One sampled continuation, exactly as the sampler produced it."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # log p(token) under the sampling policy, aligned with token_ids
    finish_reason: Literal["stop", "length"]
    text: str = ""


@dataclass(frozen=True)
class TestResult:
    test_id: str
    status: Literal["PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL", "MISSING"]


@dataclass(frozen=True)
class Grade:
    """The outcome of grading one patch in a fresh sandbox."""

    instance_id: str
    status: GradeStatus  # "error" = infrastructure failure: never a reward of 0
    patch_applied: bool
    reason: str = ""  # why unresolved / error, for humans
    fail_to_pass: Mapping[str, str] = field(default_factory=dict)  # test id -> status
    pass_to_pass: Mapping[str, str] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Grade:
        return cls(**d)


@dataclass
class Turn:
    """One assistant turn and what the environment answered."""

    response: str  # the assistant's full text (reasoning + command block)
    command: str | None  # the extracted command; None on a format error
    observation: str
    format_error: str | None = None  # "cannot extract command" / "multiple commands extracted"
    generation_s: float = 0.0
    execution_s: float = 0.0
    completion_tokens: int = 0


@dataclass
class Trajectory:
    """One episode, token-exact: what the trainer sees is what the sampler produced.

    `token_ids` is the whole conversation; `loss_mask[i]` is 1 only where token i was
    sampled by the policy (and, for RFT, not part of a format-error turn);
    `sampler_logprobs[i]` is the sampler's log-prob of token i (0.0 where the mask is 0).
    """

    instance_id: str
    sample_index: int
    messages: list[dict[str, str]]
    token_ids: list[int]
    loss_mask: list[int]
    sampler_logprobs: list[float]
    turns: list[Turn]
    exit_reason: ExitReason
    patch: str
    grade: Grade | None = None
    reward: float = 0.0
    reward_parts: dict[str, float] = field(default_factory=dict)
    policy_version: int = 0
    model: str = ""
    seed: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""  # infrastructure error text when exit_reason == "sandbox_error"
    schema_version: int = SCHEMA_VERSION

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trajectory:
        d = dict(d)
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"trajectory {d.get('instance_id')!r}: schema_version {d.get('schema_version')} "
                f"is not {SCHEMA_VERSION}"
            )
        d["turns"] = [Turn(**t) for t in d["turns"]]
        if d.get("grade") is not None:
            d["grade"] = Grade.from_dict(d["grade"])
        return cls(**d)
