"""`swe-rl run`: the presets, the task split's guards, and the smoke preset end to end (real sandboxes,
the real tiny model, real grading), its report against the evaluations' metrics.json, and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swe_rl.cli import main
from swe_rl.config import ConfigError, load_config
from swe_rl.paths import BUNDLED_TASKS, CONFIGS_DIR
from swe_rl.recipes.pipeline import PipelineConfig, PipelineError, split_tasks

PRESETS = CONFIGS_DIR / "pipeline"
SMOKE = PRESETS / "smoke.yaml"
ROWS = ["base", "warm start (BC)", "RFT", "RL stage 1", "RL stage 2"]


def test_every_preset_loads():
    names = sorted(p.name for p in PRESETS.glob("*.yaml"))
    assert names == ["demo.yaml", "paper_qwen2.5_72b.yaml", "qwen2.5_7b.yaml", "smoke.yaml"]
    for name in names:
        cfg = load_config(PipelineConfig, PRESETS / name)
        assert len(cfg.rl.stages) == 2 and cfg.eval.runs >= 2, name


def test_paper_preset_has_the_papers_numbers():
    cfg = load_config(PipelineConfig, PRESETS / "paper_qwen2.5_72b.yaml")
    assert cfg.warm_start is None and cfg.model == "Qwen/Qwen2.5-72B-Instruct"
    assert (cfg.rft.samples, cfg.rft.sft.lr, cfg.rft.sft.batch_size, cfg.rft.sft.warmup_steps, cfg.rft.sft.epochs) == (10, 5e-6, 64, 10, 1)
    assert cfg.rft.sft.weight_decay == 0.1
    assert (cfg.rl.samples, cfg.rl.lr, cfg.rl.penalty_start, cfg.rl.drop_solved_at) == (10, 1e-6, 10, pytest.approx(2 / 3))
    s1, s2 = cfg.rl.stages
    assert (s1.context_length, s1.max_turns, s1.problems_per_iteration, s1.batch_size, s1.clip, s1.yarn_factor) == (65536, 40, 300, 128, (0.2, 0.3), 1.0)
    assert (s2.context_length, s2.max_turns, s2.problems_per_iteration, s2.batch_size, s2.clip, s2.yarn_factor) == (131072, 80, 100, 256, (0.2, 0.26), 4.0)
    assert cfg.rl.drop_never_solved and cfg.eval.runs == 10
    assert (cfg.rl.temperature, cfg.rl.top_p, cfg.rl.top_k, cfg.rl.min_p, cfg.rl.repetition_penalty) == (1.0, 1.0, -1, 0.0, 1.0)


def test_demo_preset_holds_out_one_task_per_repository():
    cfg = load_config(PipelineConfig, PRESETS / "demo.yaml")
    train, heldout = split_tasks(cfg)
    assert {t.repo for t in heldout} == {t.repo for t in train} and len(heldout) == 3
    assert cfg.warm_start is not None and cfg.warm_start.collect_model == "scripted:gold"
    assert cfg.rft.demonstration_task in {t.instance_id for t in train}


def test_a_config_typo_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) runz for EvalConfig"):
        load_config(PipelineConfig, SMOKE, ["eval.runz=3"])
    with pytest.raises(SystemExit, match=r"swe-rl run: .*unknown key\(s\) stagez"):
        main(["run", str(SMOKE), "--set", "rl.stagez=[]"])


def test_demo_is_the_demo_preset_and_checks_its_overrides_first(tmp_path):
    from swe_rl.recipes.demo import DEMO_CONFIG

    assert DEMO_CONFIG == PRESETS / "demo.yaml"
    with pytest.raises(SystemExit, match=r"swe-rl demo: .*unknown key\(s\) runz"):
        main(["demo", "--out", str(tmp_path / "demo"), "--set", "eval.runz=1"])
    assert not (tmp_path / "demo").exists()


def test_a_field_the_pipeline_sets_is_an_error_in_a_recipe_section():
    with pytest.raises(ConfigError, match=r"rft\.model is set by the pipeline"):
        load_config(PipelineConfig, SMOKE, ["rft.model=tiny"])
    with pytest.raises(ConfigError, match=r"rl\.out is set by the pipeline"):
        load_config(PipelineConfig, SMOKE, ["rl.out=elsewhere"])
    with pytest.raises(ConfigError, match=r"warm_start.collect_model is empty"):
        load_config(PipelineConfig, SMOKE, ["warm_start.collect_model=''"])


def test_overlapping_train_and_heldout_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"train_instances and heldout_instances overlap \(pytoolz__toolz-1\)"):
        load_config(PipelineConfig, SMOKE, ["train_instances=[pytoolz__toolz-1, tkem__cachetools-1]"])
    # The same task held out in a separate file: found when the files are read.
    held = tmp_path / "held.jsonl"
    (tmp_path / "bundles").symlink_to(BUNDLED_TASKS.parent / "bundles")  # the task's repo_url is relative to its file
    held.write_text(next(line for line in BUNDLED_TASKS.read_text().splitlines() if "tkem__cachetools-1" in line) + "\n")
    cfg = load_config(PipelineConfig, SMOKE, [f"heldout_tasks={held}", "heldout_instances=[]"])
    with pytest.raises(PipelineError, match=r"training and held-out tasks overlap \(tkem__cachetools-1\)"):
        split_tasks(cfg)
    cfg = load_config(PipelineConfig, SMOKE, ["heldout_instances=[jpvanhal__inflection-1]", "train_instances=[pytoolz__toolz-1]"])
    with pytest.raises(PipelineError, match=r"rft.demonstration_task jpvanhal__inflection-1 is held out"):
        split_tasks(cfg)
    with pytest.raises(PipelineError, match=r"heldout_instances is empty"):
        split_tasks(load_config(PipelineConfig, SMOKE, ["heldout_instances=[]"]))
    with pytest.raises(PipelineError, match=r"heldout_instances: unknown instance id\(s\) nope__nope-1"):
        split_tasks(load_config(PipelineConfig, SMOKE, ["heldout_instances=[nope__nope-1]"]))


def test_default_training_set_is_every_task_not_held_out():
    cfg = load_config(PipelineConfig, SMOKE, ["train_instances=[]"])
    train, heldout = split_tasks(cfg)
    assert len(train) == 13 and not {t.instance_id for t in train} & {t.instance_id for t in heldout}


# ---- the smoke preset end to end (slow: episodes, grading and training for real) ----------------

def _markers(run_dir: Path) -> dict[str, float]:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in run_dir.rglob("step.json")}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, bundled_tasks):
    run_dir = tmp_path_factory.mktemp("pipeline") / "smoke"
    assert main(["run", str(SMOKE), "--set", f"run_dir={run_dir}"]) == 0
    return run_dir


@pytest.mark.slow
def test_smoke_report_has_every_row_matching_the_evaluations(smoke_run):
    report = json.loads((smoke_run / "report.json").read_text())
    assert [r["row"] for r in report["rows"]] == ROWS
    assert report["runs"] == 2 and report["heldout_tasks"] == 2
    md = (smoke_run / "report.md").read_text()
    for row in report["rows"]:
        metrics = json.loads((Path(row["eval_dir"]) / "metrics.json").read_text())
        assert row["pass_at_1"] == metrics["pass_at_1"] and row["pass_at_k"] == metrics["pass_at_k"]["2"]
        assert row["format_error_rate"] == metrics["format_error_rate"] and row["mean_turns"] == metrics["mean_turns"]
        assert metrics["num_tasks"] == 2 and metrics["num_runs"] == 2
        p1 = metrics["pass_at_1"]
        assert f"| {row['row']} | {100 * p1['mean']:.1f}% ± {100 * p1['sem']:.1f}% |" in md
    # base and the warm start were evaluated; a row whose model did not change reuses the last evaluation.
    by_row = {r["row"]: r for r in report["rows"]}
    assert not by_row["base"]["same_as"] and not by_row["warm start (BC)"]["same_as"]
    assert by_row["base"]["eval_dir"] != by_row["warm start (BC)"]["eval_dir"]
    for row in report["rows"][2:]:
        assert bool(row["same_as"]) == row["note"].startswith("unchanged"), row
    assert [r["stage"] for r in report["rl"]] == [1, 2]
    assert (smoke_run / "viewer.html").stat().st_size > 1000
    assert all(Path(p).is_file() for p in report["plots"]) and (smoke_run / "rl_reward_mean.png").is_file()
    assert list(report["step_wall_s"]) == ["eval_base", "warm_start", "eval_warm_start", "rft", "eval_rft",
                                           "rl_stage1", "eval_rl_stage1", "rl_stage2", "eval_rl_stage2"]


@pytest.mark.slow
def test_smoke_never_trains_on_the_heldout_tasks(smoke_run):
    from swe_rl.rollouts.store import read_trajectories

    report = json.loads((smoke_run / "report.json").read_text())
    train, held = set(report["train_ids"]), set(report["heldout_ids"])
    sampled = [smoke_run / "warm_start" / "collect" / "trajectories.jsonl", smoke_run / "rft" / "collect" / "trajectories.jsonl",
               *sorted((smoke_run / "rl").glob("iter_*/traj.jsonl"))]
    ids = {t.instance_id for t in read_trajectories(sampled)}
    assert ids and ids <= train and not ids & held
    evaluated = {t.instance_id for t in read_trajectories([smoke_run / "eval_base" / "trajectories.jsonl"])}
    assert evaluated == held


@pytest.mark.slow
def test_smoke_rerun_skips_every_step_and_a_changed_step_is_an_error(smoke_run, capsys):
    # as if the steps ran before swe-rl had these knobs: at their defaults they change nothing
    for step, knob in (("rl_stage1", ("measure_logprob_gap",)), ("rft", ("agent", "window"))):
        rec = json.loads((smoke_run / step / "step.json").read_text())
        *parents, leaf = knob
        section = rec["config"]
        for key in parents:
            section = section[key]
        del section[leaf]
        (smoke_run / step / "step.json").write_text(json.dumps(rec))
    before = _markers(smoke_run)
    assert main(["run", str(SMOKE), "--set", f"run_dir={smoke_run}"]) == 0
    assert _markers(smoke_run) == before  # nothing was redone
    assert "RL stage 2" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"rft was made with different samples .*samples: 2 there, 3 now"):
        main(["run", str(SMOKE), "--set", f"run_dir={smoke_run}", "--set", "rft.samples=3"])
    with pytest.raises(SystemExit, match=r"eval_base was made with different runs"):
        main(["run", str(SMOKE), "--set", f"run_dir={smoke_run}", "--set", "eval.runs=3"])


@pytest.mark.slow
def test_smoke_continues_after_the_last_steps_were_lost(smoke_run):
    """As after a kill once RL had finished: the stage-2 step and its evaluation are made again, nothing else."""
    before = _markers(smoke_run)
    shutil.rmtree(smoke_run / "rl_stage2")
    shutil.rmtree(smoke_run / "eval_rl_stage2")
    assert main(["run", str(SMOKE), "--set", f"run_dir={smoke_run}"]) == 0
    after = _markers(smoke_run)
    redone = sorted(k for k in after if after[k] != before.get(k))
    assert redone == ["eval_rl_stage2/step.json", "rl_stage2/step.json"]
    report = json.loads((smoke_run / "report.json").read_text())
    assert [r["row"] for r in report["rows"]] == ROWS and len(report["rl"]) == 2  # RL was not run again
