"""Task synthesis on a small real repository: real git, real pytest in real sandboxes, real grading."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swe_rl.rewards.grading import grade
from swe_rl.tasks.loaders import load_tasks
from swe_rl.tasks.mutations import enumerate_mutations
from swe_rl.tasks.synthesize import Runner, decide, setup, synthesize
from tests.tasks.conftest import CODE, N, git

pytestmark = pytest.mark.slow  # builds a venv with pip once (~10 s), then runs test suites

def test_produces_valid_tasks_that_the_gold_patch_resolves(synth):
    tasks = load_tasks(synth["out"])
    assert len(tasks) == N == synth["report"].accepted
    assert len({t.patch for t in tasks}) == N  # deduplicated by diff
    for task in tasks:
        assert task.test_patch == "" and task.FAIL_TO_PASS
        data = task.extra["difficulty_data"]
        assert data["f2p"] == len(task.FAIL_TO_PASS) and data["changed_lines"] >= 1
        assert grade(task, task.patch, cache=synth["cache"]).resolved, task.instance_id
        assert not grade(task, "", cache=synth["cache"]).resolved, task.instance_id
    # the base commit has no parent: the correct code is not reachable from it
    repo = Path(tasks[0].repo_url)
    assert git(repo, "rev-list", "--count", tasks[0].base_commit) == "1"


def test_f2p_and_p2p_match_a_direct_pytest_run(synth, tmp_path):
    for task in load_tasks(synth["out"])[:2]:
        work = tmp_path / task.instance_id
        work.mkdir()
        archive = subprocess.run(["git", "archive", task.base_commit], cwd=task.repo_url, capture_output=True, check=True)
        subprocess.run(["tar", "-x"], cwd=work, input=archive.stdout, check=True)
        r = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-q"], cwd=work,
                           capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        failed = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("FAILED ")}
        passed = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("PASSED ")}
        assert failed == set(task.FAIL_TO_PASS)
        assert set(task.PASS_TO_PASS) == passed


def test_problem_statement_never_names_the_mutated_file(synth):
    for task in load_tasks(synth["out"]):
        file = task.patch.split("\n", 1)[0].split(" b/")[-1]
        assert file.endswith("core.py")
        assert not re.search(r"(?<!test_)core\.py|calc/core", task.problem_statement)
        assert task.FAIL_TO_PASS[0] in task.problem_statement


def test_a_mutation_no_test_catches_is_rejected(synth):
    project, venv, template = setup(str(synth["src"]), synth["out"].parent / "repos", synth["cache"])
    muts = [m for m in enumerate_mutations(CODE, "calc/core.py")]
    uncaught = next(m for m in muts if m.function == "untested")
    caught = next(m for m in muts if m.function == "add" and m.operator == "arithmetic_swap")
    runner = Runner(template, venv, project.install_config.test_cmd, 120.0, synth["cache"])
    try:
        passed = frozenset(t for t, s in runner.run(None)[0].items() if s == "PASSED")
        assert len(passed) == 5
        assert decide(runner, uncaught, CODE, None, passed) == {"key": uncaught.key, "accepted": False,
                                                                 "reason": "no test catches it"}
        got = decide(runner, caught, CODE, ["tests/test_core.py"], passed)
        assert got["accepted"] and got["f2p"] == ["tests/test_core.py::test_add"]
        assert runner.run(None)[0] == {t: "PASSED" for t in passed}  # the mutation was undone
    finally:
        runner.close()


def test_same_seed_gives_the_same_file_and_jobs_do_not_matter(synth):
    again = synth["out"].with_name("again.jsonl")
    synthesize(str(synth["src"]), N, again, seed=3, cache=synth["cache"], jobs=2, progress=False)
    assert again.read_bytes() == synth["out"].read_bytes()


def test_resume_after_a_kill(synth, tmp_path):
    out = synth["out"].with_name("killed.jsonl")
    cmd = [sys.executable, "-m", "swe_rl.cli", "tasks", "synthesize", "--source", str(synth["src"]), "--n", str(N),
           "--out", str(out), "--seed", "3", "--cache-dir", str(synth["cache"])]
    # The killed run cannot remove its sandbox workspace: keep it under tmp_path, not the shared scratch dir.
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "SWE_RL_SCRATCH": str(tmp_path)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 1):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = out.read_text().count("\n")
    assert 1 <= done <= N
    with out.open("a") as f:
        f.write('{"instance_id": "torn')  # a write cut short by the kill
    report = synthesize(str(synth["src"]), N, out, seed=3, cache=synth["cache"], progress=False)
    assert out.read_bytes() == synth["out"].read_bytes()
    assert len(report.written) == N - done
    sidecar = [json.loads(x) for x in out.with_name(out.name + ".decisions.jsonl").read_text().splitlines()]
    keys = [x["key"] for x in sidecar[1:]]
    assert len(keys) == len(set(keys))  # no candidate decided twice


def test_operators_and_keep_restrict_the_candidates(synth):
    from swe_rl.tasks.sources import prepare_source
    from swe_rl.tasks.synthesize import candidates

    project = prepare_source(str(synth["src"]), synth["root"] / "repos_family", synth["cache"])
    everything, _ = candidates(project, 3)
    conditions, _ = candidates(project, 3, ("invert_condition",))
    assert conditions and {m.operator for m in conditions} == {"invert_condition"}
    assert {m.key for m in conditions} == {m.key for m in everything if m.operator == "invert_condition"}

    def negation(m):
        return m.replacement.startswith("not ")

    negated, _ = candidates(project, 3, ("invert_condition",), negation)
    assert negated and all(negation(m) for m in negated) and len(negated) < len(conditions)
    with pytest.raises(ValueError, match="unknown"):
        candidates(project, 3, ("invert_conditon",))


@pytest.mark.parametrize("jobs", [1, 2])
def test_precheck_rejects_before_the_tests_run_and_keeps_the_order(synth, jobs):
    lines = synth["out"].read_text().splitlines()
    victim = json.loads(lines[0])["synthesis"]["function"]
    checked = []

    def spare_all_but_one(m, checkout):
        checked.append(m.key)
        assert (checkout / "calc" / "core.py").is_file()  # the project's checkout, to look at
        return "its function is excluded" if m.function == victim else None

    kept = [x for x in lines if json.loads(x)["synthesis"]["function"] != victim]
    out = synth["out"].with_name(f"prechecked_{jobs}.jsonl")
    report = synthesize(str(synth["src"]), len(kept), out, seed=3, cache=synth["cache"], jobs=jobs, progress=False,
                        precheck=spare_all_but_one)
    assert out.read_text().splitlines() == kept  # the same tasks, in the same order, less the excluded ones
    decisions = [json.loads(x) for x in out.with_name(out.name + ".decisions.jsonl").read_text().splitlines()]
    assert decisions[0]["meta"]["precheck"] == "spare_all_but_one"
    excluded = [d for d in decisions[1:] if d["reason"] == "precheck: its function is excluded"]
    assert excluded and report.rejected["precheck: its function is excluded"] == len(excluded)
    assert set(checked) >= {d["key"] for d in decisions[1:]}
