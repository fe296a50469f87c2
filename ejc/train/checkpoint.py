"""Checkpoints: a run directory of step directories, published atomically through ``latest``.

Layout::

    RUN/latest                      name of the newest complete step directory
    RUN/checkpoints/step_00000100/
        config.json                 resolved Config, DataSpec, step, ejc version
        model.safetensors           every model tensor (context, EMA target, predictor, heads)
        trainer.pt                  optimizer, sampler, RNG and schedule state (weights_only-safe)

A step directory is written under a temporary name and renamed when complete, then ``latest``
is replaced atomically, so a crash never leaves a half checkpoint in use. Nothing is
unpickled: tensors come from safetensors, trainer state through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ejc.config import Config
from ejc.errors import CheckpointError
from ejc.train.data import DataSpec

FORMAT_VERSION = 1


def save_checkpoint(run_dir: str | os.PathLike[str], model: torch.nn.Module, cfg: Config, spec: DataSpec, step: int, trainer_state: dict[str, Any] | None = None, keep: int = 2) -> Path:
    run = Path(run_dir)
    ckpts = run / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    tmp = ckpts / f".tmp_{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    meta = {"format_version": FORMAT_VERSION, "ejc_version": _version(), "step": step, "config": cfg.to_dict(), "data_spec": spec.to_dict()}
    (tmp / "config.json").write_text(json.dumps(meta, indent=2))
    if trainer_state is not None:
        torch.save(trainer_state, tmp / "trainer.pt")
    final = ckpts / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = run / ".latest.tmp"
    latest_tmp.write_text(name)
    os.replace(latest_tmp, run / "latest")
    for old in sorted(p for p in ckpts.iterdir() if p.name.startswith("step_"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """The step directory ``path`` names: itself, or the run's ``latest``; None when none exists."""
    p = Path(path)
    if (p / "model.safetensors").is_file():
        return p
    latest = p / "latest"
    if latest.is_file():
        d = p / "checkpoints" / latest.read_text().strip()
        if (d / "model.safetensors").is_file():
            return d
        raise CheckpointError(f"{latest} points at {d}, which is missing or incomplete; delete {latest} to start over")
    return None


def load_checkpoint(path: str | os.PathLike[str], with_trainer: bool = True) -> tuple[Config, DataSpec, dict[str, torch.Tensor], dict[str, Any] | None, dict[str, Any]]:
    """``(config, data_spec, model_state, trainer_state, meta)`` of a run or step directory."""
    d = resolve_checkpoint(path)
    if d is None:
        raise CheckpointError(f"{path}: no checkpoint here (expected model.safetensors or a 'latest' file); train one with `ejc pretrain`")
    try:
        meta = json.loads((d / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{d / 'config.json'}: unreadable checkpoint metadata: {e}") from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{d}: checkpoint format {meta.get('format_version')} is not {FORMAT_VERSION}; re-train or convert it")
    try:
        state = load_file(str(d / "model.safetensors"))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{d / 'model.safetensors'}: corrupted or unreadable: {e}") from e
    trainer = None
    if with_trainer and (d / "trainer.pt").is_file():
        try:
            trainer = torch.load(d / "trainer.pt", weights_only=True, map_location="cpu")
        except Exception as e:
            raise CheckpointError(f"{d / 'trainer.pt'}: corrupted or unreadable: {e}") from e
    cfg = Config.from_dict(meta["config"])
    spec = DataSpec.from_dict(meta["data_spec"])
    return cfg, spec, state, trainer, meta


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ejc")
    except Exception:
        return "unknown"


__all__ = ["load_checkpoint", "resolve_checkpoint", "save_checkpoint"]
