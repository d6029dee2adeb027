"""The `swe-rl` command: argument parsing only; the work is done by the functions it calls.

Each subcommand imports its implementation lazily so `swe-rl --help` stays fast
and a missing optional dependency only breaks the command that needs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _tasks_prepare(a: argparse.Namespace) -> int:
    from swe_rl.sandbox.environments import prepare_cli

    return prepare_cli(a.file, cache=a.cache_dir, skip_invalid=a.skip_invalid, jobs=a.jobs)


def _tasks_validate(a: argparse.Namespace) -> int:
    from swe_rl.rewards.validate import validate_cli

    return validate_cli(a.file, reruns=a.reruns, cache=a.cache_dir, skip_invalid=a.skip_invalid, out=a.out)


def _tasks_list(a: argparse.Namespace) -> int:
    from swe_rl.tasks.loaders import list_cli

    return list_cli(a.file, skip_invalid=a.skip_invalid)


def _sandbox_run(a: argparse.Namespace) -> int:
    from swe_rl.sandbox.local import run_cli

    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        raise SystemExit("swe-rl sandbox run: give a command after --")
    return run_cli(a.workspace, command, timeout=a.timeout, as_json=a.json)


def _grade(a: argparse.Namespace) -> int:
    from swe_rl.rewards.grading import grade_cli

    return grade_cli(a.tasks, a.preds, a.out, cache=a.cache_dir, skip_invalid=a.skip_invalid, jobs=a.jobs)


def _model_prepare(a: argparse.Namespace) -> int:
    from swe_rl.policy.models import prepare_cli

    return prepare_cli(a.name, cache=a.cache_dir)


def _model_serve(a: argparse.Namespace) -> int:
    from swe_rl.policy.server import serve_cli

    return serve_cli(a.model, host=a.host, port=a.port, cache=a.cache_dir)


def _view(a: argparse.Namespace) -> int:
    from swe_rl.evaluation.viewer import view_cli

    return view_cli(a.files, a.out, title=a.title)


def _rollout(a: argparse.Namespace) -> int:
    from swe_rl.recipes.rollout import rollout_cli

    return rollout_cli(
        a.tasks, a.model, a.samples, a.out, resume=a.resume, cache=a.cache_dir, skip_invalid=a.skip_invalid,
        instances=a.instance, limit=a.limit, max_turns=a.max_turns, max_new_tokens=a.max_new_tokens,
        context_length=a.context_length, batch=a.batch, seed=a.seed, device=a.device, quiet=a.quiet or None,
    )


def _demo(a: argparse.Namespace) -> int:
    from swe_rl.recipes.demo import main as demo_main

    return demo_main(out=a.out, cache=a.cache_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swe-rl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def cache_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cache-dir", type=Path, default=None, help="environment cache (default: $SWE_RL_CACHE or ~/.cache/swe-rl)")

    def skip_invalid_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--skip-invalid", action="store_true", help="load the valid records and report the invalid ones")

    tasks = sub.add_parser("tasks", help="load, prepare and validate task sets").add_subparsers(dest="tasks_command", required=True)
    p = tasks.add_parser("prepare", help="build the cached environment of every task (the only step that uses the network)")
    p.add_argument("file", help="tasks file (JSONL, JSON, parquet, a datasets directory) or 'bundled'")
    p.add_argument("--jobs", type=int, default=1)
    cache_arg(p)
    skip_invalid_arg(p)
    p.set_defaults(func=_tasks_prepare)

    p = tasks.add_parser("validate", help="check that gold patches resolve, empty patches do not, and tests are not flaky")
    p.add_argument("file")
    p.add_argument("--reruns", type=int, default=1, help="grade the gold patch this many times and report tests that flip")
    p.add_argument("--out", type=Path, default=None, help="write the validation report (JSON) here")
    cache_arg(p)
    skip_invalid_arg(p)
    p.set_defaults(func=_tasks_validate)

    p = tasks.add_parser("list", help="load a tasks file, report invalid records, list the tasks")
    p.add_argument("file")
    skip_invalid_arg(p)
    p.set_defaults(func=_tasks_list)

    sandbox = sub.add_parser("sandbox", help="run commands in a sandbox").add_subparsers(dest="sandbox_command", required=True)
    p = sandbox.add_parser("run", help="run one command in a fresh sandbox whose writable workspace is DIR")
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--json", action="store_true", help='print {"output", "exit_code", "timed_out", "truncated"}')
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=_sandbox_run)

    p = sub.add_parser("grade", help="grade a SWE-bench predictions file")
    p.add_argument("--tasks", required=True, help="tasks file or 'bundled'")
    p.add_argument("--preds", required=True, type=Path, help="JSONL with instance_id, model_name_or_path, model_patch")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--jobs", type=int, default=2)
    cache_arg(p)
    skip_invalid_arg(p)
    p.set_defaults(func=_grade)

    model = sub.add_parser("model", help="prepare and serve the bundled models").add_subparsers(dest="model_command", required=True)
    p = model.add_parser("prepare", help="build a bundled model as a Hugging Face directory in the cache (no download)")
    p.add_argument("name", choices=["smollm2-135m", "tiny"])
    cache_arg(p)
    p.set_defaults(func=_model_prepare)

    p = model.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API (completions with token ids, chat)")
    p.add_argument("model", help="smollm2-135m, tiny or a Hugging Face model directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    cache_arg(p)
    p.set_defaults(func=_model_serve)

    p = sub.add_parser("view", help="write one self-contained HTML viewer of trajectory files")
    p.add_argument("files", nargs="+", type=Path, help="trajectory JSONL files (one Trajectory per line)")
    p.add_argument("-o", "--out", type=Path, default=Path("viewer.html"))
    p.add_argument("--title", default=None)
    p.set_defaults(func=_view)

    p = sub.add_parser("rollout", help="run and grade G episodes per task with a model; write trajectories (JSONL)")
    p.add_argument("--tasks", required=True, help="tasks file or 'bundled'")
    p.add_argument("--model", required=True, help="smollm2-135m, tiny, a Hugging Face model directory, or scripted:gold")
    p.add_argument("--samples", type=int, default=1, help="episodes per task (G)")
    p.add_argument("--out", type=Path, required=True, help="trajectory file (JSONL, one episode per line)")
    p.add_argument("--resume", action="store_true", help="continue OUT, skipping the episodes already in it")
    p.add_argument("--instance", action="append", default=[], help="only this instance id (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    p.add_argument("--max-turns", type=int, default=30)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--context-length", type=int, default=8192)
    p.add_argument("--batch", type=int, default=8, help="episodes generating together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="plain log lines instead of a progress bar")
    cache_arg(p)
    skip_invalid_arg(p)
    p.set_defaults(func=_rollout)

    p = sub.add_parser("demo", help="the embedded default: the whole pipeline on the bundled tasks")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    cache_arg(p)
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
