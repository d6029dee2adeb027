"""`swe-rl rft` end to end on bundled tasks (real sandboxes, grading, tiny model training), plus its config and filter."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from swe_rl.agent.loop import AgentConfig
from swe_rl.cli import main
from swe_rl.config import ConfigError, load_config
from swe_rl.paths import CONFIGS_DIR
from swe_rl.recipes.rft import RFTConfig, RFTError, StepMarker, build, filter_trajectories
from swe_rl.types import Grade, Trajectory, Turn
from tests.tasks.conftest import explorable_tasks, synth  # noqa: F401  (the session fixture: tasks synthesized from a tiny package)

DEMO_TASK = "jpvanhal__inflection-1"
TRAIN_TASKS = ("jpvanhal__inflection-2", "tkem__cachetools-1")
SAMPLES = 2


def rft(*overrides: str, step: str | None = None) -> int:
    argv = ["rft"] + ([step] if step else []) + ["--config", str(CONFIGS_DIR / "rft.yaml")]
    for o in overrides:
        argv += ["--set", o]
    return main(argv)


def run_overrides(run_dir: Path) -> list[str]:
    return [
        f"run_dir={run_dir}", "model=tiny", "collect_model=scripted:gold", f"demonstration_task={DEMO_TASK}",
        f"instances=[{', '.join(TRAIN_TASKS)}]", f"samples={SAMPLES}", "sft.batch_size=2", "sft.warmup_steps=1",
        "sft.lr=1.0e-3",
    ]


@pytest.fixture(scope="module")
def rft_run(tmp_path_factory, bundled_tasks):
    run_dir = tmp_path_factory.mktemp("rft") / "run"
    assert rft(*run_overrides(run_dir)) == 0
    return run_dir


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from transformers import AutoTokenizer

    from swe_rl.policy.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("tiny"))


def read_trajs(path: Path) -> list[Trajectory]:
    from swe_rl.rollouts.store import read_trajectories

    return read_trajectories(path)


# ---- the whole recipe (slow: episodes, grading and training for real) ----------------------------

@pytest.mark.slow
def test_writes_every_artifact(rft_run):
    artifacts = json.loads((rft_run / "artifacts.json").read_text())
    for key in ("demonstration", "trajectories", "examples", "funnel", "model", "metrics"):
        assert Path(artifacts[key]).exists(), key
    for step in ("demonstration", "collect", "build", "train"):
        assert json.loads((rft_run / step / "step.json").read_text())["done"] is True, step
    assert (rft_run / "config.yaml").exists() and (rft_run / "build" / "funnel.md").exists()
    assert any((rft_run / "train" / "tensorboard").glob("events.out.tfevents.*"))
    assert "ASSISTANT:" in (rft_run / "demonstration" / "demonstration.txt").read_text()
    rows = [json.loads(line) for line in (rft_run / "train" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(TRAIN_TASKS) * SAMPLES // 2  # 4 examples, 2 per optimizer step
    assert all(r["loss"] > 0 and r["loss_tokens"] > 0 for r in rows)


@pytest.mark.slow
def test_funnel_matches_trajectories(rft_run):
    trajs = read_trajs(rft_run / "collect" / "trajectories.jsonl")
    funnel = json.loads((rft_run / "build" / "funnel.json").read_text())
    assert {t.instance_id for t in trajs} == set(TRAIN_TASKS)  # the demonstration task is not trained on
    resolved = [t for t in trajs if t.grade and t.grade.resolved]
    kept = [t for t in resolved if t.exit_reason not in ("turn_limit", "context_limit")]
    assert funnel["sampled"] == len(trajs) == len(TRAIN_TASKS) * SAMPLES
    assert (funnel["resolved"], funnel["kept"], funnel["examples"]) == (len(resolved), len(kept), len(kept))
    assert funnel["kept"] > 0 and funnel["tasks_with_kept"] == len(TRAIN_TASKS) and funnel["coverage"] == 1.0
    for tid in TRAIN_TASKS:
        assert funnel["per_task"][tid] == {
            "sampled": sum(t.instance_id == tid for t in trajs),
            "resolved": sum(t.instance_id == tid for t in resolved),
            "kept": sum(t.instance_id == tid for t in kept),
        }
    assert f"| total | {len(trajs)} | {len(resolved)} | {len(kept)} |" in (rft_run / "build" / "funnel.md").read_text()


@pytest.mark.slow
def test_examples_are_the_trajectories_without_the_demonstration(rft_run, tiny_tokenizer, bundled_tasks):
    from swe_rl.agent.prompts import build_messages
    from swe_rl.training.sft_data import prompt_ids, prompt_length, read_examples

    demo = (rft_run / "demonstration" / "demonstration.txt").read_text().strip()
    trajs = {(t.instance_id, t.sample_index): t for t in read_trajs(rft_run / "collect" / "trajectories.jsonl")}
    examples = read_examples(rft_run / "build" / "examples.jsonl")
    tasks = {t.instance_id: t for t in bundled_tasks}
    assert len(examples) == len(trajs)
    for e in examples:
        traj = trajs[(e.instance_id, e.sample_index)]
        n = prompt_length(traj)
        assert demo in tiny_tokenizer.decode(traj.token_ids[:n])  # sampled WITH the demonstration ...
        assert demo not in tiny_tokenizer.decode(e.input_ids)  # ... trained WITHOUT it
        prefix = prompt_ids(tiny_tokenizer, build_messages(tasks[e.instance_id], "/repo"))
        assert list(e.input_ids[: len(prefix)]) == prefix  # the agent's own no-demonstration first prompt
        assert list(e.input_ids[len(prefix):]) == traj.token_ids[n:]  # the sampled turns, token-exact
        assert e.loss_mask[: len(prefix)] == (0,) * len(prefix)
        assert list(e.loss_mask[len(prefix):]) == traj.loss_mask[n:]  # no format errors: every turn is a target
        assert e.num_loss_tokens == sum(traj.loss_mask) > 0


@pytest.mark.slow
def test_checkpoint_reloads_and_generates(rft_run, tiny_tokenizer):
    import torch
    from safetensors.torch import load_file

    from swe_rl.policy.hf import HFPolicy
    from swe_rl.policy.models import resolve_model
    from swe_rl.training.sft_data import prompt_ids
    from swe_rl.types import SamplingParams

    model_dir = rft_run / "train" / "model"
    trained, base = load_file(model_dir / "model.safetensors"), load_file(resolve_model("tiny") / "model.safetensors")
    assert any(not torch.equal(trained[k], base[k]) for k in base)  # training moved the weights
    policy = HFPolicy(model_dir, device="cpu")
    prompt = prompt_ids(tiny_tokenizer, [{"role": "user", "content": "fix the bug"}])
    (c,) = policy.generate([prompt], SamplingParams(max_new_tokens=8, seed=0))
    assert 1 <= len(c.token_ids) <= 8 and len(c.logprobs) == len(c.token_ids)


@pytest.mark.slow
def test_rerun_skips_every_step_and_refuses_a_changed_config(rft_run, capsys):
    outputs = [rft_run / p for p in ("collect/trajectories.jsonl", "build/examples.jsonl", "train/model/model.safetensors")]
    before = [os.stat(p).st_mtime_ns for p in outputs]
    assert rft(*run_overrides(rft_run)) == 0
    assert [os.stat(p).st_mtime_ns for p in outputs] == before
    capsys.readouterr()
    assert rft(*run_overrides(rft_run), step="collect") == 0  # a step alone: only it and the ones before
    printed = capsys.readouterr().out
    assert "trajectories: " in printed and "examples: " not in printed and "model: " not in printed
    with pytest.raises(SystemExit, match=r"collect was made with different samples"):
        rft(*run_overrides(rft_run), f"samples={SAMPLES + 1}")


def test_a_knob_added_since_a_step_ran_counts_at_its_default(tmp_path):
    """A step recorded by an older swe-rl (without `new`, `nested.added`) is still done at their defaults, not at others."""
    defaults = {"a": 1, "new": False, "nested": {"x": 1, "added": 0}}
    recorded = StepMarker(tmp_path / "step", {"a": 1, "nested": {"x": 1}})
    recorded.start()
    recorded.finish({"ok": True})
    assert StepMarker(tmp_path / "step", {"a": 1, "new": False, "nested": {"x": 1, "added": 0}}, defaults).done()
    with pytest.raises(RFTError, match=r"different new .*new: False there, True now"):
        StepMarker(tmp_path / "step", {"a": 1, "new": True, "nested": {"x": 1, "added": 0}}, defaults).done()
    with pytest.raises(RFTError, match=r"different nested"):
        StepMarker(tmp_path / "step", {"a": 1, "new": False, "nested": {"x": 1, "added": 5}}, defaults).done()
    with pytest.raises(RFTError, match=r"different new"):  # without defaults, any key missing there is a change
        StepMarker(tmp_path / "step", {"a": 1, "new": False, "nested": {"x": 1}}).done()


@pytest.mark.slow
def test_format_error_turn_is_context_not_target(rft_run, tmp_path, bundled_tasks, tiny_tokenizer):
    """A resolved episode whose first turn has no command block: build keeps that turn as context, masked."""
    from swe_rl.agent.demonstration import gold_patch_actions
    from swe_rl.agent.loop import AgentConfig
    from swe_rl.policy.scripted import ScriptedPolicy
    from swe_rl.recipes.rollout import run_rollouts
    from swe_rl.training.sft_data import assistant_runs, read_examples

    task = next(t for t in bundled_tasks if t.instance_id == TRAIN_TASKS[0])
    demo = rft_run / "demonstration" / "demonstration.txt"
    policy = ScriptedPolicy(tiny_tokenizer, ["I will think about it first."] + gold_patch_actions(task))
    trajectories = tmp_path / "trajectories.jsonl"
    run_rollouts([task], policy, AgentConfig(demonstration_file=str(demo)), trajectories, samples=1, quiet=True)
    (traj,) = read_trajs(trajectories)
    assert traj.grade.resolved and traj.turns[0].format_error and not any(t.format_error for t in traj.turns[1:])
    cfg = load_config(RFTConfig, None, [f"run_dir={tmp_path / 'run'}", "model=tiny"])
    (example,) = read_examples(build(cfg, trajectories, demo))
    shift = len(example) - len(traj.token_ids)  # the prefix got shorter without the demonstration
    runs = assistant_runs(traj.loss_mask)
    assert shift < 0 and len(runs) == len(traj.turns)
    (s0, e0), rest = runs[0], runs[1:]
    assert example.input_ids[s0 + shift : e0 + shift] == tuple(traj.token_ids[s0:e0])  # kept as context ...
    assert example.loss_mask[s0 + shift : e0 + shift] == (0,) * (e0 - s0)  # ... but not a target
    assert [r for r in assistant_runs(example.loss_mask)] == [(s + shift, e + shift) for s, e in rest]
    funnel = json.loads((tmp_path / "run" / "build" / "funnel.json").read_text())
    assert funnel["kept_format_error_turns"] == 1


@pytest.mark.slow
def test_build_does_not_depend_on_the_order_episodes_finished(rft_run, tmp_path):
    """Episodes are appended as they finish (threads): the same episodes in another order build the same
    examples, so the SFT model does not depend on thread timing."""
    lines = (rft_run / "collect" / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) > 1
    shuffled = tmp_path / "trajectories.jsonl"
    shuffled.write_text("\n".join(reversed(lines)) + "\n")
    cfg = load_config(RFTConfig, None, [f"run_dir={tmp_path / 'run'}", "model=tiny"])
    rebuilt = build(cfg, shuffled, rft_run / "demonstration" / "demonstration.txt")
    assert rebuilt.read_bytes() == (rft_run / "build" / "examples.jsonl").read_bytes()


@pytest.mark.slow
def test_own_samples_with_nothing_kept_stop_before_training(rft_run, tmp_path):
    """The paper's setting (collect_model = the trained model): the random tiny model resolves nothing."""
    demo = rft_run / "demonstration" / "demonstration.txt"
    run_dir = tmp_path / "own"
    with pytest.raises(SystemExit, match="holds no examples"):
        rft(f"run_dir={run_dir}", "model=tiny", "demonstration_task=''", f"agent.demonstration_file={demo}",
            f"instances=[{TRAIN_TASKS[1]}]", "samples=1", "agent.max_turns=2", "agent.max_new_tokens=16")
    funnel = json.loads((run_dir / "build" / "funnel.json").read_text())
    assert (funnel["sampled"], funnel["kept"], funnel["examples"]) == (1, 0, 0)
    (traj,) = read_trajs(run_dir / "collect" / "trajectories.jsonl")
    assert traj.model == "tiny" and demo.read_text().strip() in traj.messages[1]["content"]
    assert not (run_dir / "train" / "model").exists()


