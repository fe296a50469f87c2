"""Training windows: one row per fixed-length window of one entity's time-sorted events.

The window table (:data:`WINDOW_SCHEMA`) is what distributed training reads: the Ray Data
pipeline writes it and Ray Train workers turn its rows back into :class:`EventSequence` s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ejc.data.sequence import EventSequence, window_starts

WINDOW_SCHEMA = pa.schema(
    [
        pa.field("entity_id", pa.string()),
        pa.field("window", pa.int32()),
        pa.field("num_events", pa.int32()),
        pa.field("timestamps", pa.list_(pa.float64())),  # null when the entity has no timestamps
        pa.field("event_types", pa.list_(pa.string())),
        pa.field("modalities", pa.list_(pa.string())),
        pa.field("embeddings", pa.list_(pa.list_(pa.float32()))),
        pa.field("labels", pa.list_(pa.string())),
    ]
)


def windows_batch(events: pa.Table, length: int, stride: int | None = None, min_events: int = 1, order_col: str | None = "_row") -> pa.Table:
    """Sort each entity's events by time (ties by ``order_col``) and cut them into windows.

    ``events`` must hold whole entities (the pipeline hash-partitions by ``entity_id`` first).
    Entities with fewer than ``min_events`` events produce no window.
    """
    if events.num_rows == 0:
        return WINDOW_SCHEMA.empty_table()
    keys = [("entity_id", "ascending"), ("timestamp", "ascending")]
    for col in ("_source", order_col):
        if col and col in events.column_names:
            keys.append((col, "ascending"))
    events = events.take(pc.sort_indices(events, sort_keys=keys))
    stride = stride or max(1, length // 2)
    ids = events.column("entity_id").to_numpy(zero_copy_only=False)
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(ids)]])
    ts = events.column("timestamp").to_numpy(zero_copy_only=False)
    cols = {c: events.column(c).to_pylist() for c in ("event_type", "modality", "embedding", "label")}
    out: dict[str, list[Any]] = {f.name: [] for f in WINDOW_SCHEMA}
    for s, e in zip(starts, ends):
        n = e - s
        if n < min_events:
            continue
        w_starts = window_starts(n, length, stride)
        timed = not np.isnan(ts[s:e]).all()
        for w, ws in enumerate(w_starts):
            a, b = s + ws, min(e, s + ws + length)
            out["entity_id"].append(ids[s])
            out["window"].append(w)
            out["num_events"].append(b - a)
            out["timestamps"].append(ts[a:b].tolist() if timed else None)
            out["event_types"].append(cols["event_type"][a:b])
            out["modalities"].append(cols["modality"][a:b])
            out["embeddings"].append(cols["embedding"][a:b])
            out["labels"].append(cols["label"][a:b])
    return pa.table(out, schema=WINDOW_SCHEMA)


def windows_to_sequences(windows: pa.Table | dict[str, Any]) -> list[EventSequence]:
    """Window rows (a table, or a Ray ``iter_batches`` dict of columns) -> EventSequences."""
    rows = windows.to_pylist() if isinstance(windows, pa.Table) else [dict(zip(windows, vals)) for vals in zip(*windows.values())]
    seqs = []
    for r in rows:
        types = list(r["event_types"])
        labels = list(r["labels"])
        seqs.append(
            EventSequence(
                embeddings=[None if v is None else np.asarray(v, np.float32) for v in r["embeddings"]],
                timestamps=None if r["timestamps"] is None else np.asarray(r["timestamps"], np.float64),
                modality=list(r["modalities"]),
                event_types=types if any(t is not None for t in types) else None,
                labels=labels if any(x is not None for x in labels) else None,
                id=f"{r['entity_id']}#{r['window']}",
            )
        )
    return seqs


__all__ = ["WINDOW_SCHEMA", "windows_batch", "windows_to_sequences"]
