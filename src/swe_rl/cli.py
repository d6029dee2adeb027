"""The `swe-rl` command: argument parsing only; the work is done by the functions it calls.

Each subcommand imports its implementation lazily so `swe-rl --help` stays fast
and a missing optional dependency only breaks the command that needs it.
"""

from __future__ import annotations

import argparse
import os
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


def _tasks_synthesize(a: argparse.Namespace) -> int:
    from swe_rl.tasks.synthesize import synthesize_cli

    return synthesize_cli(a.source, a.n, a.out, seed=a.seed, jobs=a.jobs, max_p2p=a.max_p2p, cache=a.cache_dir,
                          pip=a.pip, llm_url=a.llm_url, llm_model=a.llm_model, operators=a.operators)


def _tasks_filter(a: argparse.Namespace) -> int:
    from swe_rl.tasks.filter import filter_cli

    return filter_cli(a.file, out=a.out, funnel_out=a.funnel, reruns=a.reruns, cache=a.cache_dir,
                      skip_invalid=a.skip_invalid, jobs=a.jobs, llm_url=a.llm_url, llm_model=a.llm_model,
                      clarity_drop=a.clarity_drop)


def _tasks_build_default(a: argparse.Namespace) -> int:
    from swe_rl.tasks.defaults import build_default_cli

    return build_default_cli(a.out, spec=a.spec, cache=a.cache_dir, jobs=a.jobs, only=a.only, llm_url=a.llm_url,
                             llm_model=a.llm_model)


def _tasks_split(a: argparse.Namespace) -> int:
    from swe_rl.tasks.split import split_cli

    return split_cli(a.file, by=a.by, heldout_fraction=a.heldout_fraction, out_train=a.out_train,
                     out_heldout=a.out_heldout, seed=a.seed)


def _sandbox_run(a: argparse.Namespace) -> int:
    from swe_rl.sandbox.local import run_cli

    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        raise SystemExit("swe-rl sandbox run: give a command after --")
    return run_cli(a.workspace, command, timeout=a.timeout, as_json=a.json)


def _grade(a: argparse.Namespace) -> int:
    from swe_rl.rewards.grading import grade_cli

    return grade_cli(a.tasks, a.preds, a.out, cache=a.cache_dir, skip_invalid=a.skip_invalid, jobs=a.jobs, backend=a.sandbox)


def _model_prepare(a: argparse.Namespace) -> int:
    from swe_rl.policy.models import prepare_cli

    return prepare_cli(a.name, cache=a.cache_dir)


def _model_serve(a: argparse.Namespace) -> int:
    from swe_rl.policy.server import serve_cli

    return serve_cli(a.model, host=a.host, port=a.port, cache=a.cache_dir)


def _view(a: argparse.Namespace) -> int:
    from swe_rl.evaluation.viewer import view_cli

    return view_cli(a.files, a.out, title=a.title)


def _run_options(a: argparse.Namespace):
    from swe_rl.recipes.rollout import RunOptions

    return RunOptions(
        a.tasks, a.model, cache=a.cache_dir, skip_invalid=a.skip_invalid, instances=tuple(a.instance), limit=a.limit,
        max_turns=a.max_turns, max_new_tokens=a.max_new_tokens, context_length=a.context_length, batch=a.batch,
        command_timeout_s=a.command_timeout, grade_timeout_s=a.grade_timeout, seed=a.seed, device=a.device,
        quiet=a.quiet or None, executor=a.executor, ray_address=a.ray_address, sandbox=a.sandbox,
    )


def _rollout(a: argparse.Namespace) -> int:
    from swe_rl.recipes.rollout import rollout_cli

    return rollout_cli(_run_options(a), a.samples, a.out, resume=a.resume)


def _eval(a: argparse.Namespace) -> int:
    from swe_rl.recipes.evaluate import evaluate_cli

    return evaluate_cli(_run_options(a), a.runs, a.out, resume=a.resume)


def _rft(a: argparse.Namespace) -> int:
    from swe_rl.recipes.rft import rft_cli

    return rft_cli(a.config, a.set, step=a.step)


def _demo(a: argparse.Namespace) -> int:
    from swe_rl.recipes.demo import main as demo_main

    return demo_main(out=a.out, cache=a.cache_dir, overrides=a.set)


def _run(a: argparse.Namespace) -> int:
    from swe_rl.recipes.pipeline import run_cli

    return run_cli(a.config, a.set, cache=a.cache_dir)