@pytest.mark.slow
def test_explore_demonstration_shows_the_search_steps(synth, tmp_path):  # noqa: F811
    """demonstration_policy=scripted:explore replays the steps a model can infer, where gold only edits."""
    from swe_rl.agent.demonstration import synthesized_function
    from swe_rl.recipes.rft import make_demonstration
    from swe_rl.tasks.loaders import load_tasks

    tasks = load_tasks(synth["out"])
    task = explorable_tasks(synth, AgentConfig.window)[0]
    demos = {}
    for policy in ("scripted:gold", "scripted:explore"):
        cfg = RFTConfig(run_dir=str(tmp_path / policy.split(":")[1]), tasks=str(synth["out"]), demonstration_task=task.instance_id,
                        demonstration_policy=policy, cache_dir=str(synth["cache"]))
        demos[policy] = make_demonstration(cfg, tasks).read_text()
    name = synthesized_function(task)
    assert f'search_file "def {name}(" .' in demos["scripted:explore"]  # step 1 of the explore script
    assert "search_file" not in demos["scripted:gold"]
    for demo in demos.values():
        assert demo.count("ASSISTANT:") >= 2 and "submit" in demo.rsplit("ASSISTANT:", 1)[1]


@pytest.mark.slow
def test_explore_demonstration_refuses_a_task_it_cannot_read(tmp_path, bundled_tasks):
    from swe_rl.recipes.rft import make_demonstration

    cfg = RFTConfig(run_dir=str(tmp_path / "run"), demonstration_task=DEMO_TASK, demonstration_policy="scripted:explore")
    with pytest.raises(RFTError, match=f"demonstration task {DEMO_TASK}: scripted:explore cannot replay it"):
        make_demonstration(cfg, bundled_tasks)


