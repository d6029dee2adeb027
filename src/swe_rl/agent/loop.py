"""The episode loop: prompt -> completion -> parse -> run in the sandbox -> observation, until an ending.

`Episode` is a small step-wise state machine (prompt_ids / step / trajectory) so a rollout
engine can batch the generation calls of many episodes; `run_episode` drives one episode
with one policy. Tokens are accumulated by policy/chat.py's TrajectoryBuilder, never re-tokenised.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from swe_rl.agent.observation import STATE_DIR, command_output, format_observation, read_status
from swe_rl.agent.parser import parse_action
from swe_rl.agent.patch import workspace_patch
from swe_rl.agent.prompts import build_messages, resolve_prompts_dir
from swe_rl.policy.chat import TrajectoryBuilder
from swe_rl.policy.protocol import Policy
from swe_rl.sandbox.protocol import Sandbox, SandboxError, SandboxUnavailable
from swe_rl.types import Completion, ExitReason, SamplingParams, Task, Trajectory, Turn

SUBMIT_SENTINEL = "<<SWE_RL_SUBMIT>>"  # printed by the `submit` tool (agent/tools/_toollib.py)
INFRA_ERRORS = (SandboxError, SandboxUnavailable)


@dataclass(frozen=True)
class AgentConfig:
    """The scaffold's knobs. Defaults suit the CPU demo's small model; the paper used far larger budgets."""

    max_turns: int = 30  # assistant turns before the episode ends with "turn_limit"
    context_length: int = 8192  # prompt + max_new_tokens may not exceed this ("context_limit")
    max_new_tokens: int = 512  # per assistant turn
    output_limit: int = 4000  # characters of command output shown; the middle is cut beyond it
    window: int = 50  # lines shown by open/goto/scroll_* (SWE_RL_WINDOW in the sandbox)
    format_error_limit: int = 0  # end after this many consecutive format errors; 0 = never
    command_timeout_s: float = 60.0  # wall clock per command; the process tree is killed after it
    # wall clock for the tests that grade an episode's patch: a patch that hangs them is not resolved after it
    grade_timeout_s: float = 600.0
    demonstration_file: str = ""  # a rendered one-shot demonstration (agent/demonstration.py); "" = none
    prompts_dir: str = ""  # prompt templates (system.txt, instance.txt, ...; agent/prompts.py); "" = configs/prompts
    temperature: float = 1.0  # sampling: the neutral values are what RL needs (PAPER.md section 5)
    top_p: float = 1.0
    top_k: int = -1  # -1 = off
    min_p: float = 0.0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("command_timeout_s", "grade_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            max_new_tokens=self.max_new_tokens,
        )


def format_error_message(error: str) -> str:
    return (
        f"Format error: {error}. Reply with a short thought and exactly one command"
        " in one fenced block:\n```bash\n<command>\n```"
    )


class Episode:
    """One task in one sandbox. Call `prompt_ids()`, generate, `step(completion)`, until `done`."""

    def __init__(self, task: Task, sandbox: Sandbox, tokenizer, cfg: AgentConfig, *, sample_index: int = 0):
        self.task, self.sandbox, self.cfg, self.sample_index = task, sandbox, cfg, sample_index
        demo = Path(cfg.demonstration_file).read_text() if cfg.demonstration_file else ""
        messages = build_messages(task, sandbox.workdir, demo, resolve_prompts_dir(cfg.prompts_dir))
        self.builder = TrajectoryBuilder(tokenizer, messages)
        self.turns: list[Turn] = []
        self.exit_reason: ExitReason | None = None
        self.error = ""
        self.patch = ""
        self._format_errors_in_a_row = 0
        self._started = time.perf_counter()
        try:
            self._setup_shell()
        except INFRA_ERRORS as e:
            self._end("sandbox_error", error=f"{type(e).__name__}: {e}")
        self._check_context()

    @property
    def done(self) -> bool:
        return self.exit_reason is not None

    def prompt_ids(self) -> list[int]:
        return self.builder.prompt_ids()

    def step(self, completion: Completion, generation_s: float = 0.0) -> bool:
        """Apply one sampled assistant turn; returns True when the episode has ended."""
        assert not self.done, "step() after the episode ended"
        text = self.builder.add_completion(completion)
        action = parse_action(text)
        turn = Turn(response=text, command=action.command, observation="", format_error=action.error,
                    generation_s=generation_s, completion_tokens=len(completion.token_ids))
        self.turns.append(turn)
        started = time.perf_counter()
        try:
            if action.error:
                self._format_errors_in_a_row += 1
                output = format_error_message(action.error)
            else:
                self._format_errors_in_a_row = 0
                result = self.sandbox.run(action.command + "\n", timeout=self.cfg.command_timeout_s)
                if SUBMIT_SENTINEL in result.output:
                    return self._end("submitted")
                output = command_output(result, self.cfg.output_limit, self.cfg.command_timeout_s)
            turn.observation = format_observation(output, *read_status(self.sandbox))
        except INFRA_ERRORS as e:
            return self._end("sandbox_error", error=f"{type(e).__name__}: {e}")
        finally:
            turn.execution_s = time.perf_counter() - started
        if self.cfg.format_error_limit and self._format_errors_in_a_row >= self.cfg.format_error_limit:
            return self._end("format_error_limit")
        if len(self.turns) >= self.cfg.max_turns:
            return self._end("turn_limit")  # the last observation is kept in the Turn, not in the tokens
        self.builder.add_observation(turn.observation)
        return self._check_context()

    def trajectory(self, policy: Policy | None = None, seed: int | None = None) -> Trajectory:
        assert self.done, "trajectory() before the episode ended"
        b = self.builder
        return Trajectory(
            instance_id=self.task.instance_id,
            sample_index=self.sample_index,
            messages=list(b.messages),
            token_ids=list(b.token_ids),
            loss_mask=list(b.loss_mask),
            sampler_logprobs=list(b.sampler_logprobs),
            turns=self.turns,
            exit_reason=self.exit_reason,
            patch=self.patch,
            policy_version=policy.version if policy is not None else 0,
            model=policy.name if policy is not None else "",
            seed=seed,
            timings={
                "generation_s": sum(t.generation_s for t in self.turns),
                "execution_s": sum(t.execution_s for t in self.turns),
                "episode_s": time.perf_counter() - self._started,
            },
            error=self.error,
        )

    # ------------------------------------------------------------ internals

    def _setup_shell(self) -> None:
        # The tools' settings go in files of their state dir, not in exports: a sandbox may restart
        # its shell (after a timeout) and lose exported variables, while /tmp survives.
        state = shlex.quote(STATE_DIR)
        res = self.sandbox.run(
            f"mkdir -p {state} && rm -f {state}/current_file {state}/first_line"
            f" && echo {self.cfg.window} > {state}/window && cd {shlex.quote(self.sandbox.workdir)}",
            timeout=30,
        )
        if res.exit_code != 0:
            raise SandboxError(f"shell setup failed (exit {res.exit_code}): {res.output[:500]}")

    def _check_context(self) -> bool:
        if not self.done and len(self.builder.prompt_ids()) + self.cfg.max_new_tokens > self.cfg.context_length:
            self._end("context_limit")
        return self.done

    def _end(self, reason: ExitReason, error: str = "") -> bool:
        self.exit_reason, self.error = reason, error
        if reason != "sandbox_error":  # a broken sandbox has no trustworthy patch; the caller retries
            try:
                self.patch = workspace_patch(self.sandbox)
            except INFRA_ERRORS as e:
                self.exit_reason, self.error = "sandbox_error", f"taking the patch: {type(e).__name__}: {e}"
        return True


def turn_seed(seed: int, instance_id: str, sample_index: int, turn: int) -> int:
    """The sampling seed of one turn of one episode: a function of the run's seed and the episode alone.

    Never of the batch the turn is generated in, so a resumed, retried or re-batched run samples
    what an uninterrupted one did (up to the last bits of the logits, which padding can move).
    """
    digest = hashlib.sha256(f"{seed}:{instance_id}:{sample_index}:{turn}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def run_episode(task: Task, sandbox: Sandbox, policy: Policy, cfg: AgentConfig, *,
                sample_index: int = 0, seed: int | None = None) -> Trajectory:
    """Run one episode to its end and return the token-exact trajectory (patch included, not graded)."""
    episode = Episode(task, sandbox, policy.tokenizer, cfg, sample_index=sample_index)
    params = cfg.sampling()
    while not episode.done:
        started = time.perf_counter()
        seeds = None if seed is None else [turn_seed(seed, task.instance_id, sample_index, len(episode.turns))]
        [completion] = policy.generate([episode.prompt_ids()], params, seeds)
        episode.step(completion, generation_s=time.perf_counter() - started)
    return episode.trajectory(policy, seed)
