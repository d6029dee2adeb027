#!/usr/bin/env python
"""Build swe-rl's bundled task set from scripts/bundled_tasks_spec.yaml.

Per project: download the pinned sdist (its sha256 is checked), commit it as the
environment commit, then per task inject the bug, hide the tests it breaks and
commit that as the task's base commit. FAIL_TO_PASS / PASS_TO_PASS come from
real pytest runs in a throwaway venv, and each task is verified the way a grader
would: base + test_patch -> every F2P fails and every P2P passes; base +
test_patch + patch -> all pass. Output (bit-for-bit reproducible):
src/swe_rl/data/tasks/{bundled.jsonl, bundles/<project>.bundle, LICENSES/}.

    .venv/bin/python scripts/build_bundled_tasks.py [--only PROJECT] [--keep-work]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from swe_rl.tasks.sources import extract_sdist as extract  # shared with `swe-rl tasks synthesize`

ROOT = Path(__file__).resolve().parent.parent
SPEC = Path(__file__).with_name("bundled_tasks_spec.yaml")
OUT = ROOT / "src" / "swe_rl" / "data" / "tasks"
SHOW_REPRO = False  # --show-repro: print each reproduction's output (to write the statements)

# Test ids the grader can append to a shell command unquoted (pytest escapes
# non-ASCII ids with backslashes, and parametrize ids may hold spaces).
SAFE_ID = re.compile(r"^[A-Za-z0-9_./:\[\]\-,=+@%^]+$")
SUMMARY = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS) (.+?)(?: - .*)?$")


def sh(cmd: list[str] | str, cwd: Path, env: dict[str, str], check: bool = True, timeout: int = 600) -> str:
    """Run a command (its whole process group is killed at the timeout: a bug may
    make a test loop forever); on failure raise with its output."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, shell=isinstance(cmd, str), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"command timed out after {timeout}s in {cwd}: {cmd}") from None
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}) in {cwd}: {cmd}\n{out[-4000:]}")
    return out


class Project:
    """One project's git repository and venv inside the work directory."""

    def __init__(self, name: str, spec: dict, work: Path):
        self.name, self.spec = name, spec
        self.repo = work / name / "repo"
        self.venv = work / name / "venv"
        stamp = spec["_date"]
        self.env = {
            "PATH": f"{self.venv}/bin:/usr/bin:/bin",
            "HOME": str(work / name),
            "LC_ALL": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_AUTHOR_NAME": "swe-rl bundler",
            "GIT_AUTHOR_EMAIL": "bundler@swe-rl.invalid",
            "GIT_COMMITTER_NAME": "swe-rl bundler",
            "GIT_COMMITTER_EMAIL": "bundler@swe-rl.invalid",
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
        }
        for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"):
            if var in os.environ:
                self.env[var] = os.environ[var]

    def git(self, *args: str) -> str:
        return sh(["git", *args], self.repo, self.env)

    def pytest(self, ids: list[str] = ()) -> dict[str, str]:
        """Run the task's test command (ids appended) and parse `-rA` summary lines."""
        cmd = self.spec["install_config"]["test_cmd"] + "".join(" " + shlex.quote(i) for i in ids)
        out = sh(cmd, self.repo, self.env, check=False, timeout=120)
        statuses: dict[str, str] = {}
        in_summary = False
        for line in out.splitlines():
            if "short test summary info" in line:
                in_summary = True
            elif in_summary and (m := SUMMARY.match(line)):
                statuses[m.group(2)] = m.group(1)
        if not statuses:
            raise RuntimeError(f"{self.name}: no test results parsed from `{cmd}`:\n{out[-3000:]}")
        return statuses


