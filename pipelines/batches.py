"""Pure batch functions of the Ray Data pipelines (``pa.Table -> pa.Table``), testable without Ray.

Stage table (:data:`STAGE_SCHEMA`): every record read, accepted or not, in one schema, so one
pass over the input writes both outputs. Accepted rows carry the event columns and
``_status = "accepted"``; quarantined rows carry the quarantine columns and
``_status = "quarantined"``. ``read = accepted + quarantined`` holds per batch.

Window table: :data:`ejc.data.windows.WINDOW_SCHEMA` (the library owns the format, so Ray
Train workers need only ``ejc``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ejc.data.readers import ColumnMapping, read_events
from ejc.data.schema import EVENT_SCHEMA, QUARANTINE_SCHEMA, EmbeddingConfig, TableSpec, Validator
from ejc.data.windows import WINDOW_SCHEMA, windows_batch, windows_to_sequences  # re-exported for the pipeline

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


def entity_buckets(entity_ids: pa.Array | pa.ChunkedArray, num_buckets: int) -> np.ndarray:
    """``[n]`` bucket of each entity id: BLAKE2b of the id mod ``num_buckets`` (stable across
    processes and machines, unlike Python's ``hash``); each distinct id is hashed once."""
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
    arr = entity_ids.combine_chunks() if isinstance(entity_ids, pa.ChunkedArray) else entity_ids
    if len(arr) == 0 or num_buckets == 1:
        return np.zeros(len(arr), np.int64)
    enc = pc.dictionary_encode(arr)
    codes = np.array(
        [int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "little") % num_buckets for v in enc.dictionary.to_pylist()],
        np.int64,
    )
    return codes[enc.indices.to_numpy(zero_copy_only=False)]


@dataclass
class StageParts:
    """One stage table split into what the pipeline writes: events, quarantine, entity buckets."""

    events: pa.Table  # EVENT_SCHEMA
    quarantine: pa.Table  # QUARANTINE_SCHEMA
    buckets: dict[int, pa.Table] = field(default_factory=dict)  # bucket -> accepted rows + _source, _row

    def counts(self) -> dict[str, Any]:
        reasons = {r["values"]: int(r["counts"]) for r in pc.value_counts(self.quarantine.column("reason")).to_pylist()} if self.quarantine.num_rows else {}
        return {"accepted": self.events.num_rows, "quarantined": self.quarantine.num_rows, "reasons": reasons}


def split_stage(staged: pa.Table, num_buckets: int = 0) -> StageParts:
    """Split a stage table; with ``num_buckets > 0`` also group accepted rows by entity bucket.

    ``read = accepted + quarantined`` per table, and every accepted row lands in exactly one bucket.
    """
    acc = accepted_with_order(staged)
    parts = StageParts(acc.select(list(EVENT_SCHEMA.names)).cast(EVENT_SCHEMA), quarantined_records(staged))
    if num_buckets > 0 and acc.num_rows:
        b = entity_buckets(acc.column("entity_id"), num_buckets)
        order = np.argsort(b, kind="stable")
        sb = b[order]
        cuts = np.flatnonzero(np.diff(sb)) + 1
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(sb)]])):
            parts.buckets[int(sb[lo])] = acc.take(pa.array(order[lo:hi]))
    return parts


def embed_stage(staged: pa.Table, embedder: Any, dims: dict[str, int]) -> pa.Table:
    """Embed the accepted rows of a stage table that have no vector (quarantined rows untouched)."""
    from ejc.data.ingest import embed_missing

    ok = pc.equal(staged.column("_status"), STATUS_ACCEPTED)
    acc = staged.filter(ok)
    if acc.num_rows == 0:
        return staged
    return pa.concat_tables([embed_missing(acc, embedder, dims).cast(STAGE_SCHEMA), staged.filter(pc.invert(ok))])


def quarantined_records(staged: pa.Table) -> pa.Table:
    """The quarantined rows of a stage table as a quarantine table (:data:`QUARANTINE_SCHEMA`)."""
    t = staged.filter(pc.equal(staged.column("_status"), STATUS_QUARANTINED))
    return pa.table(
        {"source": t.column("_source"), "row": t.column("_row"), "reason": t.column("_reason"), "detail": t.column("_detail"), "record": t.column("_record")},
        schema=QUARANTINE_SCHEMA,
    )


__all__ = [
    "STAGE_SCHEMA",
    "WINDOW_SCHEMA",
    "accepted_events",
    "accepted_with_order",
    "embed_stage",
    "entity_buckets",
    "quarantined_records",
    "read_and_validate_file",
    "spec_from_dict",
    "split_stage",
    "StageParts",
    "spec_to_dict",
    "stage",
    "windows_batch",
    "windows_to_sequences",
]
