"""Synthesize verified tasks from a repository with a pytest suite: `swe-rl tasks synthesize`.

Pipeline (SWE-smith style): source -> task repository + prepared environment (sources.py,
sandbox/environments.py) -> candidate bugs (mutations.py) in a seeded order -> each run
against the suite in an offline sandbox on a process pool -> kept iff some tests fail with
the bug and pass without it (FAIL_TO_PASS) and every other passing test still passes
(PASS_TO_PASS, capped). Accepted candidates become parentless base commits and task
records, appended in candidate order, so a seed gives the same file; decisions go to a
sidecar JSONL (`<out>.decisions.jsonl`) so a killed run resumes where it stopped.
The F2P tests stay visible in the base state (test_patch is empty), as in SWE-smith.
"""

from __future__ import annotations

import json
import multiprocessing.util
import random
import re
import subprocess
import tempfile
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from swe_rl.paths import cache_dir
from swe_rl.rewards.log_parsers import parse_log_pytest
from swe_rl.sandbox.environments import prepare_environment, prepare_workspace, scratch_dir
from swe_rl.sandbox.local import LocalSandbox
from swe_rl.sandbox.protocol import Limits
from swe_rl.tasks.mutations import OPERATORS, Mutation, enumerate_mutations, is_code_file
from swe_rl.tasks.schema import task_to_record
from swe_rl.tasks.sources import DEFAULT_PIP, Project, commit_variant, fix_patch, prepare_source
from swe_rl.tasks.statements import build_statement, mentions, rewrite
from swe_rl.types import Task

SAFE_ID = re.compile(r"^[A-Za-z0-9_./:\[\]\-,=+@%^]+$")  # ids a grader can append to a command unquoted
DONE = "__swe_rl_synth_done__"
MAX_F2P = 40  # a bug that breaks more is an import-time crash, not a task


@dataclass
class SynthesisReport:
    accepted: int = 0
    written: list[str] = field(default_factory=list)  # instance ids appended by this run
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    candidates: int = 0
    tried: int = 0


def _is_test_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return path.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


# --- running the suite (one sandbox per process) ------------------------------------------------


class Runner:
    """A sandbox on a private copy of the pristine workspace; mutations are written in and undone."""

    def __init__(self, template: Path, venv: Path, test_cmd: str, timeout: float, cache: Path) -> None:
        ws = Path(tempfile.mkdtemp(prefix="synth-", dir=scratch_dir(cache)))
        subprocess.run(["cp", "-a", f"{template}/.", str(ws)], check=True)
        ws.chmod(0o755)
        self.timeout = timeout
        self.test_cmd = test_cmd
        self.sandbox = LocalSandbox(ws, venv=venv, owns_workspace=True,
                                    limits=Limits(command_timeout_s=timeout, cpu_seconds=int(timeout) + 60))

    def run(self, files: list[str] | None) -> tuple[dict[str, str], str, bool]:
        targets = " ".join(files or [])
        cmd = (f"cd /repo && export PYTHONDONTWRITEBYTECODE=1 && {{ {self.test_cmd} --tb=short {targets}\n}} "
               f"> /tmp/synth.log 2>&1; echo {DONE}")
        res = self.sandbox.run(cmd, timeout=self.timeout)
        try:
            log = self.sandbox.read_file("/tmp/synth.log")
        except FileNotFoundError:
            log = ""
        return parse_log_pytest(log), log, res.timed_out or DONE not in res.output

    def write(self, file: str, text: str) -> None:
        self.sandbox.write_file(file, text)

    def reset(self) -> None:
        self.sandbox.run("cd /repo && git checkout -q -- . && git clean -fdq", timeout=60)

    def close(self) -> None:
        self.sandbox.close()


def decide(runner: Runner, m: Mutation, source: str, relevant: list[str] | None, passed: frozenset[str]) -> dict:
    """Run the suite with the bug: an accepted candidate carries F2P, P2P and the failure log."""
    def reject(reason: str) -> dict:
        return {"key": m.key, "accepted": False, "reason": reason}

    runner.write(m.file, m.apply(source))
    try:
        statuses, log, timed_out = runner.run(relevant)
        if not timed_out and relevant is not None:
            if not any(statuses.get(t) in ("FAILED", "ERROR") for t in passed):
                return reject("no test catches it")
            statuses, log, timed_out = runner.run(None)  # the whole suite: complete F2P and P2P
        if timed_out:
            return reject("tests time out with the bug")
        f2p = sorted(t for t in passed if statuses.get(t) in ("FAILED", "ERROR"))
        if not f2p:
            return reject("no test catches it")
        broken = [t for t in passed if t not in f2p and statuses.get(t) != "PASSED"]
        if broken:
            return reject("other tests do not run with the bug (collection or import error)")
        if len(f2p) > MAX_F2P:
            return reject(f"breaks more than {MAX_F2P} tests")
        f2p = [t for t in f2p if SAFE_ID.match(t)]  # the others are not graded (neither F2P nor P2P)
        if not f2p:
            return reject("no failing test id can be passed to pytest unquoted")
        p2p = sorted(t for t in passed if t not in f2p and SAFE_ID.match(t))
        return {"key": m.key, "accepted": True, "reason": "", "f2p": f2p, "p2p": p2p, "log": log}
    finally:
        runner.reset()