def fetch_sdist(name: str, spec: dict, cache: Path) -> Path:
    """pip-download the sdist once into `cache` and check its pinned sha256."""
    cache.mkdir(parents=True, exist_ok=True)
    found = [p for p in cache.glob("*.tar.gz") if p.name.startswith(spec["sdist_prefix"])]
    if not found:
        sh([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
            f"{spec['pypi']}=={spec['version']}", "-d", str(cache)], cache, dict(os.environ))
        found = [p for p in cache.glob("*.tar.gz") if p.name.startswith(spec["sdist_prefix"])]
    if len(found) != 1:
        raise RuntimeError(f"{name}: expected one sdist {spec['sdist_prefix']}*.tar.gz in {cache}, got {found}")
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    if digest != spec["sdist_sha256"]:
        raise RuntimeError(f"{name}: sdist {found[0].name} sha256 {digest} != pinned {spec['sdist_sha256']}")
    return found[0]


def find_def(tree: ast.Module, path: list[str], files: dict[Path, ast.Module], here: Path):
    """Locate the def for `Class::method` (following base classes, also in sibling
    test modules: unittest mixins) or `function`; return (file, node)."""
    if len(path) == 1:
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == path[0]:
                return here, node
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == path[0]:
            if len(path) > 2:
                return find_def(ast.Module(body=node.body, type_ignores=[]), path[1:], files, here)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == path[1]:
                    return here, item
            for base in node.bases:
                base_name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", None)
                for other, other_tree in [(here, tree), *files.items()]:
                    hit = find_def(other_tree, [base_name, path[1]], files, other) if base_name else None
                    if hit:
                        return hit
    return None


def hide_tests(repo: Path, failing: list[str]) -> list[str]:
    """Delete the test functions behind `failing` node ids; return the test files changed."""
    spans: dict[Path, set[tuple[int, int]]] = {}
    for node_id in failing:
        file, *path = node_id.split("[", 1)[0].split("::")
        test_file = repo / file
        siblings = {p: ast.parse(p.read_text()) for p in sorted(test_file.parent.glob("*.py"))}
        hit = find_def(siblings[test_file], path, siblings, test_file)
        if hit is None:
            raise RuntimeError(f"cannot find the definition of failing test {node_id}")
        where, node = hit
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        spans.setdefault(where, set()).add((start, node.end_lineno))
    for where, file_spans in spans.items():
        lines = where.read_text().splitlines(keepends=True)
        for start, end in sorted(file_spans, reverse=True):
            while end < len(lines) and not lines[end].strip():
                end += 1  # the blank lines after the def go with it
            del lines[start - 1:end]
        where.write_text("".join(lines))
        ast.parse(where.read_text(), str(where))  # a class left empty would be a syntax error
    return sorted(str(p.relative_to(repo)) for p in spans)


def spread(items: list[str], n: int) -> list[str]:
    """n items evenly spaced over a sorted list (deterministic sample)."""
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


