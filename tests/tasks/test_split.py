"""Train / held-out splits: by repository no repository is on both sides; by seed, a seeded cut."""

from __future__ import annotations

import pytest

from swe_rl.tasks.loaders import load_tasks
from swe_rl.tasks.split import split_cli, split_tasks
from swe_rl.types import Task


def tasks(per_repo: dict[str, int]) -> list[Task]:
    return [Task(f"{repo.replace('/', '__')}-{i}", repo, "a" * 40, "bug", FAIL_TO_PASS=("t.py::t",))
            for repo, n in per_repo.items() for i in range(n)]


def test_by_repo_keeps_every_repository_on_one_side():
    ts = tasks({"a/one": 5, "b/two": 3, "c/three": 8, "d/four": 2, "e/five": 4})
    for seed in range(10):
        train, held = split_tasks(ts, by="repo", heldout_fraction=0.25, seed=seed)
        assert {t.repo for t in train}.isdisjoint({t.repo for t in held})
        assert len(train) + len(held) == len(ts) and held and train
        assert len(held) >= round(0.25 * len(ts))
    assert split_tasks(ts, by="repo", heldout_fraction=0.25, seed=1) == split_tasks(ts, by="repo", heldout_fraction=0.25, seed=1)


def test_by_seed_cuts_the_wanted_fraction_deterministically():
    ts = tasks({"a/one": 20})
    train, held = split_tasks(ts, by="seed", heldout_fraction=0.2, seed=7)
    assert len(held) == 4 and len(train) == 16
    assert held == split_tasks(ts, by="seed", heldout_fraction=0.2, seed=7)[1]
    assert held != split_tasks(ts, by="seed", heldout_fraction=0.2, seed=8)[1]


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_tasks(tasks({"a/one": 2, "b/two": 2}), by="repo", heldout_fraction=1.5)
    with pytest.raises(ValueError, match="at least 2 repositories"):
        split_tasks(tasks({"a/one": 4}), by="repo", heldout_fraction=0.5)


def test_cli_writes_loadable_files(tmp_path):
    import json

    from swe_rl.tasks.schema import task_to_record

    src = tmp_path / "all.jsonl"
    src.write_text("".join(json.dumps(task_to_record(t)) + "\n" for t in tasks({"a/one": 3, "b/two": 3})))
    assert split_cli(str(src), by="repo", heldout_fraction=0.5, out_train=tmp_path / "tr.jsonl",
                     out_heldout=tmp_path / "ho.jsonl") == 0
    train, held = load_tasks(tmp_path / "tr.jsonl"), load_tasks(tmp_path / "ho.jsonl")
    assert len(train) == len(held) == 3 and {t.repo for t in train} != {t.repo for t in held}


def test_by_function_keeps_every_mutated_function_on_one_side():
    from dataclasses import replace

    functions = ["add", "clamp", "is_even", "mean", "Cache.get", "Cache.pop"]
    ts = [replace(t, extra={"synthesis": {"function": functions[i % len(functions)]}})
          for i, t in enumerate(tasks({"a/one": 12, "b/two": 6}))]
    key = lambda t: (t.repo, t.extra["synthesis"]["function"])  # noqa: E731
    for seed in range(5):
        train, held = split_tasks(ts, by="function", heldout_fraction=0.4, seed=seed)
        assert {key(t) for t in train}.isdisjoint({key(t) for t in held}) and train and held
        assert len(train) + len(held) == len(ts)
        # more tasks never move a function across the split
        more = ts + [replace(t, instance_id=t.instance_id + "-more") for t in ts[:5]]
        ids = lambda side: {t.instance_id for t in side}  # noqa: E731
        assert ids(held) <= ids(split_tasks(more, by="function", heldout_fraction=0.4, seed=seed)[1])
    with pytest.raises(ValueError, match="needs synthesized tasks"):
        split_tasks(tasks({"a/one": 2}), by="function", heldout_fraction=0.5)
    with pytest.raises(ValueError, match="fell on one side"):
        split_tasks(ts[:1], by="function", heldout_fraction=0.5)


def test_written_files_move_with_the_repositories_under_them(tmp_path):
    from dataclasses import replace

    from swe_rl.tasks.split import write_tasks

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    (run / "repos" / "one").mkdir(parents=True)
    elsewhere.mkdir()
    inside, outside = (replace(t, repo_url=str(url)) for t, url in zip(tasks({"a/one": 2}), (run / "repos" / "one", elsewhere)))
    write_tasks([inside, outside], run / "tasks.jsonl")
    run.rename(moved := tmp_path / "moved")
    assert [t.repo_url for t in load_tasks(moved / "tasks.jsonl")] == [str(moved / "repos" / "one"), str(elsewhere)]