_RUNNER: Runner | None = None


def _init_worker(*args) -> None:
    global _RUNNER
    _RUNNER = Runner(*args)
    multiprocessing.util.Finalize(None, _RUNNER.close, exitpriority=10)  # pool workers skip atexit


def _decide_in_worker(m: Mutation, source: str, relevant: list[str] | None, passed: frozenset[str]) -> dict:
    assert _RUNNER is not None
    return decide(_RUNNER, m, source, relevant, passed)


# --- candidates --------------------------------------------------------------------------------


def candidates(project: Project, seed: int, operators: tuple[str, ...] = OPERATORS,
               keep: Callable[[Mutation], bool] | None = None) -> tuple[list[Mutation], dict[str, str]]:
    """All mutations of the project's code files by `operators` (and `keep`, when given), shuffled per
    operator and interleaved (operator variety first)."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=project.path, capture_output=True, check=True).stdout.decode()
    sources = {f: (project.path / f).read_text(encoding="utf-8") for f in sorted(filter(None, listing.split("\0")))
               if is_code_file(f)}
    unknown = sorted(set(operators) - set(OPERATORS))
    if unknown or not operators:
        raise ValueError(f"operators: unknown {unknown or 'none given'}; choose from {', '.join(OPERATORS)}")
    chosen = [op for op in OPERATORS if op in operators]
    by_op: dict[str, list[Mutation]] = {op: [] for op in chosen}
    for file, text in sources.items():
        if text.endswith("\n"):  # a diff of a file without a final newline needs special markers
            for m in enumerate_mutations(text, file):
                if m.operator in by_op and (keep is None or keep(m)):
                    by_op[m.operator].append(m)
    rng = random.Random(seed)
    for op in chosen:
        rng.shuffle(by_op[op])
    order: list[Mutation] = []
    queues = [deque(by_op[op]) for op in chosen]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.popleft())
    return order, sources


def relevant_tests(m: Mutation, test_files: dict[str, str]) -> list[str] | None:
    """Test files that mention the mutated function (or its class); None = run them all."""
    names = [n for n in m.function.split(".") if not n.startswith("__")][-1:] or m.function.split(".")[:1]
    hits = [f for f, text in test_files.items() if any(re.search(rf"\b{re.escape(n)}\b", text) for n in names)]
    return hits if hits and len(hits) < len(test_files) else None


def sample(items: list[str], n: int) -> list[str]:
    """n items evenly spaced over a sorted list (deterministic)."""
    return items if len(items) <= n else [items[i * len(items) // n] for i in range(n)]


# --- the command -------------------------------------------------------------------------------


def setup(source: str, repos_dir: Path, cache: Path, pip_packages: tuple[str, ...] = DEFAULT_PIP) -> tuple[Project, Path, Path]:
    """The task repository, its prepared venv and the pristine workspace (built once, then cached)."""
    project = prepare_source(source, repos_dir, cache, pip_packages=pip_packages)
    stub = Task(f"{project.name}-env", project.repo, project.env_commit, "-", repo_url=str(project.path),
                install_config=project.install_config)
    return project, prepare_environment(stub, cache).venv, prepare_workspace(stub, cache)


def synthesize(source: str, n: int, out: Path, *, seed: int = 0, jobs: int = 1, max_p2p: int = 50,
               cache: Path | None = None, pip_packages: tuple[str, ...] = DEFAULT_PIP, llm_url: str | None = None,
               llm_model: str = "default", progress: bool = True, operators: tuple[str, ...] = OPERATORS,
               keep: Callable[[Mutation], bool] | None = None,
               precheck: Callable[[Mutation, Path], str | None] | None = None) -> SynthesisReport:
    """Append up to `n` verified tasks to `out` (JSONL), resuming from `<out>.decisions.jsonl`.

    `operators` restricts the mutation operators and `keep` the candidates (a task family, e.g. only
    conditions wrapped in `not`). `precheck(candidate, checkout)` runs before a candidate's tests: a
    reason rejects it without running them (a cheap test of what a task will be used for). Filtering
    the ordered candidates, it keeps the order: the tasks are those of the same run without it that
    pass the check. All three are recorded with the resume state.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    project, venv, template = setup(source, out.parent / "repos", cache, pip_packages)
    order, sources = candidates(project, seed, operators, keep)
    tests = {f: (project.path / f).read_text(encoding="utf-8", errors="replace")
             for f in subprocess.run(["git", "ls-files"], cwd=project.path, capture_output=True, text=True,
                                     check=True).stdout.split() if _is_test_file(f)}
    sidecar = out.with_name(out.name + ".decisions.jsonl")
    meta = {"source": source, "seed": seed} | ({} if tuple(operators) == OPERATORS else {"operators": sorted(operators)}) \
        | ({} if keep is None else {"keep": keep.__name__}) | ({} if precheck is None else {"precheck": precheck.__name__})
    decided, written_ids = _resume(out, sidecar, meta)
    report = SynthesisReport(accepted=len(written_ids), candidates=len(order))
    todo = [m for m in order if m.key not in decided]

    runner = Runner(template, venv, project.install_config.test_cmd, 600.0, cache)
    try:
        base_statuses, base_log, timed_out = runner.run(None)
        passed = frozenset(t for t, s in base_statuses.items() if s == "PASSED")
        if timed_out or not passed:
            raise RuntimeError(f"{source}: the unmodified test suite has no passing test{' (timed out)' * timed_out}:\n"
                               f"{base_log[-2000:]}")
        timeout = 60.0 + 10 * max(1.0, _duration(base_log))
        runner.timeout = timeout
        if jobs > 1:
            runner.close()
        with _progress(progress, n) as bar, open(out, "a", encoding="utf-8") as fo, open(sidecar, "a", encoding="utf-8") as fs:
            bar(report)

            def record(m: Mutation, result: dict) -> None:
                report.tried += 1
                iid = f"{project.repo.replace('/', '__')}-{m.key[:10]}"
                line = {"key": m.key, "accepted": result["accepted"], "reason": result["reason"]}
                if result["accepted"]:
                    task = _task(project, m, sources[m.file], result, iid, max_p2p, llm_url, llm_model)
                    if task is None:
                        line.update(accepted=False, reason="the statement would reveal the mutated file")
                    else:
                        line["instance_id"] = iid
                        if iid not in written_ids:
                            prepare_workspace(replace(task, repo_url=str(project.path)), cache)  # ready to grade
                            fo.write(json.dumps(task_to_record(task), ensure_ascii=False) + "\n")
                            fo.flush()
                            written_ids.add(iid)
                            report.written.append(iid)
                        report.accepted = len(written_ids)
                if not line["accepted"]:
                    report.rejected[line["reason"]] = report.rejected.get(line["reason"], 0) + 1
                fs.write(json.dumps(line) + "\n")
                fs.flush()
                bar(report)

            def prejudged(m: Mutation) -> dict | None:
                reason = precheck(m, project.path) if precheck is not None else None
                return None if reason is None else {"key": m.key, "accepted": False, "reason": f"precheck: {reason}"}

            args = [(m, sources[m.file], relevant_tests(m, tests), passed) for m in todo]
            if jobs <= 1:
                for a in args:
                    if report.accepted >= n:
                        break
                    record(a[0], prejudged(a[0]) or decide(runner, *a))
            else:
                _pooled(args, jobs, (template, venv, project.install_config.test_cmd, timeout, cache), n, report, record,
                        prejudged)
    finally:
        runner.close()
    return report


