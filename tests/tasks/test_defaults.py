"""`swe-rl tasks build-default`: the committed spec, spec errors, and a small build that is byte-for-byte reproducible."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from swe_rl.tasks.defaults import DEFAULT_SPEC, build_default, load_spec
from swe_rl.tasks.loaders import load_tasks

from .conftest import CODE, TESTS, git

STRS = '''\
def shout(s):
    return s.upper() + "!"


def initials(name):
    return "".join(part[0] for part in name.split() if part)


def pad(s, width):
    if len(s) >= width:
        return s
    return s + " " * (width - len(s))
'''
STRS_TESTS = '''\
from strs.core import initials, pad, shout


def test_shout():
    assert shout("hi") == "HI!"


def test_initials():
    assert initials("Ada  Lovelace") == "AL"


def test_pad():
    assert pad("ab", 4) == "ab  "
    assert pad("abcd", 2) == "abcd"
'''


def test_committed_spec_meets_the_issue():
    spec = load_spec(DEFAULT_SPEC)
    train = [p for p in spec.projects if p.side == "train"]
    held = [p for p in spec.projects if p.side == "heldout"]
    assert len(train) >= 4 and sum(p.n for p in train) >= 200 and sum(p.n for p in held) >= 40
    assert not {p.source for p in train} & {p.source for p in held}
    assert all(p.source.startswith("pypi:") and "==" in p.source and len(p.sha256 or "") == 64 for p in spec.projects)


@pytest.mark.parametrize("text, error", [
    ("projects: {}", "non-empty 'projects'"),
    ("projects: {a: {source: 'pypi:a==1', side: train, n: 1}}", "needs its sdist's sha256"),
    ("projects: {a: {source: ., side: test, n: 1}}", "side must be one of"),
    ("projects: {a: {source: ., side: train}}", "needs source, side and n"),
    ("projects: {a: {source: ., side: train, n: 1}}", "no project on the heldout side"),
    ("seed: 1\nsplit: repo\nprojects: {a: {source: ., side: train, n: 1}}", r"unknown keys \['split'\]"),
])
def test_spec_errors_name_the_file_and_project(tmp_path, text, error):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=error) as e:
        load_spec(path)
    assert str(path) in str(e.value)


def make_repo(root: Path, name: str, code: str, tests: str) -> None:
    (root / name / name).mkdir(parents=True)
    (root / name / "tests").mkdir()
    (root / name / name / "__init__.py").write_text("")
    (root / name / name / "core.py").write_text(code)
    (root / name / "tests" / "test_core.py").write_text(tests)
    git(root / name, "init", "-q", "--initial-branch=main")
    git(root / name, "add", "-A")
    git(root / name, "commit", "-q", "-m", name)


@pytest.mark.slow  # two builds: synthesis and the funnel on two small local projects
def test_small_build_is_reproducible_byte_for_byte(tmp_path):
    make_repo(tmp_path, "calc", CODE, TESTS)
    make_repo(tmp_path, "strs", STRS, STRS_TESTS)
    spec = tmp_path / "spec.yaml"
    spec.write_text("seed: 5\nreruns: 1\nprojects:\n"
                    "  calc: {source: calc, side: train, n: 3}\n"
                    "  strs: {source: strs, side: heldout, n: 2}\n")
    cache = tmp_path / "cache"
    first = build_default(tmp_path / "a", spec_path=spec, cache=cache, progress=False, log=lambda *_: None)
    second = build_default(tmp_path / "b", spec_path=spec, cache=cache, progress=False, log=lambda *_: None)

    for name in ("train.jsonl", "heldout.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first["sets"] == second["sets"] and first["filter"] == second["filter"]
    train, held = load_tasks(tmp_path / "a" / "train.jsonl"), load_tasks(tmp_path / "a" / "heldout.jsonl")
    assert len(train) == 3 and len(held) == 2
    assert {t.repo for t in train} == {"local/calc"} and {t.repo for t in held} == {"local/strs"}
    assert all(json.loads(x)["repo_url"] == "repos/calc" for x in (tmp_path / "a" / "train.jsonl").read_text().splitlines())
    report = json.loads((tmp_path / "a" / "funnel.json").read_text())
    assert report["projects"]["calc"]["tasks"] == 3 and report["projects"]["calc"]["accepted"] == 3
    assert [s["kept"] for s in report["filter"]["train"]][0] == 3 and report["sets"]["heldout"]["per_project"] == {"strs": 2}

    assert first["sets"]["train"]["sha256"] == hashlib.sha256((tmp_path / "b" / "train.jsonl").read_bytes()).hexdigest()

    # A rerun into the same directory resumes: nothing is synthesized or graded again, the files stay the same.
    before = (tmp_path / "a" / "train.jsonl").read_bytes()
    lines: list[str] = []
    again = build_default(tmp_path / "a", spec_path=spec, cache=cache, progress=False, log=lines.append)
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == before and again["sets"] == first["sets"]
    assert sum("reusing" in x for x in lines) == 2, lines
