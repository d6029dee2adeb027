from __future__ import annotations

import pytest

from swe_rl.agent.observation import REJECTED_EDIT
from swe_rl.agent.prompts import instance_prompt
from swe_rl.training.sft_data import (
    SFTExample,
    assistant_runs,
    build_example,
    build_examples,
    demonstration_block,
    prompt_ids,
    read_examples,
    rebase_prefix,
    sft_loss_mask,
    without_demonstration,
    write_examples,
)
from swe_rl.types import Task, Trajectory, Turn


def _traj(token_ids, loss_mask, turns, messages=None) -> Trajectory:
    return Trajectory(
        instance_id="demo__repo-1", sample_index=3, messages=messages or [], token_ids=list(token_ids),
        loss_mask=list(loss_mask), sampler_logprobs=[0.0] * len(token_ids), turns=turns, exit_reason="submitted", patch="",
    )


def _turn(error: str | None = None) -> Turn:
    return Turn(response="r", command=None if error else "ls", observation="o", format_error=error)


# prompt (0-3) | turn 1 (4-6) | obs (7-8) | turn 2, format error (9-10) | obs (11) | turn 3 (12-14)
IDS = list(range(100, 115))
MASK = [0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1]


def test_format_error_turn_is_masked_at_exact_positions():
    traj = _traj(IDS, MASK, [_turn(), _turn("cannot extract command"), _turn()])
    assert assistant_runs(MASK) == [(4, 7), (9, 11), (12, 15)]
    assert sft_loss_mask(traj) == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1]
    ex = build_example(traj)
    assert ex.input_ids == tuple(IDS)  # kept as context
    assert [i for i, m in enumerate(ex.loss_mask) if m] == [4, 5, 6, 12, 13, 14]
    assert traj.loss_mask == MASK  # the trajectory itself is untouched


def test_rejected_edit_turn_is_masked_only_when_asked():
    refused = Turn(response="r", command="edit 3:3", observation=f"{REJECTED_EDIT} (the file is unchanged).\n...")
    quoted = Turn(response="r", command="search_file x", observation=f"a.py:9: {REJECTED_EDIT}")  # not at the start
    traj = _traj(IDS, MASK, [_turn(), refused, quoted])
    assert sft_loss_mask(traj) == MASK
    assert sft_loss_mask(traj, mask_rejected_edits=True) == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1]
    assert [i for i, m in enumerate(build_examples([traj], mask_rejected_edits=True)[0].loss_mask) if m] == [4, 5, 6, 12, 13, 14]


def test_run_count_must_match_turns():
    traj = _traj(IDS, MASK, [_turn(), _turn()])
    with pytest.raises(ValueError, match=r"demo__repo-1#3: loss_mask has 3 runs .* 2 turns"):
        sft_loss_mask(traj)


def test_rebase_prefix_keeps_every_later_token():
    traj = _traj(IDS, MASK, [_turn(), _turn("multiple commands extracted"), _turn()])
    ex = rebase_prefix(traj, [7, 8], sft_loss_mask(traj))
    assert ex.input_ids == (7, 8, *IDS[4:])
    assert ex.loss_mask == (0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="no assistant token"):
        rebase_prefix(_traj([1, 2], [0, 0], []), [5])


def test_all_format_errors_leave_no_example():
    traj = _traj(IDS[:7], MASK[:7], [_turn("cannot extract command")])
    assert build_examples([traj]) == []


def test_example_validation():
    with pytest.raises(ValueError, match="loss_mask\\[0\\] is 1"):
        SFTExample((1, 2), (1, 1), "x", 0)
    with pytest.raises(ValueError, match="2 input_ids but 1 loss_mask"):
        SFTExample((1, 2), (0,), "x", 0)


def test_demonstration_block_cuts_exactly_what_the_agent_adds():
    task = Task(instance_id="a__b-1", repo="a/b", base_commit="0" * 40, problem_statement="  The parser drops {braces}.\n")
    with_demo = instance_prompt(task, "/repo", demonstration="DEMO: open x.py\nedit 1:2\n")
    without = instance_prompt(task, "/repo")
    block = demonstration_block("DEMO: open x.py\nedit 1:2\n")
    assert with_demo != without and with_demo.startswith(block)
    traj = _traj([1], [0], [], messages=[{"role": "system", "content": "S"}, {"role": "user", "content": with_demo}])
    assert without_demonstration(block)(traj) == [{"role": "system", "content": "S"}, {"role": "user", "content": without}]
    traj.messages[1]["content"] = without
    with pytest.raises(ValueError, match="does not start with the demonstration block"):
        without_demonstration(block)(traj)


def test_build_examples_swaps_in_the_demo_free_prompt(tokenizer):
    block = demonstration_block("open foo.py")
    system = {"role": "system", "content": "You are an agent."}
    user = {"role": "user", "content": block + "Fix the bug in foo."}
    old_prefix = prompt_ids(tokenizer, [system, user])
    completion = tokenizer.encode("I will look.\n```\nopen foo.py\n```") + [tokenizer.eos_token_id]
    obs = tokenizer.encode("\n<|im_start|>user\n[file foo.py]<|im_end|>\n<|im_start|>assistant\n")
    completion2 = tokenizer.encode("no command here") + [tokenizer.eos_token_id]
    ids = old_prefix + completion + obs + completion2
    mask = [0] * len(old_prefix) + [1] * len(completion) + [0] * len(obs) + [1] * len(completion2)
    traj = _traj(ids, mask, [_turn(), _turn("cannot extract command")], messages=[system, user])

    [ex] = build_examples([traj], tokenizer, prompt_messages=without_demonstration(block))
    new_prefix = prompt_ids(tokenizer, [system, {"role": "user", "content": "Fix the bug in foo."}])
    assert len(new_prefix) < len(old_prefix)
    assert ex.input_ids == tuple(new_prefix + completion + obs + completion2)
    n = len(new_prefix)
    assert ex.loss_mask == tuple([0] * n + [1] * len(completion) + [0] * (len(obs) + len(completion2)))
    assert "DEMONSTRATION" not in tokenizer.decode(ex.input_ids) and "DEMONSTRATION" in tokenizer.decode(ids)

    # A stored prefix that is not the rendering of the stored messages cannot be swapped safely.
    bad = _traj([old_prefix[0] + 1] + ids[1:], mask, traj.turns, messages=[system, user])
    with pytest.raises(ValueError, match="first difference at token 0"):
        build_examples([bad], tokenizer, prompt_messages=without_demonstration(block))


def test_write_read_roundtrip(tmp_path):
    examples = [SFTExample((1, 2, 3), (0, 1, 1), "a", 0), SFTExample((4, 5), (0, 1), "b", 2)]
    assert write_examples(tmp_path / "sft.jsonl", examples) == 2
    assert read_examples(tmp_path / "sft.jsonl") == examples
    (tmp_path / "bad.jsonl").write_text('{"schema_version": 1, "input_ids": [1], "loss_mask": [1]}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: invalid SFT example"):
        read_examples(tmp_path / "bad.jsonl")