def _rl(a: argparse.Namespace) -> int:
    from swe_rl.recipes.rl import rl_cli

    return rl_cli(a.config, a.set, resume=a.resume, cache=a.cache_dir)


def seconds(text: str) -> float:
    """argparse type: a duration in seconds, > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


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

    p = tasks.add_parser("synthesize", help="make verified tasks by injecting bugs into a repository with a pytest suite")
    p.add_argument("--source", required=True, help="a local git repository, or pypi:NAME==VERSION (its sdist)")
    p.add_argument("--n", type=int, required=True, help="how many tasks to produce")
    p.add_argument("--out", type=Path, required=True, help="tasks JSONL (appended; the task repository goes beside it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="processes running test suites")
    p.add_argument("--max-p2p", type=int, default=50, help="cap on PASS_TO_PASS tests per task")
    p.add_argument("--pip", action="append", default=None, help="requirement installed in the environment (repeat; default pytest)")
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible endpoint that rewrites the problem statements")
    p.add_argument("--llm-model", default="default")
    p.add_argument("--operator", action="append", default=None, dest="operators",
                   help="only this mutation operator (repeat; default: all), e.g. invert_condition")
    cache_arg(p)
    p.set_defaults(func=_tasks_synthesize)

    p = tasks.add_parser("filter", help="the paper's curation funnel: patch limits, duplicates, environment errors, flaky tests")
    p.add_argument("file")
    p.add_argument("--out", type=Path, required=True, help="kept tasks (JSONL)")
    p.add_argument("--funnel", type=Path, default=None, help="funnel JSON (default: OUT with .funnel.json)")
    p.add_argument("--reruns", type=int, default=3, help="gold-patch runs per task to find flaky tests (the paper: 50)")
    p.add_argument("--jobs", type=int, default=1, help="gold gradings run at once")
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible endpoint that scores statement clarity 0-3")
    p.add_argument("--llm-model", default="default")
    p.add_argument("--clarity-drop", type=int, default=3, help="drop tasks scored this or worse (the paper: 3)")
    cache_arg(p)
    skip_invalid_arg(p)
    p.set_defaults(func=_tasks_filter)

    p = tasks.add_parser("split", help="split a task set into train / held-out, by repository, mutated function or seed")
    p.add_argument("file")
    p.add_argument("--by", choices=("repo", "function", "seed"), default="repo")
    p.add_argument("--heldout-fraction", type=float, required=True)
    p.add_argument("--out-train", type=Path, required=True)
    p.add_argument("--out-heldout", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_tasks_split)

    p = tasks.add_parser("build-default", help="build the default train / held-out sets from pinned PyPI projects")
    p.add_argument("--out", type=Path, default=None, help="output directory, resumable (default: CACHE/tasks/default)")
    p.add_argument("--spec", type=Path, default=None, help="spec YAML (default: configs/default_tasks.yaml)")
    p.add_argument("--jobs", type=int, default=2, help="test suites run at once")
    p.add_argument("--only", default=None, help="synthesize just this project, then stop")
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible endpoint for the clarity score (optional)")
    p.add_argument("--llm-model", default="default")
    cache_arg(p)
    p.set_defaults(func=_tasks_build_default)

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
    p.add_argument("--sandbox", choices=["local", "docker"], default="local",
                   help="grade in bubblewrap sandboxes (prepared cache) or in fresh containers of each task's image")
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

    def episode_args(p: argparse.ArgumentParser) -> None:  # shared by rollout and eval
        p.add_argument("--tasks", required=True, help="tasks file or 'bundled'")
        p.add_argument("--model", required=True, help="smollm2-135m, tiny, a Hugging Face model directory, or scripted:gold")
        p.add_argument("--instance", action="append", default=[], help="only this instance id (repeatable)")
        p.add_argument("--limit", type=int, default=None, help="only the first N tasks")
        p.add_argument("--max-turns", type=int, default=30)
        p.add_argument("--max-new-tokens", type=int, default=512)
        p.add_argument("--context-length", type=int, default=8192)
        p.add_argument("--batch", type=int, default=8, help="episodes generating together")
        p.add_argument("--command-timeout", type=seconds, default=60.0, metavar="S",
                       help="wall clock per agent command; its process tree is killed after it")
        p.add_argument("--grade-timeout", type=seconds, default=600.0, metavar="S",
                       help="wall clock for the tests that grade a patch; a patch whose tests hang is unresolved after it")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="auto")
        p.add_argument("--quiet", action="store_true", help="plain log lines instead of a progress bar")
        p.add_argument("--executor", choices=["thread", "ray"], default="thread",
                       help="run episodes, sandboxes and grading in threads here, or on a Ray cluster")
        p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: a running one, else a local instance)")
        p.add_argument("--sandbox", choices=["local", "docker"], default="local",
                       help="episodes and grading in bubblewrap sandboxes (prepared cache) or in containers of each task's image")
        cache_arg(p)
        skip_invalid_arg(p)

    p = sub.add_parser("rollout", help="run and grade G episodes per task with a model; write trajectories (JSONL)")
    episode_args(p)
    p.add_argument("--samples", type=int, default=1, help="episodes per task (G)")
    p.add_argument("--out", type=Path, required=True, help="trajectory file (JSONL, one episode per line)")
    p.add_argument("--resume", action="store_true", help="continue OUT, skipping the episodes already in it")
    p.set_defaults(func=_rollout)

    p = sub.add_parser("eval", help="K runs per task: pass@1 ± SEM, pass@k, SWE-bench preds, report, plots, viewer")
    episode_args(p)
    p.add_argument("--runs", type=int, default=1, help="runs (K): episodes per task")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue a killed evaluation in OUT")
    p.set_defaults(func=_eval)

    p = sub.add_parser("rft", help="rejection fine-tuning: collect, filter, build SFT examples, train (PAPER.md section 4)")
    p.add_argument("step", nargs="?", choices=["demonstration", "collect", "build", "train"],
                   help="run only up to this step (earlier steps run when their output is missing); default: all")
    p.add_argument("--config", type=Path, default=None, help="YAML config (RFTConfig), e.g. configs/rft.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. sft.lr=1e-5 (repeatable)")
    p.set_defaults(func=_rft)

    p = sub.add_parser("rl", help="multi-turn DAPO with a staged curriculum (PAPER.md section 5)")
    p.add_argument("--config", default=None, help="RLConfig YAML (configs/rl.yaml: CPU demo; configs/rl_paper.yaml: the paper)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint in the config's out")
    cache_arg(p)
    p.set_defaults(func=_rl)

    p = sub.add_parser("run", help="the whole recipe: [warm start] -> base eval -> RFT -> RL stages -> evals -> report")
    p.add_argument("config", type=Path, help="PipelineConfig YAML, e.g. configs/pipeline/demo.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. eval.runs=3 (repeatable)")
    cache_arg(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("demo", help="the embedded default: swe-rl run configs/pipeline/demo.yaml on the bundled tasks")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value of the demo's config (repeatable)")
    cache_arg(p)
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that spin while they wait make a CPU shared with other jobs crawl: at load ~15 on
    # 2 cores one SmolLM2 decode step took 12.8 s spinning, 1.9 s sleeping. Read when torch loads (later).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def _is_user_error(e: Exception) -> bool:
    """Bad input or a missing set-up step: the message says what and where, a traceback adds nothing."""
    from swe_rl.config import ConfigError
    from swe_rl.recipes.pipeline import PipelineError
    from swe_rl.recipes.rft import RFTError
    from swe_rl.sandbox.environments import EnvironmentBuildError
    from swe_rl.sandbox.git_source import GitError
    from swe_rl.sandbox.protocol import SandboxUnavailable
    from swe_rl.tasks.schema import TaskValidationError

    return isinstance(e, (ConfigError, TaskValidationError, SandboxUnavailable, EnvironmentBuildError, GitError,
                          RFTError, PipelineError, FileNotFoundError, FileExistsError))


def console(argv: list[str] | None = None) -> int:
    """The `swe-rl` command: `main`, with bad input reported in one line and exit status 2, as argparse
    does (SWE_RL_TRACEBACK=1 shows the traceback instead). Whatever was written before stays on disk."""
    try:
        return main(argv)
    except SystemExit as e:  # a command's own one-line report ("swe-rl rft: ..."): the same status as ours
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("swe-rl: interrupted (finished episodes and checkpoints are kept; rerun to resume)", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("SWE_RL_TRACEBACK") or not _is_user_error(e):
            raise
        print(f"swe-rl: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(console())
