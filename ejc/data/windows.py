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
    """Sort each entity's events by time (ties by ``_source``, then ``order_col``) and cut them into windows.

    ``events`` must hold whole entities (the pipeline hash-partitions by ``entity_id`` first).
    Entities with fewer than ``min_events`` events produce no window. The windows are built with
    Arrow ``take`` over one index array (no per-event Python objects), so cutting a partition
    costs about as much as sorting it.
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
    ts = events.column("timestamp").to_numpy(zero_copy_only=False).astype(np.float64)
    win_lo: list[int] = []  # per window: first event, end (exclusive), entity start
    win_hi: list[int] = []
    win_no: list[int] = []
    win_ent: list[int] = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        n = e - s
        if n < min_events:
            continue
        for w, ws in enumerate(window_starts(n, length, stride)):
            win_lo.append(s + ws)
            win_hi.append(min(e, s + ws + length))
            win_no.append(w)
            win_ent.append(s)
    if not win_lo:
        return WINDOW_SCHEMA.empty_table()
    lo, hi = np.asarray(win_lo, np.int64), np.asarray(win_hi, np.int64)
    sizes = hi - lo
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    take = pa.array(np.arange(offsets[-1]) - np.repeat(offsets[:-1] - lo, sizes))  # window rows, concatenated
    off = pa.array(offsets.astype(np.int32))
    # an entity is untimed when all its timestamps are null/NaN: its windows get a null list
    timed_ent = np.logical_or.reduceat(~np.isnan(ts), starts)
    ent_index = np.searchsorted(starts, np.asarray(win_ent, np.int64))
    untimed = pa.array(~timed_ent[ent_index])

    def lists(col: str, mask: pa.Array | None = None) -> pa.Array:
        values = events.column(col).combine_chunks().take(take)
        return pa.ListArray.from_arrays(off, values, mask=mask)

    ts_values = pa.array(ts).take(take)
    return pa.table(
        {
            "entity_id": pa.array(ids[lo], pa.string()),
            "window": pa.array(win_no, pa.int32()),
            "num_events": pa.array(sizes.astype(np.int32)),
            "timestamps": pa.ListArray.from_arrays(off, ts_values, mask=untimed),
            "event_types": lists("event_type"),
            "modalities": lists("modality"),
            "embeddings": lists("embedding"),
            "labels": lists("label"),
        },
        schema=WINDOW_SCHEMA,
    )


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
