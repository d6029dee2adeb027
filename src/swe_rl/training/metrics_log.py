"""Training metrics to a JSONL file (always) and TensorBoard (when the `tensorboard` package is installed).

One row per optimizer step, flat `name: number` pairs; the JSONL file is the record the
reports read, TensorBoard is for watching a run live.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping


class MetricsLogger:
    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, filename: str = "metrics.jsonl") -> None:
        self.path = Path(run_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        self.tensorboard_note = ""
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # torch's writer needs the separate `tensorboard` package
                self.tensorboard_note = f"TensorBoard off ({e}); metrics go to {self.path} only"
            else:
                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        row = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):  # tensors and numpy scalars
        return v.item()
    return v


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
