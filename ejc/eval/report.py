"""The result record every ``ejc evaluate`` task writes and prints.

``{"task", "dataset", "metrics": {"ejc": {...}, "<baseline>": {...}}, "train_seconds", "machine", ...}``
with extra keys (``details``: split sizes, chosen hyper-parameters, optimistic figures) after
those. Non-finite numbers become ``null`` so the JSON is strict.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> str:
    """A one-line description of where the run happened (CPU count, GPU if torch sees one)."""
    desc = f"{platform.machine()} {os.cpu_count()} CPU, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        desc += f", torch {torch.__version__}, {gpu}"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return desc


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 6) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return _clean(x.item())
    return x


def make_result(task: str, dataset: str, metrics: dict[str, dict[str, float]], train_seconds: float, **details: Any) -> dict[str, Any]:
    """The result record; ``metrics`` must hold ``"ejc"`` first, then the baselines."""
    out: dict[str, Any] = {"task": task, "dataset": dataset, "metrics": metrics, "train_seconds": train_seconds, "machine": machine()}
    if details:
        out["details"] = details
    return _clean(out)


def metrics_table(result: dict[str, Any]) -> str:
    """A Markdown table of a result record: one row per method (ejc first), one column per metric
    (``threshold`` left out; ``n/a`` where a method lacks one). A next-event result's
    ``details.ceiling`` rows follow, marked as the in-sample bounds they are."""
    metrics = result["metrics"]
    keys = list(dict.fromkeys(k for vals in metrics.values() for k in vals if k != "threshold"))
    rows = list(metrics.items())
    ceiling = (result.get("details") or {}).get("ceiling") or {}
    rows += [(f"ceiling: {name.replace('_', ' ')} (in-sample bound)", vals) for name, vals in ceiling.items() if isinstance(vals, dict)]

    def cell(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    lines = [f"**{result['dataset']}** ({result['task']}; ejc training {result['train_seconds']:.0f} s; {result['machine']})", "",
             "| method | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(cell(vals.get(k)) for k in keys) + " |" for name, vals in rows]
    return "\n".join(lines)


def write_result(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as indented JSON (atomically: a temporary file renamed into place)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(p)
    return p


__all__ = ["machine", "make_result", "metrics_table", "write_result"]