# ---- config and filter (fast) --------------------------------------------------------------------

def test_configs_load_with_the_paper_values():
    demo = load_config(RFTConfig, CONFIGS_DIR / "rft.yaml")
    assert demo.model == "smollm2-135m" and demo.collect_model == "" and demo.samples >= 1
    paper = load_config(RFTConfig, CONFIGS_DIR / "rft_paper.yaml")
    assert (paper.samples, paper.sft.lr, paper.sft.epochs, paper.sft.warmup_steps) == (10, 5e-6, 1, 10)
    assert (paper.sft.weight_decay, paper.sft.batch_size) == (0.1, 64)
    assert "Qwen2.5-72B-Instruct" in paper.model


def test_config_errors_name_the_key(tmp_path, capsys):
    bad = tmp_path / "rft.yaml"
    bad.write_text("samples: 2\nsft:\n  lrr: 1.0e-5\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) lrr for SFTConfig"):
        load_config(RFTConfig, bad)
    with pytest.raises(SystemExit, match="lrr"):
        main(["rft", "--config", str(bad)])
    with pytest.raises(SystemExit, match="unknown key.*colect_model"):
        rft("colect_model=scripted:gold")
    with pytest.raises(ConfigError, match="drop_exit_reasons"):
        load_config(RFTConfig, None, ["drop_exit_reasons=[turn_limt]"])
    with pytest.raises(ConfigError, match=f"demonstration task {DEMO_TASK}"):
        load_config(RFTConfig, None, [f"instances=[{DEMO_TASK}]"])
    with pytest.raises(ConfigError, match="demonstration_policy 'scripted:explroe'"):
        load_config(RFTConfig, None, ["demonstration_policy=scripted:explroe"])
    with pytest.raises(ConfigError, match="choose one"):
        load_config(RFTConfig, None, ["agent.demonstration_file=demo.txt"])
    with pytest.raises(SystemExit, match="demo.txt is not a file"):
        rft(f"run_dir={tmp_path / 'run'}", "demonstration_task=''", "agent.demonstration_file=demo.txt")
    with pytest.raises(SystemExit, match="demonstration_task 'no-such-task' is not in bundled"):
        rft(f"run_dir={tmp_path / 'run'}", "demonstration_task=no-such-task")
    with pytest.raises(SystemExit):
        main(["rft", "colect"])
    assert "invalid choice: 'colect'" in capsys.readouterr().err


