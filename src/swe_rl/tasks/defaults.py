"""The project's default task sets from pinned PyPI projects: `swe-rl tasks build-default --out DIR`.

The spec (configs/default_tasks.yaml) pins each project (sdist sha256), its side (train or
heldout: no project on both) and how many tasks to synthesize. Per project: synthesize
(resumable, seeded) -> per side: the curation funnel -> DIR/{train,heldout}.jsonl plus
DIR/funnel.json (with each file's sha256). Same spec, seed and machine give the same task
files, byte for byte; rerunning a finished build regrades nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from swe_rl.paths import CONFIGS_DIR, cache_dir
from swe_rl.tasks.schema import task_to_record
from swe_rl.types import Task

DEFAULT_SPEC = CONFIGS_DIR / "default_tasks.yaml"
SIDES = ("train", "heldout")


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    source: str  # pypi:NAME==VERSION, or a local git repository (relative to the spec file)
    side: str  # "train" or "heldout"
    n: int  # tasks to synthesize (the funnel may drop some)
    sha256: str | None = None  # of the sdist, checked before use
    pip: tuple[str, ...] = ("pytest==8.3.3",)


@dataclass(frozen=True)
class Spec:
    seed: int
    reruns: int
    max_p2p: int
    projects: tuple[ProjectSpec, ...]


def load_spec(path: Path) -> Spec:
    """Parse and check the spec; every problem names the spec file and the project."""
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("projects"), dict) or not data["projects"]:
        raise ValueError(f"{path}: expected a mapping with a non-empty 'projects' mapping")
    unknown = set(data) - {"seed", "reruns", "max_p2p", "projects"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    projects = []
    for name, p in data["projects"].items():
        where = f"{path}: project {name!r}"
        if not isinstance(p, dict) or not {"source", "side", "n"} <= set(p):
            raise ValueError(f"{where}: needs source, side and n")
        if set(p) - {"source", "side", "n", "sha256", "pip"}:
            raise ValueError(f"{where}: unknown keys {sorted(set(p) - {'source', 'side', 'n', 'sha256', 'pip'})}")
        if p["side"] not in SIDES:
            raise ValueError(f"{where}: side must be one of {SIDES}, got {p['side']!r}")
        source = str(p["source"])
        if not source.startswith("pypi:"):
            source = str((path.parent / source).resolve())
        elif not p.get("sha256"):
            raise ValueError(f"{where}: a PyPI source needs its sdist's sha256 (bit-for-bit builds)")
        projects.append(ProjectSpec(name, source, p["side"], int(p["n"]), p.get("sha256"),
                                    tuple(p.get("pip") or ("pytest==8.3.3",))))
    for side in SIDES:
        if not any(p.side == side for p in projects):
            raise ValueError(f"{path}: no project on the {side} side")
    return Spec(int(data.get("seed", 0)), int(data.get("reruns", 2)), int(data.get("max_p2p", 50)), tuple(projects))


def check_sdist(p: ProjectSpec, cache: Path) -> None:
    """Fetch the pinned sdist and compare its sha256 with the spec's."""
    if not p.source.startswith("pypi:"):
        return
    from swe_rl.tasks.sources import fetch_sdist

    name, version = p.source[5:].split("==")
    sdist = fetch_sdist(name, version, cache / "sdists")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != p.sha256:
        raise RuntimeError(f"project {p.name}: {sdist} has sha256 {digest}, the spec pins {p.sha256}")


def synthesis_summary(out: Path) -> dict:
    """Counts from a synthesis sidecar: candidates decided, accepted, rejections by reason."""
    lines = [json.loads(x) for x in out.with_name(out.name + ".decisions.jsonl").read_text().splitlines()[1:] if x]
    rejected: dict[str, int] = {}
    for x in lines:
        if not x["accepted"]:
            rejected[x["reason"]] = rejected.get(x["reason"], 0) + 1
    return {"decided": len(lines), "accepted": sum(x["accepted"] for x in lines),
            "rejected": dict(sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0])))}


def write_relative(tasks: list[Task], path: Path) -> None:
    """JSONL whose repo_urls are relative to its directory (the set can be moved or compared byte for byte)."""
    with path.open("w", encoding="utf-8") as f:
        for t in tasks:
            url = os.path.relpath(t.repo_url, path.parent) if os.path.isabs(t.repo_url) else t.repo_url
            f.write(json.dumps(task_to_record(replace(t, repo_url=url)), ensure_ascii=False) + "\n")


