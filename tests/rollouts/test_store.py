import json
from pathlib import Path

import pytest

from swe_rl.rollouts.store import append_trajectory, read_trajectories, repair_torn_tail, write_trajectories
from swe_rl.types import Grade, Trajectory, Turn


def make(instance_id: str, sample_index: int) -> Trajectory:
    return Trajectory(
        instance_id=instance_id,
        sample_index=sample_index,
        messages=[{"role": "user", "content": "fix it"}],
        token_ids=[1, 2, 3],
        loss_mask=[0, 1, 1],
        sampler_logprobs=[0.0, -0.5, -0.25],
        turns=[Turn(response="```\nsubmit\n```", command="submit", observation="")],
        exit_reason="submitted",
        patch="diff --git a/x b/x\n",
        grade=Grade(instance_id, "resolved", True, fail_to_pass={"t::a": "PASSED"}),
    )


def test_round_trip_and_torn_tail(tmp_path: Path) -> None:
    out = tmp_path / "traj.jsonl"
    append_trajectory(out, make("a", 0))
    append_trajectory(out, make("a", 1))
    with open(out, "a") as f:  # a crash in the middle of writing the third record
        f.write(json.dumps(make("b", 0).to_dict())[:40])
    with pytest.warns(UserWarning, match="partial last line"):
        records = read_trajectories(out)
    assert [(t.instance_id, t.sample_index) for t in records] == [("a", 0), ("a", 1)]
    assert records[0] == make("a", 0)
    repair_torn_tail(out)
    append_trajectory(out, make("b", 0))
    assert [t.instance_id for t in read_trajectories(out)] == ["a", "a", "b"]


def test_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "traj.jsonl"
    out.write_text("{not json}\n" + json.dumps(make("a", 0).to_dict()) + "\n")
    with pytest.raises(ValueError, match=r"traj.jsonl:1: not valid JSON"):
        read_trajectories(out)
    old = make("a", 0).to_dict() | {"schema_version": 0}
    out.write_text(json.dumps(old) + "\n")
    with pytest.raises(ValueError, match="schema_version 0"):
        read_trajectories(out)


def test_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "traj.jsonl"
    append_trajectory(out, make("a", 0))
    append_trajectory(out, make("a", 1))
    scored = read_trajectories(out)
    scored[1].reward, scored[1].reward_parts = 1.0, {"resolved": 1.0}
    write_trajectories(out, scored)
    assert read_trajectories(out) == scored and read_trajectories(out)[1].reward == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["traj.jsonl"]