def build_task(proj: Project, env_commit: str, baseline: dict[str, str], task: dict) -> dict:
    spec, tid = proj.spec, task["instance_id"]
    proj.git("checkout", "-q", "-f", env_commit)
    for edit in task["edits"]:
        path = proj.repo / edit["file"]
        text = path.read_text()
        if text.count(edit["old"]) != 1:
            raise RuntimeError(f"{tid}: `old` occurs {text.count(edit['old'])} times in {edit['file']}, need 1")
        path.write_text(text.replace(edit["old"], edit["new"]))
    buggy = proj.pytest()
    passed = {i for i, s in baseline.items() if s == "PASSED"}
    failing = sorted(i for i in passed if buggy.get(i) in ("FAILED", "ERROR"))
    f2p = [i for i in failing if SAFE_ID.match(i)]
    if not f2p or len(failing) > task.get("max_f2p", 40):
        raise RuntimeError(f"{tid}: the bug breaks {len(failing)} tests ({len(f2p)} with safe ids): {failing[:20]}")
    test_files = hide_tests(proj.repo, failing)
    # The base commit has no parent: with the pristine release as its parent,
    # `git diff HEAD~1` inside a sandbox would show the bug and the hidden tests.
    proj.git("add", "-A", "-f")
    tree = proj.git("write-tree").strip()
    base = proj.git("commit-tree", tree, "-m", f"{proj.name} {spec['version']}").strip()
    proj.git("branch", "-f", f"task/{tid}", base)
    proj.git("checkout", "-q", "-f", base)
    broken = sorted(i for i, s in proj.pytest().items() if s in ("FAILED", "ERROR"))
    if broken:
        raise RuntimeError(f"{tid}: tests still fail at the base commit after hiding: {broken}")

    src_files = sorted({e["file"] for e in task["edits"]})
    diff = ["diff", "--no-color", "--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/", base, env_commit, "--"]
    patch, test_patch = proj.git(*diff, *src_files), proj.git(*diff, *test_files)
    # P2P: tests that pass with and without the bug, mostly from the F2P's own files.
    both = sorted(i for i in passed if buggy.get(i) == "PASSED" and SAFE_ID.match(i))
    f2p_files = {i.split("::")[0] for i in f2p}
    same = [i for i in both if i.split("::")[0] in f2p_files]
    other = [i for i in both if i.split("::")[0] not in f2p_files]
    p2p = sorted(spread(same, task.get("p2p_same", 35)) + spread(other, task.get("p2p_other", 10)))
    verify(proj, base, tid, patch, test_patch, f2p, p2p)
    check_repro(proj, base, task, patch)
    return {
        "instance_id": tid,
        "repo": spec["repo"],
        "base_commit": base,
        "environment_setup_commit": env_commit,
        "problem_statement": task["problem_statement"].strip() + "\n",
        "patch": patch,
        "test_patch": test_patch,
        "FAIL_TO_PASS": f2p,
        "PASS_TO_PASS": p2p,
        "version": spec["version"],
        "created_at": spec["_created_at"],
        "repo_url": f"bundles/{proj.name}.bundle",
        "install_config": spec["install_config"],
        "license": spec["license"],
        "difficulty": task["difficulty"],
    }


def verify(proj: Project, base: str, tid: str, patch: str, test_patch: str, f2p: list[str], p2p: list[str]):
    """Grade like the grader: base + test_patch fails every F2P; + gold patch passes all."""
    for label, patches, want_f2p in (("buggy", [test_patch], "FAILED"), ("gold", [test_patch, patch], "PASSED")):
        proj.git("checkout", "-q", "-f", base)
        for p in patches:
            subprocess.run(["git", "apply", "-"], cwd=proj.repo, env=proj.env, input=p, text=True, check=True)
        got = proj.pytest(f2p + p2p)
        bad = [i for i in f2p if got.get(i, "MISSING") != want_f2p] + [i for i in p2p if got.get(i) != "PASSED"]
        if bad:
            raise RuntimeError(f"{tid}: {label} check failed for {[(i, got.get(i, 'MISSING')) for i in bad]}")
    proj.git("checkout", "-q", "-f", base)


def check_repro(proj: Project, base: str, task: dict, patch: str) -> None:
    """The statement's first python block must show the bug: its output changes with the fix."""
    m = re.search(r"```python\n(.*?)```", task["problem_statement"], re.S)
    if m is None:
        raise RuntimeError(f"{task['instance_id']}: problem_statement has no ```python block")
    outputs = []
    for patches in ([], [patch]):
        proj.git("checkout", "-q", "-f", base)
        for p in patches:
            subprocess.run(["git", "apply", "-"], cwd=proj.repo, env=proj.env, input=p, text=True, check=True)
        outputs.append(sh(["python", "-c", m.group(1)], proj.repo, proj.env, check=False, timeout=60))
    proj.git("checkout", "-q", "-f", base)
    if SHOW_REPRO:
        print(f"--- {task['instance_id']} buggy:\n{outputs[0]}--- fixed:\n{outputs[1]}", end="")
    if outputs[0] == outputs[1]:
        raise RuntimeError(f"{task['instance_id']}: the reproduction prints the same before and after the fix")