def build_default(out: Path, *, spec_path: Path = DEFAULT_SPEC, cache: Path | None = None, jobs: int = 1,
                  only: str | None = None, llm_url: str | None = None, llm_model: str = "default",
                  progress: bool = True, log=print) -> dict:
    """Build (or resume) the default sets into `out`; return the funnel (also written to out/funnel.json).

    `only`: synthesize just that project and stop (builds can be run project by project).
    """
    from swe_rl.tasks.clarity import ClarityScorer
    from swe_rl.tasks.synthesize import synthesize

    spec = load_spec(spec_path)
    cache = Path(cache) if cache is not None else cache_dir()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if only is not None and only not in {p.name for p in spec.projects}:
        raise ValueError(f"--only {only!r}: not a project of {spec_path} ({[p.name for p in spec.projects]})")
    report: dict = {"spec": str(spec_path), "seed": spec.seed, "reruns": spec.reruns, "projects": {}, "filter": {},
                    "sets": {}}
    for p in spec.projects:
        if only is not None and p.name != only:
            continue
        check_sdist(p, cache)
        synth_out = out / f"{p.name}.synth.jsonl"
        log(f"[{p.name}] synthesize {p.n} tasks from {p.source} ({p.side})")
        synthesize(p.source, p.n, synth_out, seed=spec.seed, jobs=jobs, max_p2p=spec.max_p2p, cache=cache,
                   pip_packages=p.pip, progress=progress)
        written = sum(1 for x in synth_out.read_text().splitlines() if x.strip())
        report["projects"][p.name] = {"source": p.source, "side": p.side, "target": p.n, "tasks": written,
                                      **synthesis_summary(synth_out)}
        if written < p.n:
            log(f"[{p.name}] only {written}/{p.n} tasks: the project ran out of candidates")
    if only is not None:
        return report

    clarity = ClarityScorer(llm_url, llm_model, cache=cache) if llm_url else None
    for side in SIDES:
        steps, kept_ids, owner = curate_side(spec, out, side, cache=cache, jobs=jobs, clarity=clarity, log=log)
        report["filter"][side] = [{"step": s["step"], "kept": s["kept"], "dropped": s["dropped"]} for s in steps]
        report["sets"][side] = {
            "tasks": len(kept_ids), "sha256": hashlib.sha256((out / f"{side}.jsonl").read_bytes()).hexdigest(),
            "per_project": {p.name: sum(owner[i] == p.name for i in kept_ids) for p in spec.projects if p.side == side}}
    (out / "funnel.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def curate_side(spec: Spec, out: Path, side: str, *, cache: Path, jobs: int = 1, clarity=None,
                log=print) -> tuple[list[dict], list[str], dict[str, str]]:
    """The funnel on one side's synthesized tasks -> out/<side>.jsonl; (steps, kept ids, id -> project).

    The result is keyed by the input files and settings (out/<side>.funnel.json): a rerun of a
    finished build, or one side curated ahead of the other, is reused instead of regraded.
    """
    from swe_rl.tasks.filter import funnel
    from swe_rl.tasks.loaders import load_tasks

    files = [out / f"{p.name}.synth.jsonl" for p in spec.projects if p.side == side]
    loaded = {f: load_tasks(f) for f in files}
    owner = {t.instance_id: p.name for p in spec.projects if p.side == side for t in loaded[out / f"{p.name}.synth.jsonl"]}
    settings = [spec.reruns, None, "default"] if clarity is None else \
        [spec.reruns, clarity.llm_url, clarity.model, clarity.drop]
    key = hashlib.sha256(b"".join(f.read_bytes() for f in files) + json.dumps(settings).encode()).hexdigest()
    done = out / f"{side}.funnel.json"
    if done.exists() and (out / f"{side}.jsonl").exists() and json.loads(done.read_text())["input"] == key:
        steps = json.loads(done.read_text())["steps"]
        log(f"[{side}] curation funnel: unchanged input, reusing {done.name}")
    else:
        tasks = [t for f in files for t in loaded[f]]
        log(f"[{side}] curation funnel on {len(tasks)} tasks ({spec.reruns} gold runs each)")
        kept, steps = funnel(tasks, reruns=spec.reruns, cache=cache, jobs=jobs, clarity=clarity)
        write_relative(kept, out / f"{side}.jsonl")
        done.write_text(json.dumps({"input": key, "steps": steps}, indent=2) + "\n")
    kept_ids = [json.loads(x)["instance_id"] for x in (out / f"{side}.jsonl").read_text().splitlines() if x]
    return steps, kept_ids, owner


def print_funnel(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="synthesis (per project)")
    for col in ("project", "side", "candidates decided", "accepted", "top rejections"):
        table.add_column(col, justify="left" if col in ("project", "side", "top rejections") else "right")
    for name, p in report["projects"].items():
        top = "; ".join(f"{n} {r}" for r, n in list(p["rejected"].items())[:3])
        table.add_row(name, p["side"], str(p["decided"]), str(p["tasks"]), top)
    console.print(table)
    for side, steps in report["filter"].items():
        table = Table(title=f"curation funnel: {side}")
        table.add_column("step")
        table.add_column("kept", justify="right")
        table.add_column("dropped", justify="right")
        for s in steps:
            table.add_row(s["step"], str(s["kept"]), str(len(s["dropped"])) if s["step"] != "input" else "")
        console.print(table)
    for side, s in report["sets"].items():
        console.print(f"{side}: {s['tasks']} tasks {s['per_project']}", highlight=False)


def default_out(cache: Path | None = None) -> Path:
    """Where `build-default` writes when no --out is given (the task files are built on demand, not committed)."""
    return (Path(cache) if cache is not None else cache_dir()) / "tasks" / "default"


def build_default_cli(out: Path | None, *, spec: Path | None = None, cache: Path | None = None, jobs: int = 1,
                      only: str | None = None, llm_url: str | None = None, llm_model: str = "default") -> int:
    import sys

    out = out or default_out(cache)
    report = build_default(out, spec_path=spec or DEFAULT_SPEC, cache=cache, jobs=jobs, only=only, llm_url=llm_url,
                           llm_model=llm_model, progress=sys.stderr.isatty())
    if only is None:
        print_funnel(report)
        print(f"-> {out}/train.jsonl, {out}/heldout.jsonl, {out}/funnel.json")
    return 0
