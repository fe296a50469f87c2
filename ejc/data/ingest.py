"""Ingest: source file -> validated, embedded event table + quarantine, streamed chunk by chunk.

``read -> validate -> embed (rows without a vector) -> append to Parquet``. Memory is bounded
by the chunk size, not the file size. Output files are written under temporary names and
renamed into place only when the whole source was read, so a crash never leaves a truncated
``events.parquet`` behind. Every record is accounted for: ``read = accepted + quarantined``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ejc.data.readers import ColumnMapping, detect_format, read_events
from ejc.data.schema import EVENT_SCHEMA, QUARANTINE_SCHEMA, IngestReport, TableSpec, Validator
from ejc.errors import SchemaError

EMBED_CHOICES = ("none", "types", "text")


@dataclass
class IngestResult:
    report: IngestReport
    events_path: Path
    quarantine_path: Path
    format: str
    seconds: float

    def summary(self) -> dict[str, Any]:
        out = self.report.to_dict()
        out.update(
            {
                "format": self.format,
                "dims": dict(self.report.dims),
                "events": str(self.events_path),
                "quarantine": str(self.quarantine_path),
                "seconds": round(self.seconds, 3),
                "rows_per_s": round(self.report.read / self.seconds, 1) if self.seconds > 0 else None,
            }
        )
        return out


def ingest(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    format: str = "auto",
    mapping: ColumnMapping | None = None,
    embed: str = "none",
    spec: TableSpec | None = None,
    chunk_rows: int = 65536,
    embedder_options: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> IngestResult:
    """Read ``source`` into ``out_dir/events.parquet`` and ``out_dir/quarantine.parquet``.

    Args:
        embed: ``none`` keeps events without vectors as they are; ``types`` / ``text`` (or any
            name registered with ``register_embedding_type``) embeds every accepted event that
            has no vector, and those events take the embedder's modality.
        embedder_options: keyword arguments for the embedder (e.g. ``cache_dir`` for text).
    """
    t0 = time.perf_counter()
    source = Path(source)
    out = Path(out_dir)
    fmt = detect_format(source) if format == "auto" else format
    embedder = None
    if embed != "none":
        from ejc.embed import create_embedder

        embedder = create_embedder(embed, **(embedder_options or {}))
    validator = Validator(spec)
    report = IngestReport()
    out.mkdir(parents=True, exist_ok=True)
    events_path, quarantine_path = out / "events.parquet", out / "quarantine.parquet"
    tmp_events, tmp_quarantine = out / ".events.parquet.tmp", out / ".quarantine.parquet.tmp"
    ev_writer = pq.ParquetWriter(tmp_events, EVENT_SCHEMA)
    q_writer = pq.ParquetWriter(tmp_quarantine, QUARANTINE_SCHEMA)
    ok = False
    try:
        bar = tqdm(desc=f"ingest {source.name}", unit="rec", disable=None if progress is None else not progress)
        for chunk in read_events(source, format=fmt, mapping=mapping, chunk_rows=chunk_rows):
            if chunk.quarantine.num_rows:
                report.add_quarantine(chunk.quarantine)
                q_writer.write_table(chunk.quarantine)
            accepted, quarantine = validator.validate(chunk.table, str(source))
            if embedder is not None and accepted.num_rows:
                accepted = embed_missing(accepted, embedder, validator.dims)
            report.add(accepted, quarantine)
            if accepted.num_rows:
                ev_writer.write_table(accepted)
            if quarantine.num_rows:
                q_writer.write_table(quarantine)
            bar.update(chunk.table.num_rows + chunk.quarantine.num_rows)
        bar.close()
        ok = True
    finally:
        ev_writer.close()
        q_writer.close()
        if ok:
            os.replace(tmp_events, events_path)
            os.replace(tmp_quarantine, quarantine_path)
        else:
            for p in (tmp_events, tmp_quarantine):
                p.unlink(missing_ok=True)
    report.dims = dict(validator.dims)
    report.check()
    result = IngestResult(report, events_path, quarantine_path, fmt, time.perf_counter() - t0)
    summary = result.summary()
    summary["source"] = str(source)
    summary["embed"] = embed
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    return result


def embed_missing(table: pa.Table, embedder: Any, dims: dict[str, int]) -> pa.Table:
    """Give every row without a vector one from ``embedder`` (rows with vectors are untouched).

    ``dims`` maps modality -> width seen so far; the embedder's modality is added to it, and a
    clash with an existing width is a :class:`SchemaError`.
    """
    need = np.asarray(pc.is_null(table.column("embedding")).to_numpy(zero_copy_only=False), bool)
    if not need.any():
        return table
    cfg = embedder.config()
    have = dims.get(cfg.modality)
    if have is not None and have != cfg.dim:
        raise SchemaError(
            f"embedder {cfg.modality!r} makes {cfg.dim}-d vectors but the data already has "
            f"{have}-d vectors of modality {cfg.modality!r}; give the embedder another modality name"
        )
    dims[cfg.modality] = cfg.dim
    idx = np.flatnonzero(need)
    vecs = np.asarray(embedder.embed_table(table.take(pa.array(idx))), dtype=np.float32)
    if vecs.shape != (len(idx), cfg.dim) or not np.isfinite(vecs).all():
        raise SchemaError(f"embedder {cfg.modality!r} returned shape {vecs.shape} (want {(len(idx), cfg.dim)}) or non-finite values")
    flat = pa.array(vecs.reshape(-1), pa.float32())
    filled = table.take(pa.array(idx))
    # pass the schema's fields (not bare names) so nullability stays that of ``table``
    filled = filled.set_column(
        filled.schema.get_field_index("embedding"),
        filled.schema.field("embedding"),
        pa.FixedSizeListArray.from_arrays(flat, cfg.dim).cast(pa.list_(pa.float32())),
    )
    filled = filled.set_column(
        filled.schema.get_field_index("modality"), filled.schema.field("modality"), pa.array([cfg.modality] * len(idx), pa.string())
    )
    keep = np.flatnonzero(~need)
    merged = pa.concat_tables([table.take(pa.array(keep)), filled])
    # back to source order: position p of ``merged`` came from row concat(keep, idx)[p]
    order = np.argsort(np.concatenate([keep, idx]), kind="stable")
    return merged.take(pa.array(order))

__all__ = ["EMBED_CHOICES", "IngestResult", "embed_missing", "ingest"]
