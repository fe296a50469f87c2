"""One metrics interface; a do-nothing backend when tracking is off (STYLE habit 11).

Only the rank-0 process logs. ``JsonlTracker`` writes ``metrics.jsonl`` beside a run; the
MLflow adapter lives in :mod:`ejc.train.mlflow_tracker`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_artifact(self, path: str | os.PathLike[str]) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Tracking off: every call does nothing."""

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


class JsonlTracker:
    """Appends ``{"step": s, **metrics}`` lines to a file; params go to ``params.json`` beside it."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log_params(self, params: dict[str, Any]) -> None:
        (self.path.parent / "params.json").write_text(json.dumps(params, indent=2, default=str))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        pass  # artifacts already live in the run directory

    def finish(self, status: str = "FINISHED") -> None:
        pass

    def history(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


__all__ = ["JsonlTracker", "NullTracker", "Tracker"]
