"""Hand-built trajectories for the evaluation tests: every number the report derives from them is known."""

from __future__ import annotations

from swe_rl.types import Grade, Trajectory, Turn


def trajectory(
    task: str,
    run: int,
    resolved: bool | None,
    *,
    tokens: tuple[int, ...] = (10,),
    format_errors: int = 0,
    exit_reason: str = "submitted",
    patch: str = "",
    grade_status: str | None = None,
    observation: str = "ok\n(Current directory: /repo, current file: none) bash-$",
    error: str = "",
) -> Trajectory:
    """One episode with a turn per entry of `tokens`; the first `format_errors` turns are format errors.

    `resolved=None` leaves it ungraded; `grade_status="error"` makes an infrastructure-error grade.
    """
    turns = []
    for i, n in enumerate(tokens):
        if i < format_errors:
            turns.append(Turn(response=f"thinking {i}, no command", command=None, observation="cannot extract command",
                              format_error="cannot extract command", completion_tokens=n))
        else:
            turns.append(Turn(response=f"Let me look.\n```bash\nls {i}\n```", command=f"ls {i}", observation=observation,
                              completion_tokens=n))
    grade = None
    if resolved is not None or grade_status is not None:
        status = grade_status or ("resolved" if resolved else "unresolved")
        grade = Grade(task, status, patch_applied=bool(patch), reason="" if resolved else "tests failed",
                      fail_to_pass={"tests/test_x.py::test_bug": "PASSED" if resolved else "FAILED"},
                      pass_to_pass={"tests/test_x.py::test_ok": "PASSED"})
    messages = [{"role": "system", "content": "You are a software engineer."},
                {"role": "user", "content": f"Fix the bug in {task}."}]
    return Trajectory(instance_id=task, sample_index=run, messages=messages, token_ids=[1, 2, 3], loss_mask=[0, 1, 1],
                      sampler_logprobs=[0.0, -0.5, -0.25], turns=turns, exit_reason=exit_reason, patch=patch, grade=grade,
                      reward=1.0 if resolved else 0.0, model="smollm2-135m", error=error)