def build_project(name: str, spec: dict, work: Path, python: str, keep_going: bool) -> list[dict]:
    t0 = time.time()
    sdist = fetch_sdist(name, spec, work / "sdists")
    repo = work / name / "repo"
    repo.mkdir(parents=True)
    created = extract(sdist, repo)
    for rel in spec.get("strip", []):
        shutil.rmtree(repo / rel)
    spec["_created_at"] = created
    spec["_date"] = created.replace("Z", "+0000")
    proj = Project(name, spec, work)
    proj.git("init", "-q", "-b", "main")
    proj.git("add", "-A", "-f")
    proj.git("commit", "-q", "-m", f"{name} {spec['version']} from its sdist")
    env_commit = proj.git("rev-parse", "HEAD").strip()

    sh([python, "-m", "venv", str(proj.venv)], work, dict(os.environ))
    cfg = spec["install_config"]
    sh(["pip", "install", "-q", *cfg["pip_packages"]], repo, proj.env)
    sh(cfg["install"], repo, proj.env)
    proj.git("checkout", "-q", "-f", env_commit)  # installing may touch tracked metadata
    baseline = proj.pytest()
    if any(s in ("FAILED", "ERROR") for s in baseline.values()):
        raise RuntimeError(f"{name}: pristine sdist tests fail: {[i for i, s in baseline.items() if s != 'PASSED']}")
    records = []
    for task in spec["tasks"]:
        try:
            r = build_task(proj, env_commit, baseline, task)
        except RuntimeError as e:
            if not keep_going:
                raise
            print(f"  SKIPPED {task['instance_id']}: {e}", flush=True)
            continue
        records.append(r)
        print(f"  {r['instance_id']}: F2P {len(r['FAIL_TO_PASS'])}, P2P {len(r['PASS_TO_PASS'])}", flush=True)
    proj.git("checkout", "-q", "main")
    bundle = OUT / "bundles" / f"{name}.bundle"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    proj.git("-c", "pack.threads=1", "bundle", "create", str(bundle), "--all")
    (OUT / "LICENSES").mkdir(exist_ok=True)
    shutil.copyfile(repo / spec["license_file"], OUT / "LICENSES" / f"{name}.txt")
    print(f"{name} {spec['version']}: {len(records)} tasks in {time.time() - t0:.1f}s", flush=True)
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="rebuild one project (other records in bundled.jsonl are kept)")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--keep-going", action="store_true", help="report a broken task and go on (for writing the spec)")
    ap.add_argument("--python", default="python3.11", help="interpreter for the test venvs")
    ap.add_argument("--show-repro", action="store_true", help="print each statement's reproduction output")
    args = ap.parse_args()
    global SHOW_REPRO
    SHOW_REPRO = args.show_repro
    spec = yaml.safe_load(SPEC.read_text())
    python = shutil.which(args.python)
    if python is None:
        sys.exit(f"{args.python} not found on PATH (the tasks pin Python 3.11)")
    work = Path(tempfile.mkdtemp(prefix="swe-rl-bundled-"))
    records = []
    try:
        for name, pspec in spec["projects"].items():  # `defaults` is only a YAML anchor
            if args.only in (None, name):
                records += build_project(name, pspec, work, python, args.keep_going)
    finally:
        if args.keep_work:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work)
    if args.only:  # keep the other projects' records; a stable sort keeps each project's task order
        old = [json.loads(line) for line in (OUT / "bundled.jsonl").read_text().splitlines()]
        kept = [r for r in old if r["repo_url"] != f"bundles/{args.only}.bundle"]
        order = {f"bundles/{n}.bundle": i for i, n in enumerate(spec["projects"])}
        records = sorted(kept + records, key=lambda r: order[r["repo_url"]])
    with open(OUT / "bundled.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} tasks to {OUT / 'bundled.jsonl'}")


if __name__ == "__main__":
    main()
