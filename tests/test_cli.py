"""The `swe-rl` command's error reporting (src/swe_rl/cli.py `console`), through a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def swe_rl(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "SWE_RL_TRACEBACK"} | env
    return subprocess.run([sys.executable, "-m", "swe_rl.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=full_env, timeout=120)


def test_bad_input_is_one_line_and_exit_2():
    r = swe_rl("rl", "--config", "configs/rl_stage1_cpu.yaml", "--set", "sampls=3")
    assert r.returncode == 2
    assert r.stderr.startswith("swe-rl: error: configs/rl_stage1_cpu.yaml: unknown key(s) sampls for RLConfig")
    assert "Traceback" not in r.stderr


def test_missing_config_file_names_it():
    r = swe_rl("rl", "--config", "no/such/config.yaml")
    assert r.returncode == 2
    assert "no/such/config.yaml" in r.stderr and "Traceback" not in r.stderr


def test_a_commands_own_report_also_exits_2():
    r = swe_rl("rft", "--config", "no/such/config.yaml")
    assert r.returncode == 2
    assert r.stderr.strip() == "swe-rl rft: config file not found: no/such/config.yaml"


def test_traceback_on_request():
    r = swe_rl("rl", "--config", "configs/rl_stage1_cpu.yaml", "--set", "sampls=3", SWE_RL_TRACEBACK="1")
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "ConfigError" in r.stderr


def test_episode_timeouts_reach_the_agent_config():
    from swe_rl.cli import _run_options, build_parser

    argv = ["eval", "--tasks", "bundled", "--model", "tiny", "--out", "x"]
    agent = _run_options(build_parser().parse_args(argv + ["--command-timeout", "5", "--grade-timeout", "90"])).agent_config()
    assert (agent.command_timeout_s, agent.grade_timeout_s) == (5.0, 90.0)
    default = _run_options(build_parser().parse_args(argv)).agent_config()
    assert (default.command_timeout_s, default.grade_timeout_s) == (60.0, 600.0)


def test_a_timeout_of_zero_is_refused_before_anything_runs(tmp_path):
    r = swe_rl("rollout", "--tasks", "bundled", "--model", "tiny", "--out", str(tmp_path / "t.jsonl"), "--grade-timeout", "0")
    assert r.returncode == 2
    assert "argument --grade-timeout: must be > 0 seconds, got 0" in r.stderr
    r = swe_rl("eval", "--tasks", "bundled", "--model", "tiny", "--out", str(tmp_path / "e"), "--command-timeout", "soon")
    assert r.returncode == 2 and "argument --command-timeout: not a number of seconds: 'soon'" in r.stderr
    assert not (tmp_path / "t.jsonl").exists() and not (tmp_path / "e").exists()


def test_a_turn_limit_of_zero_is_one_error_line_before_any_model_loads(tmp_path):
    r = swe_rl("eval", "--tasks", "bundled", "--model", "tiny", "--out", str(tmp_path / "e"), "--max-turns", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "swe-rl: error: the episode options: max_turns must be >= 1, got 0"
    assert not (tmp_path / "e").exists()
