"""The canonical event table: Arrow schema, row validation and quarantine.

One row is one event. Readers produce *raw* tables that carry the canonical column names but
loosely typed values (timestamps as strings, vectors as text, ...) plus a ``_row`` column with
the record's position in its source. :class:`Validator` turns a raw table into

* an **accepted** table with exactly :data:`EVENT_SCHEMA`, source order preserved, and
* a **quarantine** table (:data:`QUARANTINE_SCHEMA`) holding every rejected record as JSON
  with a reason code and a human-readable detail.

Nothing is dropped: ``len(raw) == len(accepted) + len(quarantine)`` for every call, and
:class:`IngestReport` carries ``read = accepted + quarantined`` across a whole job.

Timestamps are stored as float64 seconds since the Unix epoch (UTC). Naive datetimes are read
as UTC. A missing timestamp is null: the sequence then uses positions as time, unless the
:class:`TableSpec` requires timestamps.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ejc.errors import SchemaError

DEFAULT_MODALITY = "default"

EVENT_SCHEMA = pa.schema(
    [
        pa.field("entity_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.float64()),
        pa.field("event_type", pa.string()),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32())),
        pa.field("text", pa.string()),
        pa.field("attributes", pa.map_(pa.string(), pa.string())),
        pa.field("label", pa.string()),
    ]
)
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("record", pa.string()),
    ]
)


class Reason:
    """Reason codes written to the quarantine table (stable spellings: users count them)."""

    MISSING_ENTITY_ID = "missing_entity_id"
    MISSING_TIMESTAMP = "missing_timestamp"
    UNPARSABLE_TIMESTAMP = "unparsable_timestamp"
    UNPARSABLE_EMBEDDING = "unparsable_embedding"
    NONFINITE_EMBEDDING = "nonfinite_embedding"
    WRONG_DIMENSION = "wrong_dimension"
    UNKNOWN_MODALITY = "unknown_modality"
    MALFORMED_RECORD = "malformed_record"


@dataclass(frozen=True)
class EmbeddingConfig:
    """Declares one embedding space: its fixed dimension and where its vectors come from."""

    modality: str
    dim: int
    model_name: str = ""
    normalize: bool = False
    version: str = "1"

    def __post_init__(self) -> None:
        if not self.modality:
            raise SchemaError("EmbeddingConfig.modality must be a non-empty string")
        if int(self.dim) <= 0:
            raise SchemaError(f"EmbeddingConfig({self.modality!r}).dim must be positive, got {self.dim}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "dim": self.dim,
            "model_name": self.model_name,
            "normalize": self.normalize,
            "version": self.version,
        }


@dataclass
class TableSpec:
    """What the validator enforces.

    ``modalities``: declared spaces; when given, events of any other modality are quarantined
    as ``unknown_modality``. When ``None`` the spec is open: any modality is accepted and the
    first valid vector seen for a modality fixes its dimension (reported in :attr:`dims`).
    ``require_timestamps``: quarantine events without a timestamp instead of using positions.
    """

    modalities: dict[str, EmbeddingConfig] | None = None
    require_timestamps: bool = False
    time_format: str | None = None

    @classmethod
    def from_configs(cls, configs: list[EmbeddingConfig], **kw: Any) -> TableSpec:
        return cls(modalities={c.modality: c for c in configs}, **kw)


@dataclass
class IngestReport:
    """Counts for a whole job. ``read == accepted + quarantined`` always holds."""

    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    dims: dict[str, int] = field(default_factory=dict)

    def add(self, accepted: pa.Table, quarantine: pa.Table) -> None:
        self.read += accepted.num_rows + quarantine.num_rows
        self.accepted += accepted.num_rows
        self.quarantined += quarantine.num_rows
        if quarantine.num_rows:
            self.reasons.update(quarantine.column("reason").to_pylist())

    def add_quarantine(self, quarantine: pa.Table) -> None:
        self.add(empty_event_table(), quarantine)

    def check(self) -> None:
        if self.read != self.accepted + self.quarantined:  # pragma: no cover - internal invariant
            raise AssertionError(f"record accounting broken: {self.to_dict()}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "reasons": dict(sorted(self.reasons.items())),
        }


def empty_event_table() -> pa.Table:
    return EVENT_SCHEMA.empty_table()


def empty_quarantine_table() -> pa.Table:
    return QUARANTINE_SCHEMA.empty_table()


def quarantine_records(source: str, rows: list[int], reasons: list[str], details: list[str], records: list[Any]) -> pa.Table:
    """Build a quarantine table from parallel lists (``records`` are JSON-encoded here)."""
    encoded = [r if isinstance(r, str) else json.dumps(r, default=str, ensure_ascii=False) for r in records]
    return pa.table(
        {
            "source": pa.array([source] * len(rows), pa.string()),
            "row": pa.array(rows, pa.int64()),
            "reason": pa.array(reasons, pa.string()),
            "detail": pa.array(details, pa.string()),
            "record": pa.array(encoded, pa.string()),
        },
        schema=QUARANTINE_SCHEMA,
    )


def attributes_from_columns(table: pa.Table, columns: list[str]) -> pa.Array:
    """Pack ``columns`` of ``table`` into one ``map<string, string>`` array (nulls skipped)."""
    n = table.num_rows
    if not columns:
        return pa.nulls(n, pa.map_(pa.string(), pa.string()))
    cols = [pc.cast(table.column(c), pa.string()).to_pylist() for c in columns]
    items = [[(k, v[i]) for k, v in zip(columns, cols) if v[i] is not None] for i in range(n)]
    return pa.array(items, type=pa.map_(pa.string(), pa.string()))


# ----------------------------------------------------------------------------------------------
# value parsing


def parse_timestamps(arr: pa.Array | pa.ChunkedArray, time_format: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a column of timestamps into float64 epoch seconds.

    Accepts numbers (seconds), Arrow timestamps/dates, and strings (numbers or datetimes;
    naive datetimes are UTC). Returns ``(seconds, missing, bad)``: ``missing`` marks null or
    empty values, ``bad`` marks present values that could not be parsed.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    n = len(arr)
    out = np.full(n, np.nan, dtype=np.float64)
    t = arr.type
    if pa.types.is_null(t):
        return out, np.ones(n, bool), np.zeros(n, bool)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        vals = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        # NaN in a numeric column is how pandas writes "missing"; only inf is unparsable
        missing = np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), bool) | np.isnan(vals)
        bad = ~missing & ~np.isfinite(vals)
        return np.where(missing | bad, np.nan, vals), missing, bad
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        us = pc.cast(pc.cast(arr, pa.timestamp("us", tz=getattr(t, "tz", None) or "UTC")), pa.int64())
        vals = us.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
        missing = np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), bool)
        return np.where(missing, np.nan, vals), missing, np.zeros(n, bool)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        arr = pc.cast(arr, pa.string())
    s = pd.Series(arr.to_pylist(), dtype="object")
    stripped = s.str.strip()
    missing = (stripped.isna() | (stripped == "")).to_numpy()
    numeric = pd.to_numeric(stripped.where(~missing), errors="coerce").to_numpy(dtype=np.float64)
    is_num = np.isfinite(numeric)
    out[is_num] = numeric[is_num]
    todo = ~missing & ~is_num
    if todo.any():
        sub = stripped[todo]
        if time_format:
            dt = pd.to_datetime(sub, format=time_format, utc=True, errors="coerce")
        else:
            dt = pd.to_datetime(sub, format="ISO8601", utc=True, errors="coerce")
            retry = dt.isna().to_numpy()
            if retry.any():
                dt2 = pd.to_datetime(sub[retry], format="mixed", utc=True, errors="coerce")
                dt = dt.copy()
                dt[retry] = dt2
        secs = (dt.astype("datetime64[us, UTC]").astype("int64") / 1e6).to_numpy(dtype=np.float64, copy=True)
        secs[dt.isna().to_numpy()] = np.nan
        out[todo] = secs
    bad = ~missing & ~np.isfinite(out)
    return out, missing, bad


def _parse_vector_text(s: str) -> list[float] | None:
    s = s.strip()
    if not s:
        return None
    if s[0] == "[":
        try:
            v = json.loads(s.replace("nan", "NaN").replace("inf", "Infinity"))
        except ValueError:
            return None
        if not isinstance(v, list):
            return None
        try:
            return [float(x) for x in v]
        except (TypeError, ValueError):
            return None
    parts = s.replace(",", " ").split()
    try:
        return [float(x) for x in parts]
    except ValueError:
        return None


def parse_embeddings(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Turn a column of vectors (lists, fixed-size lists or text) into ``list<float32>``.

    Returns ``(vectors, unparsable)``; null stays null, unparsable text becomes null and is
    flagged.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    n = len(arr)
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(n, pa.list_(pa.float32())), np.zeros(n, bool)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        try:
            return pc.cast(arr, pa.list_(pa.float32())), np.zeros(n, bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # e.g. lists of strings: re-parse element-wise through the text path below
            arr = pa.array([None if x is None else json.dumps(x) for x in arr.to_pylist()], pa.string())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise SchemaError(f"embedding column has type {arr.type}; expected list<float> or text like '[0.1, 0.2]'")
    vals: list[list[float] | None] = []
    bad = np.zeros(n, bool)
    for i, s in enumerate(arr.to_pylist()):
        if s is None or not s.strip():
            vals.append(None)
            continue
        v = _parse_vector_text(s)
        if v is None:
            bad[i] = True
        vals.append(v)
    return pa.array(vals, pa.list_(pa.float32())), bad


# ----------------------------------------------------------------------------------------------
# the validator


class Validator:
    """Validates raw reader output chunk by chunk, keeping per-modality dimensions across chunks."""

    def __init__(self, spec: TableSpec | None = None):
        self.spec = spec or TableSpec()
        self.dims: dict[str, int] = (
            {m: c.dim for m, c in self.spec.modalities.items()} if self.spec.modalities else {}
        )

    def validate(self, raw: pa.Table, source: str = "") -> tuple[pa.Table, pa.Table]:
        """Split ``raw`` into ``(accepted, quarantine)``; see the module docstring."""
        accepted, quarantine, _ = self.split(raw, source)
        return accepted, quarantine

    def split(self, raw: pa.Table, source: str = "") -> tuple[pa.Table, pa.Table, np.ndarray]:
        """Like :meth:`validate`, plus the ``[len(accepted)]`` positions in ``raw`` of the accepted rows."""
        n = raw.num_rows
        unknown = [c for c in raw.column_names if c not in EVENT_COLUMNS and c != "_row"]
        if unknown:
            raise SchemaError(
                f"raw event table has columns {unknown} that are not event-table columns "
                f"{list(EVENT_COLUMNS)}; map them with a column mapping or pack them into 'attributes'"
            )
        rows = (
            raw.column("_row").to_numpy(zero_copy_only=False).astype(np.int64)
            if "_row" in raw.column_names
            else np.arange(n, dtype=np.int64)
        )

        def col(name: str) -> pa.Array:
            if name in raw.column_names:
                c = raw.column(name)
                return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
            return pa.nulls(n, EVENT_SCHEMA.field(name).type)

        reason: list[str | None] = [None] * n
        detail: list[str] = [""] * n

        def flag(mask: np.ndarray, code: str, msg: Any) -> None:
            for i in np.flatnonzero(mask):
                if reason[i] is None:
                    reason[i] = code
                    detail[i] = msg(i) if callable(msg) else msg

        # entity id: present and non-empty
        ent = pc.cast(col("entity_id"), pa.string())
        ent_missing = np.asarray(
            pc.fill_null(pc.equal(pc.utf8_trim_whitespace(ent), ""), True).to_numpy(zero_copy_only=False), bool
        )
        flag(ent_missing, Reason.MISSING_ENTITY_ID, "entity_id is null or empty")

        # timestamps
        ts_raw = col("timestamp")
        secs, ts_missing, ts_bad = parse_timestamps(ts_raw, self.spec.time_format)
        if ts_bad.any():
            raw_ts = ts_raw.to_pylist()
            flag(ts_bad, Reason.UNPARSABLE_TIMESTAMP, lambda i: f"cannot parse timestamp {raw_ts[i]!r}")
        if self.spec.require_timestamps:
            flag(ts_missing, Reason.MISSING_TIMESTAMP, "timestamp is required by the table spec but missing")

        # modality
        mod = pc.fill_null(pc.cast(col("modality"), pa.string()), DEFAULT_MODALITY)
        mod = pc.if_else(pc.equal(mod, ""), DEFAULT_MODALITY, mod)
        mods = mod.to_pylist()
        if self.spec.modalities is not None:
            known = set(self.spec.modalities)
            unk = np.array([m not in known for m in mods], bool)
            flag(unk, Reason.UNKNOWN_MODALITY, lambda i: f"modality {mods[i]!r} is not declared; declared: {sorted(known)}")

        # embeddings
        emb, emb_bad = parse_embeddings(col("embedding"))
        flag(emb_bad, Reason.UNPARSABLE_EMBEDDING, "embedding is not a list of numbers")
        lengths = pc.fill_null(pc.list_value_length(emb), -1).to_numpy(zero_copy_only=False).astype(np.int64)
        present = lengths >= 0
        flat = pc.list_flatten(emb).to_numpy(zero_copy_only=False)
        nonfinite = np.zeros(n, bool)
        if flat.size:
            badval = (~np.isfinite(flat)).astype(np.int64)
            offs = np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))])
            counts = np.add.reduceat(np.concatenate([badval, [0]]), offs[:-1]) * (np.maximum(lengths, 0) > 0)
            nonfinite = counts > 0
        flag(nonfinite, Reason.NONFINITE_EMBEDDING, "embedding contains NaN or inf")
        zero_len = present & (lengths == 0)
        flag(zero_len, Reason.WRONG_DIMENSION, "embedding is empty")
        for i in np.flatnonzero(present & (lengths > 0)):
            if reason[i] is not None:
                continue
            m = mods[i]
            want = self.dims.get(m)
            if want is None:
                self.dims[m] = int(lengths[i])
            elif lengths[i] != want:
                reason[i] = Reason.WRONG_DIMENSION
                detail[i] = f"modality {m!r} has dimension {want}, this embedding has {lengths[i]}"

        bad_mask = np.array([r is not None for r in reason], bool)
        good = np.flatnonzero(~bad_mask)
        idx = pa.array(good, pa.int64())
        accepted = pa.table(
            {
                "entity_id": pc.take(ent, idx),
                "timestamp": pa.array(secs[good], pa.float64(), mask=ts_missing[good]),
                "event_type": pc.take(pc.cast(col("event_type"), pa.string()), idx),
                "modality": pc.take(mod, idx),
                "embedding": pc.take(emb, idx),
                "text": pc.take(pc.cast(col("text"), pa.string()), idx),
                "attributes": pc.take(col("attributes"), idx),
                "label": pc.take(pc.cast(col("label"), pa.string()), idx),
            }
        )
        accepted = accepted.cast(EVENT_SCHEMA)
        bad = np.flatnonzero(bad_mask)
        if bad.size:
            records = raw.drop_columns([c for c in ["_row"] if c in raw.column_names]).take(pa.array(bad)).to_pylist()
            records = [_jsonable(r) for r in records]
            quarantine = quarantine_records(
                source, rows[bad].tolist(), [reason[i] for i in bad], [detail[i] for i in bad], records  # type: ignore[misc]
            )
        else:
            quarantine = empty_quarantine_table()
        return accepted, quarantine, good


def _jsonable(rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        elif isinstance(v, list):
            v = [str(x) if isinstance(x, float) and not math.isfinite(x) else x for x in v]
        out[k] = v
    return out


def check_event_table(table: pa.Table) -> None:
    """Raise :class:`SchemaError` unless ``table`` has exactly the canonical schema."""
    missing = [c for c in EVENT_COLUMNS if c not in table.column_names]
    if missing:
        raise SchemaError(f"not an ejc event table: missing columns {missing}; run `ejc ingest` to create one")
    for f in EVENT_SCHEMA:
        got = table.schema.field(f.name).type
        if got != f.type:
            raise SchemaError(f"event table column {f.name!r} has type {got}, expected {f.type}")


__all__ = [
    "DEFAULT_MODALITY",
    "EVENT_COLUMNS",
    "EVENT_SCHEMA",
    "QUARANTINE_SCHEMA",
    "EmbeddingConfig",
    "IngestReport",
    "Reason",
    "TableSpec",
    "Validator",
    "attributes_from_columns",
    "check_event_table",
    "empty_event_table",
    "empty_quarantine_table",
    "parse_embeddings",
    "parse_timestamps",
    "quarantine_records",
]
