"""Load what a replica serves: the event model (checkpoint/run directory or MLflow registry URI),
the embedding cube (a directory written by ``EmbeddingCube.save``) and the snippet index (a
directory written by ``ejc search index``), each with the identity reported by ``GET /v1/version``.

A directory's version is its training step plus a hash of its weights, so two different
checkpoints never report the same version; a registry model's version is ``NAME/VERSION``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ejc.errors import CheckpointError
from ejc.infer.event_jepa import EventJEPA
from ejc.train.checkpoint import resolve_checkpoint
from serve.schemas import CubeInfo, ModelInfo, SearchInfo


def load_model(source: str, tracking_uri: str | None = None, device: str = "cpu") -> tuple[EventJEPA, ModelInfo]:
    """The model at ``source`` (a run/step directory, or ``models:/NAME/VERSION|latest``, ``models:/NAME@ALIAS``)."""
    if source.startswith("models:/"):
        from ejc.train.mlflow_tracker import download_registered_model

        tmp = Path(tempfile.mkdtemp(prefix="ejc-serve-model-"))
        try:
            model_dir, ident = download_registered_model(source, tmp, tracking_uri)
            model, info = _load_dir(model_dir, source, device)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # everything is in memory now
        info.version = f"{ident['name']}/{ident['version']}"
        return model, info
    return _load_dir(Path(source), source, device)


def _load_dir(path: Path, source: str, device: str) -> tuple[EventJEPA, ModelInfo]:
    step_dir = resolve_checkpoint(path)
    if step_dir is None:
        raise CheckpointError(f"{source}: no checkpoint here (expected model.safetensors or a 'latest' file); train one with `ejc pretrain`")
    model = EventJEPA.from_pretrained(path, device=device)
    step = json.loads((step_dir / "config.json").read_text()).get("step")
    digest = hashlib.sha256()
    with open(step_dir / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    spec = model.spec
    info = ModelInfo(
        source=source,
        version=f"step{step}-{digest.hexdigest()[:12]}",
        step=None if step is None else int(step),
        modalities={m: int(spec.modality_dims.get(m, 0)) for m in spec.modalities},
        event_types=list(spec.vocab.types),
        calibrated=model.calibration is not None,
        loaded_at=time.time(),
    )
    return model, info


def load_cube(path: str, mmap: bool = True) -> tuple[Any, CubeInfo]:
    """The :class:`~ejc.cube.cube.EmbeddingCube` saved at ``path`` (indices memory-mapped read-only by default)."""
    from ejc.cube.cube import EmbeddingCube

    cube = EmbeddingCube.load(path, mmap=mmap)
    info = CubeInfo(source=str(path), version=str(cube.version), entities=len(cube), modalities=list(cube.modalities), loaded_at=time.time())
    return cube, info


def load_search(path: str, mmap: bool = True) -> tuple[Any, SearchInfo]:
    """The snippet index at ``path`` (``ejc search index DIR --out PATH``: the version its
    ``CURRENT`` names), with its query embedder warmed up (MiniLM loaded now, not on the first request)."""
    from ejc.search.query import SearchIndex

    index = SearchIndex.load(path, mmap=mmap)
    index.embedder.embed(["warm up"])
    m = index.manifest
    info = SearchInfo(source=str(path), version=index.version, root=index.root, files=int(m["files"]), snippets=len(index),
                      embedder=str(m["settings"]["embed"].get("model")), loaded_at=time.time())
    return index, info


__all__ = ["load_cube", "load_model", "load_search"]
