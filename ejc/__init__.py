"""ejc — Event-JEPA-Cube: self-supervised representations of long, irregular, multi-modal
event sequences; prediction, anomalies and patterns; a searchable multi-space entity cube.

Importing ``ejc`` starts no Ray, touches no GPU, reads no environment variables and does not
import torch: the names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # data
    "EventSequence": "ejc.data.sequence",
    "END": "ejc.data.sequence",
    "sequences_from_table": "ejc.data.sequence",
    "EmbeddingConfig": "ejc.data.schema",
    "TableSpec": "ejc.data.schema",
    "Validator": "ejc.data.schema",
    "EVENT_SCHEMA": "ejc.data.schema",
    "ColumnMapping": "ejc.data.readers",
    "read_events": "ejc.data.readers",
    "ingest": "ejc.data.ingest",
    "generate_synthetic": ("ejc.data.synth", "generate"),
    # embedders
    "register_embedding_type": "ejc.embed",
    "create_embedder": "ejc.embed",
    "TypeVocab": "ejc.embed",
    # config, model, training
    "Config": "ejc.config",
    "load_config": "ejc.config",
    "EventJEPA": "ejc.infer.event_jepa",
    "register_pattern": "ejc.infer.patterns",
    "detect_patterns": "ejc.infer.patterns",
    "Constraints": "ejc.infer.simulate",
    "TargetState": "ejc.infer.simulate",
    "pretrain": "ejc.train.loop",
    # the cube
    "Entity": "ejc.cube.entity",
    "EmbeddingCube": "ejc.cube.cube",
    # errors
    "EjcError": "ejc.errors",
    "ConfigError": "ejc.errors",
    "SchemaError": "ejc.errors",
    "ReaderError": "ejc.errors",
    "CheckpointError": "ejc.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'ejc' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
