"""The public surface: pinned names, lazy imports, no side effects on import."""

import subprocess
import sys

import ejc

PUBLIC = [
    "CheckpointError", "ColumnMapping", "Config", "ConfigError", "EVENT_SCHEMA", "EjcError", "EmbeddingConfig",
    "END", "EventJEPA", "EventSequence", "ReaderError", "SchemaError", "TableSpec", "TypeVocab", "Validator",
    "create_embedder", "generate_synthetic", "ingest", "load_config", "pretrain", "read_events",
    "register_embedding_type", "sequences_from_table", "__version__",
    "register_pattern", "detect_patterns", "Constraints", "TargetState",
    "Entity", "EmbeddingCube",
]


def test_all_is_pinned_and_resolves():
    assert sorted(ejc.__all__) == sorted(PUBLIC)
    for name in ejc.__all__:
        assert getattr(ejc, name) is not None


def test_import_has_no_heavy_side_effects():
    code = "import sys, ejc; print(sorted(m for m in ('torch', 'ray', 'mlflow', 'faiss') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