def _pooled(args: list[tuple], jobs: int, init: tuple, n: int, report: SynthesisReport, record,
            prejudged: Callable[[Mutation], dict | None]) -> None:
    """Decide on a pool, but record strictly in candidate order (the output is the same for any `jobs`).

    At most 2 x jobs candidates wait on the pool; prejudged ones wait only for their turn to be recorded,
    so a run of them behind a slow suite run never leaves a worker idle.
    """
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=init) as pool:
        inflight: deque = deque()  # (candidate, future, submitted to the pool), in candidate order
        submitted = 0
        it = iter(args)
        try:
            while report.accepted < n:
                while submitted < 2 * jobs and (a := next(it, None)) is not None:
                    if (decided := prejudged(a[0])) is not None:
                        fut: Future = Future()
                        fut.set_result(decided)
                    else:
                        fut = pool.submit(_decide_in_worker, *a)
                        submitted += 1
                    inflight.append((a[0], fut, decided is None))
                if not inflight:
                    break
                m, fut, pooled = inflight.popleft()
                submitted -= pooled
                record(m, fut.result())
        finally:
            for _, fut, _ in inflight:
                fut.cancel()


def _task(project: Project, m: Mutation, source: str, result: dict, iid: str, max_p2p: int,
          llm_url: str | None, llm_model: str) -> Task | None:
    f2p, p2p = result["f2p"], result["p2p"]
    statement = build_statement(f2p, result["log"], hidden=[m.file])
    if llm_url:
        rewritten = rewrite(statement, llm_url, llm_model)
        statement = statement if mentions(rewritten, m.file, m.line) else rewritten
    if mentions(statement, m.file, m.line):
        return None
    base = commit_variant(project, m.file, m.apply(source), f"{project.name} {project.version}", f"refs/tasks/{iid}")
    patch = fix_patch(project, base, m.file)
    f2p_files = {t.split("::")[0] for t in f2p}
    same = [t for t in p2p if t.split("::")[0] in f2p_files]
    other = [t for t in p2p if t.split("::")[0] not in f2p_files]
    keep_same = sample(same, max(0, max_p2p - min(len(other), max_p2p // 4)))
    kept = sorted(keep_same + sample(other, max_p2p - len(keep_same)))
    changed = sum(1 for line in patch.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))
    return Task(
        instance_id=iid, repo=project.repo, base_commit=base, problem_statement=statement, patch=patch,
        FAIL_TO_PASS=tuple(f2p), PASS_TO_PASS=tuple(kept), version=project.version,
        environment_setup_commit=project.env_commit, repo_url=f"repos/{project.name}",
        install_config=project.install_config,
        extra={"difficulty_data": {"f2p": len(f2p), "changed_lines": changed, "operator": m.operator, "files": 1},
               "synthesis": {"operator": m.operator, "function": m.function, "key": m.key}},
    )


def _resume(out: Path, sidecar: Path, meta: dict) -> tuple[set[str], set[str]]:
    """Decided candidate keys and instance ids already written; a torn last line is cut off."""
    for path in (out, sidecar):
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                path.write_bytes(data[: data.rfind(b"\n") + 1])
    decided: set[str] = set()
    if sidecar.exists() and sidecar.stat().st_size:
        lines = [json.loads(x) for x in sidecar.read_text().splitlines() if x.strip()]
        if lines[0].get("meta") != meta:
            raise ValueError(f"{sidecar}: written for {lines[0].get('meta')}, not {meta}; use another --out")
        decided = {x["key"] for x in lines[1:]}
    else:
        sidecar.write_text(json.dumps({"meta": meta}) + "\n")
    ids = {json.loads(x)["instance_id"] for x in out.read_text().splitlines() if x.strip()} if out.exists() else set()
    return decided, ids


def _duration(log: str) -> float:
    m = re.search(r" in ([\d.]+)s", log.strip().splitlines()[-1] if log.strip() else "")
    return float(m.group(1)) if m else 1.0


class _progress:
    """A rich progress bar over accepted tasks (a no-op callable when disabled)."""

    def __init__(self, enabled: bool, n: int) -> None:
        self.enabled, self.n, self.progress = enabled, n, None

    def __enter__(self):
        if not self.enabled:
            return lambda report: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.progress.__enter__()
        bar = self.progress.add_task("tasks", total=self.n)

        def update(report: SynthesisReport) -> None:
            self.progress.update(bar, completed=min(report.accepted, self.n),
                                 description=f"tasks ({report.tried} candidates tried of {report.candidates})")
        return update

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def synthesize_cli(source: str, n: int, out: Path, *, seed: int = 0, jobs: int = 1, max_p2p: int = 50,
                   cache: Path | None = None, pip: list[str] | None = None, llm_url: str | None = None,
                   llm_model: str = "default", operators: list[str] | None = None) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    report = synthesize(source, n, out, seed=seed, jobs=jobs, max_p2p=max_p2p, cache=cache,
                        pip_packages=tuple(pip) if pip else DEFAULT_PIP, llm_url=llm_url, llm_model=llm_model,
                        operators=tuple(operators) if operators else OPERATORS)
    console.print(f"{report.accepted} tasks in {out} ({len(report.written)} new; {report.tried} candidates tried "
                  f"of {report.candidates})", highlight=False)
    for reason, count in sorted(report.rejected.items(), key=lambda kv: -kv[1]):
        console.print(f"  rejected {count}: {reason}", highlight=False)
    return 0 if report.accepted >= n else 1
