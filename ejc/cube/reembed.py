"""Incremental re-embedding of entity behaviour: which entities changed, their new vectors, the state.

The state directory of a re-embedding job::

    STATE/embeddings/part-*.parquet   behaviour vectors (format: :mod:`ejc.cube.embeddings_io`;
                                       a later file's row replaces an earlier one for the same id)
    STATE/entities.parquet            per entity: events seen, last event time, model version
    STATE/watermark.json              model version, last event time seen, run counters

An entity is re-embedded when it is new, when its number of events or its last event time
differs from the stored fingerprint (new events, late events with old timestamps, corrections),
or when the model version changed. A second run over the same events and model therefore embeds
nothing, and new events for k entities re-embed exactly those k. The fingerprint is committed
only after the vectors are written, so a crash in between re-embeds the same entities again on
the next run (never skips them).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ejc.cube.embeddings_io import write_embeddings
from ejc.errors import CheckpointError

EMBEDDINGS_DIR = "embeddings"
ENTITIES_FILE = "entities.parquet"
WATERMARK_FILE = "watermark.json"

FINGERPRINT_SCHEMA = pa.schema([("entity_id", pa.string()), ("num_events", pa.int64()), ("last_timestamp", pa.float64())])


def model_version_of(model_dir: str | os.PathLike[str]) -> str:
    """A content version of a checkpoint directory: sha256 of its weights (same weights, same version)."""
    d = Path(model_dir)
    weights = sorted(d.rglob("model.safetensors"))
    if not weights:
        raise CheckpointError(f"{d}: no model.safetensors here; pass a checkpoint directory written by ejc pretrain / jobs/pretrain.py")
    h = hashlib.sha256()
    with open(weights[-1], "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()[:16]


def fingerprints(events: pa.Table) -> pa.Table:
    """Per entity: number of events and last event time (NaN when the entity has no timestamps)."""
    t = events.select(["entity_id", "timestamp"])
    t = t.set_column(1, "timestamp", pc.fill_null(t.column("timestamp").cast(pa.float64()), float("nan")))
    g = t.group_by("entity_id").aggregate([("entity_id", "count"), ("timestamp", "max")])
    return pa.table(
        {"entity_id": g.column("entity_id"), "num_events": g.column("entity_id_count").cast(pa.int64()), "last_timestamp": pc.fill_null(g.column("timestamp_max"), float("nan"))},
        schema=FINGERPRINT_SCHEMA,
    )


def combine_fingerprints(parts: list[pa.Table]) -> pa.Table:
    """Merge partial fingerprints (e.g. one per data block): counts add up, last times take the max."""
    if not parts:
        return FINGERPRINT_SCHEMA.empty_table()
    t = pa.concat_tables(parts)
    g = t.group_by("entity_id").aggregate([("num_events", "sum"), ("last_timestamp", "max")])
    out = pa.table({"entity_id": g.column("entity_id"), "num_events": g.column("num_events_sum"), "last_timestamp": pc.fill_null(g.column("last_timestamp_max"), float("nan"))}, schema=FINGERPRINT_SCHEMA)
    return out.sort_by("entity_id")


def load_state(state_dir: str | os.PathLike[str]) -> tuple[pa.Table, dict[str, Any]]:
    """The stored fingerprints and watermark (empty ones for a new state directory)."""
    d = Path(state_dir)
    meta_path, ent_path = d / WATERMARK_FILE, d / ENTITIES_FILE
    if not meta_path.exists():
        return FINGERPRINT_SCHEMA.empty_table(), {}
    try:
        meta = json.loads(meta_path.read_text())
        table = pq.read_table(ent_path).cast(FINGERPRINT_SCHEMA)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise CheckpointError(f"{d}: the re-embedding state is unreadable ({e}); restore it or start a new state directory (everything is re-embedded)") from e
    return table, meta


def plan(current: pa.Table, stored: pa.Table, model_version: str, stored_model_version: str | None) -> dict[str, Any]:
    """Which entities to re-embed: new ones, changed fingerprints, or all when the model changed."""
    cur = {r["entity_id"]: (r["num_events"], r["last_timestamp"]) for r in current.to_pylist()}
    old = {r["entity_id"]: (r["num_events"], r["last_timestamp"]) for r in stored.to_pylist()}
    model_changed = stored_model_version is not None and stored_model_version != model_version
    new = [e for e in cur if e not in old]
    changed = [e for e in cur if e in old and (model_changed or not _same(cur[e], old[e]))]
    return {"reembed": sorted(new + changed), "new": len(new), "changed": len(changed), "unchanged": len(cur) - len(new) - len(changed), "model_changed": model_changed}


def _same(a: tuple[int, float], b: tuple[int, float]) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or (np.isnan(a[1]) and np.isnan(b[1])))


def embed_entities(events: pa.Table, model: Any, modality: str, min_events: int = 1) -> pa.Table:
    """Behaviour vectors of every entity in ``events`` (whole entities): ``entity_id, embedding, modality``."""
    from ejc.data.sequence import sequences_from_table

    seqs = [s for s in sequences_from_table(events) if len(s) >= min_events]
    if not seqs:
        return pa.table({"entity_id": pa.array([], pa.string()), "embedding": pa.array([], pa.list_(pa.float32())), "modality": pa.array([], pa.string())})
    vecs = np.asarray(model.embed_sequences(seqs), dtype=np.float32)
    return pa.table(
        {
            "entity_id": pa.array([s.id for s in seqs], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), vecs.shape[1]).cast(pa.list_(pa.float32())),
            "modality": pa.array([modality] * len(seqs), pa.string()),
        }
    )


def write_vectors(state_dir: str | os.PathLike[str], vectors: pa.Table, run_id: str) -> Path | None:
    """Append one embeddings file for this run (nothing when there are no vectors)."""
    if vectors.num_rows == 0:
        return None
    col = vectors.column("embedding").combine_chunks()
    emb = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(vectors.num_rows, -1)
    modality = vectors.column("modality")[0].as_py()
    return write_embeddings(Path(state_dir) / EMBEDDINGS_DIR / f"part-{run_id}.parquet", vectors.column("entity_id").to_pylist(), emb, modality=modality)


def commit_state(state_dir: str | os.PathLike[str], current: pa.Table, model_version: str, meta: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """Store the fingerprints and watermark (atomically: temp file + rename each)."""
    d = Path(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{ENTITIES_FILE}.tmp"
    pq.write_table(current.cast(FINGERPRINT_SCHEMA), tmp)
    os.replace(tmp, d / ENTITIES_FILE)
    ts = current.column("last_timestamp").to_numpy(zero_copy_only=False)
    finite = ts[np.isfinite(ts)]
    new_meta = {
        "model_version": model_version,
        "watermark": float(finite.max()) if finite.size else None,
        "entities": current.num_rows,
        "runs": int(meta.get("runs", 0)) + 1,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "last_run": counts,
    }
    tmp = d / f".{WATERMARK_FILE}.tmp"
    tmp.write_text(json.dumps(new_meta, indent=2))
    os.replace(tmp, d / WATERMARK_FILE)
    return new_meta


__all__ = ["combine_fingerprints", "commit_state", "embed_entities", "fingerprints", "load_state", "model_version_of", "plan", "write_vectors"]