def traj(instance_id: str, i: int, status: str | None, exit_reason: str = "submitted", format_errors: int = 0) -> Trajectory:
    turns = [Turn(response="x", command=None, observation="", format_error="cannot extract command")] * format_errors
    turns += [Turn(response="y", command="submit", observation="")]
    grade = Grade(instance_id, status, patch_applied=True) if status else None
    return Trajectory(instance_id, i, [], [], [], [], turns, exit_reason, "", grade=grade)


def test_filter_keeps_resolved_untruncated_episodes_of_healthy_groups():
    trajs = [
        traj("a", 0, "resolved", format_errors=2), traj("a", 1, "unresolved"), traj("a", 2, "resolved", "turn_limit"),
        traj("b", 0, "resolved", "context_limit"), traj("b", 1, "unresolved"),
        traj("c", 0, "resolved"), traj("c", 1, "error"),  # an infra failure drops the whole group
        traj("d", 0, None, "sandbox_error"), traj("e", 0, "resolved", "format_error_limit"),
    ]
    kept, funnel = filter_trajectories(trajs)
    assert [(t.instance_id, t.sample_index) for t in kept] == [("a", 0), ("e", 0)]
    assert (funnel["sampled"], funnel["resolved"], funnel["dropped_at_limit"], funnel["kept"]) == (9, 4, 2, 2)
    assert funnel["infra_dropped_tasks"] == ["c", "d"]
    assert (funnel["tasks"], funnel["tasks_with_kept"], funnel["coverage"]) == (5, 2, 0.4)
    assert funnel["per_task"]["a"] == {"sampled": 3, "resolved": 2, "kept": 1}
    assert funnel["kept_format_error_turns"] == 2
    kept, _ = filter_trajectories(trajs, drop_exit_reasons=("context_limit",))
    assert [(t.instance_id, t.sample_index) for t in kept] == [("a", 0), ("a", 2), ("e", 0)]
