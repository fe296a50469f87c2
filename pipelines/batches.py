"""Pure batch functions of the Ray Data pipelines (``pa.Table -> pa.Table``), testable without Ray.

Stage table (:data:`STAGE_SCHEMA`): every record read, accepted or not, in one schema, so one
pass over the input writes both outputs. Accepted rows carry the event columns and
``_status = "accepted"``; quarantined rows carry the quarantine columns and
``_status = "quarantined"``. ``read = accepted + quarantined`` holds per batch.

Window table (:data:`WINDOW_SCHEMA`): one row per training window of one entity: its events
sorted by time (ties by source order), as list columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ejc.data.readers import ColumnMapping, read_events
from ejc.data.schema import EVENT_SCHEMA, QUARANTINE_SCHEMA, EmbeddingConfig, TableSpec, Validator
from ejc.data.sequence import EventSequence

STATUS_ACCEPTED = "accepted"
STATUS_QUARANTINED = "quarantined"

STAGE_SCHEMA = pa.schema(
    [pa.field(f.name, f.type) for f in EVENT_SCHEMA]  # entity_id nullable here: quarantined rows have none
    + [
        pa.field("_status", pa.string()),
        pa.field("_source", pa.string()),
        pa.field("_row", pa.int64()),
        pa.field("_reason", pa.string()),
        pa.field("_detail", pa.string()),
        pa.field("_record", pa.string()),
    ]
)

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


def spec_to_dict(spec: TableSpec) -> dict[str, Any]:
    return {
        "modalities": None if spec.modalities is None else {m: c.to_dict() for m, c in spec.modalities.items()},
        "require_timestamps": spec.require_timestamps,
        "time_format": spec.time_format,
    }


def spec_from_dict(d: dict[str, Any]) -> TableSpec:
    mods = d.get("modalities")
    return TableSpec(
        modalities=None if mods is None else {m: EmbeddingConfig(**c) for m, c in mods.items()},
        require_timestamps=bool(d.get("require_timestamps", False)),
        time_format=d.get("time_format"),
    )


def stage(accepted: pa.Table, quarantine: pa.Table, source: str, accepted_rows: np.ndarray | None = None) -> pa.Table:
    """Concatenate accepted events and quarantine records into one :data:`STAGE_SCHEMA` table."""
    na, nq = accepted.num_rows, quarantine.num_rows
    acc = {f.name: accepted.column(f.name) for f in EVENT_SCHEMA}
    acc.update(
        {
            "_status": pa.array([STATUS_ACCEPTED] * na, pa.string()),
            "_source": pa.array([source] * na, pa.string()),
            "_row": pa.array(accepted_rows if accepted_rows is not None else np.full(na, -1), pa.int64()),
            "_reason": pa.nulls(na, pa.string()),
            "_detail": pa.nulls(na, pa.string()),
            "_record": pa.nulls(na, pa.string()),
        }
    )
    q = {f.name: pa.nulls(nq, f.type) for f in EVENT_SCHEMA}
    q.update(
        {
            "_status": pa.array([STATUS_QUARANTINED] * nq, pa.string()),
            "_source": quarantine.column("source"),
            "_row": quarantine.column("row"),
            "_reason": quarantine.column("reason"),
            "_detail": quarantine.column("detail"),
            "_record": quarantine.column("record"),
        }
    )
    return pa.concat_tables([pa.table(acc).cast(STAGE_SCHEMA), pa.table(q).cast(STAGE_SCHEMA)])


def read_and_validate_file(path: str, fmt: str, mapping: ColumnMapping | None, spec: TableSpec, chunk_rows: int = 65536) -> Iterator[pa.Table]:
    """Read one source file with the ejc readers and yield stage tables chunk by chunk."""
    validator = Validator(spec)
    for chunk in read_events(path, format=fmt, mapping=mapping, chunk_rows=chunk_rows):
        accepted, quarantine, good = validator.split(chunk.table, path)
        rows = None
        if "_row" in chunk.table.column_names:
            rows = chunk.table.column("_row").to_numpy(zero_copy_only=False)[good]
        if chunk.quarantine.num_rows:
            quarantine = pa.concat_tables([chunk.quarantine, quarantine])
        yield stage(accepted, quarantine, path, rows)


def accepted_events(staged: pa.Table) -> pa.Table:
    """The accepted rows of a stage table as an event table (:data:`EVENT_SCHEMA`)."""
    t = staged.filter(pc.equal(staged.column("_status"), STATUS_ACCEPTED))
    return t.select(list(EVENT_SCHEMA.names)).cast(EVENT_SCHEMA)


def accepted_with_order(staged: pa.Table) -> pa.Table:
    """Accepted rows with their provenance (``_source``, ``_row``), the input of windowing."""
    t = staged.filter(pc.equal(staged.column("_status"), STATUS_ACCEPTED))
    return t.select(list(EVENT_SCHEMA.names) + ["_source", "_row"])


def quarantined_records(staged: pa.Table) -> pa.Table:
    """The quarantined rows of a stage table as a quarantine table (:data:`QUARANTINE_SCHEMA`)."""
    t = staged.filter(pc.equal(staged.column("_status"), STATUS_QUARANTINED))
    return pa.table(
        {"source": t.column("_source"), "row": t.column("_row"), "reason": t.column("_reason"), "detail": t.column("_detail"), "record": t.column("_record")},
        schema=QUARANTINE_SCHEMA,
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
        w_starts = [0] if n <= length else list(range(0, n - length + 1, stride))
        if n > length and w_starts[-1] + length < n:
            w_starts.append(n - length)
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


__all__ = [
    "STAGE_SCHEMA",
    "WINDOW_SCHEMA",
    "accepted_events",
    "accepted_with_order",
    "quarantined_records",
    "read_and_validate_file",
    "spec_from_dict",
    "spec_to_dict",
    "stage",
    "windows_batch",
    "windows_to_sequences",
]
