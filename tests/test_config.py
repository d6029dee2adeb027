from dataclasses import dataclass, field
from pathlib import Path

import pytest

from swe_rl.config import ConfigError, load_config, to_dict


@dataclass(frozen=True)
class Stage:
    max_turns: int = 40
    clip: tuple[float, float] = (0.2, 0.3)


@dataclass(frozen=True)
class Cfg:
    lr: float = 1e-6
    name: str = "run"
    out: Path = Path("runs")
    stage: Stage = field(default_factory=Stage)
    stages: list[Stage] = field(default_factory=list)
    seed: int | None = None


def test_yaml_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("lr: 5\nstage: {max_turns: 10}\nstages:\n  - {max_turns: 1, clip: [0.1, 0.2]}\n")
    cfg = load_config(Cfg, f, ["stage.clip=[0.2, 0.26]", "seed=3", "out=/tmp/x"])
    assert cfg.lr == 5.0 and isinstance(cfg.lr, float)
    assert load_config(Cfg, None, ["lr=1e-3"]).lr == 0.001
    assert cfg.stage == Stage(max_turns=10, clip=(0.2, 0.26))
    assert cfg.stages == [Stage(max_turns=1, clip=(0.1, 0.2))]
    assert cfg.seed == 3 and cfg.out == Path("/tmp/x")
    assert to_dict(cfg)["stage"] == {"max_turns": 10, "clip": [0.2, 0.26]}


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("stage: {max_turn: 10}\n")
    with pytest.raises(ConfigError, match=r"c.yaml.stage: unknown key\(s\) max_turn"):
        load_config(Cfg, f)


@pytest.mark.parametrize(
    "override, message",
    [("lr=fast", "expected float"), ("stage.max_turns=1.5", "expected int"), ("lr", "expected key.sub=value"), ("name.x=1", "name: expected str")],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Cfg, None, [override])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Cfg, bad)
