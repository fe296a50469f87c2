"""Ray Data ingest: event logs -> validated events + quarantine -> (embedded) -> training windows.

    files --(Ray task per file: ejc reader + Validator)--> OUT/.staged/  (accepted + quarantined)
    .staged --> OUT/events/        accepted events (EVENT_SCHEMA), embedded in an actor pool
    .staged --> OUT/quarantine/    every rejected record with its reason
    .staged --(hash-partition by entity, sort by time then source order, window)--> OUT/windows/
    OUT/report.json                read = accepted + quarantined, reasons, dims, seconds

The file is the unit of parallelism, so quarantine rows keep their source row numbers. Widths
per modality are fixed before the distributed pass (declared, or inferred from the first chunk
of up to ``sample_files`` files) so every task validates against the same spec. Memory per task
is bounded by ``chunk_rows``; nothing is materialised on the driver.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ejc.data.readers import ColumnMapping, detect_format, read_events
from ejc.data.schema import EmbeddingConfig, TableSpec, Validator
from ejc.errors import EjcError
from pipelines.batches import accepted_events, accepted_with_order, quarantined_records, read_and_validate_file, spec_from_dict, spec_to_dict, windows_batch

SKIP_SUFFIXES = (".crc", ".json", ".md")


def list_sources(src: str | Path) -> list[Path]:
    """A file, or every data file under a directory (sorted; hidden files and markers skipped)."""
    p = Path(src)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise EjcError(f"{p}: no such file or directory")
    files = sorted(f for f in p.rglob("*") if f.is_file() and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts) and not f.name.endswith(SKIP_SUFFIXES))
    if not files:
        raise EjcError(f"{p}: the directory holds no data files")
    return files


def infer_spec(files: list[Path], fmt: str, mapping: ColumnMapping | None, spec: TableSpec | None, sample_files: int = 8) -> TableSpec:
    """Declare every modality's width up front from the first chunk of a few files."""
    spec = spec or TableSpec()
    if spec.modalities is not None:
        return spec
    v = Validator(TableSpec(require_timestamps=spec.require_timestamps, time_format=spec.time_format))
    for f in files[:sample_files]:
        chunk = next(iter(read_events(f, format=fmt if fmt != "auto" else detect_format(f), mapping=mapping, chunk_rows=4096)), None)
        if chunk is not None:
            v.validate(chunk.table, str(f))
    mods = {m: EmbeddingConfig(m, d) for m, d in v.dims.items()}
    return TableSpec(modalities=mods or None, require_timestamps=spec.require_timestamps, time_format=spec.time_format)


class _ReadValidate:
    """``{"path": [...]}`` batch of file paths -> stage tables (a generator: one per chunk)."""

    def __init__(self, fmt: str, mapping: dict[str, Any] | None, spec: dict[str, Any], chunk_rows: int):
        self.fmt, self.chunk_rows = fmt, chunk_rows
        self.mapping = ColumnMapping(**mapping) if mapping else None
        self.spec = spec_from_dict(spec)

    def __call__(self, batch: pa.Table):  # noqa: ANN204 - generator of pa.Table
        for path in batch.column("path").to_pylist():
            fmt = detect_format(path) if self.fmt == "auto" else self.fmt
            yield from read_and_validate_file(path, fmt, self.mapping, self.spec, self.chunk_rows)


class EmbedMissing:
    """Actor-pool stage: embed accepted events that have no vector (GPU when the actor has one)."""

    def __init__(self, embed: str, options: dict[str, Any] | None = None, dims: dict[str, int] | None = None):
        from ejc.embed import create_embedder

        self.embedder = create_embedder(embed, **(options or {}))
        self.dims = dict(dims or {})

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ejc.data.ingest import embed_missing

        return embed_missing(batch, self.embedder, self.dims)


def run_ingest(
    src: str | Path,
    out: str | Path,
    fmt: str = "auto",
    mapping: ColumnMapping | None = None,
    spec: TableSpec | None = None,
    embed: str = "none",
    embed_options: dict[str, Any] | None = None,
    embed_concurrency: int = 1,
    embed_gpus: float = 0.0,
    embed_batch_size: int = 4096,
    window_length: int | None = None,
    window_stride: int | None = None,
    min_events: int = 1,
    num_partitions: int | None = None,
    chunk_rows: int = 65536,
    partition_rows: int = 250_000,
) -> dict[str, Any]:
    """Run the pipeline on the current Ray cluster (the caller owns ``ray.init``); returns the report.

    ``num_partitions`` (entity hash partitions for windowing; one partition is sorted and cut in
    one task) defaults to ``ceil(accepted / partition_rows)``, so a task's memory stays bounded
    however large the log is.
    """
    import ray.data

    t0 = time.perf_counter()
    out = Path(out)
    files = list_sources(src)
    spec = infer_spec(files, fmt, mapping, spec)
    staged_dir, events_dir, q_dir, win_dir = out / ".staged", out / "events", out / "quarantine", out / "windows"
    for d in (staged_dir, events_dir, q_dir, win_dir):
        shutil.rmtree(d, ignore_errors=True)
    items = ray.data.from_items([{"path": str(f)} for f in files], override_num_blocks=len(files))
    staged = items.map_batches(
        _ReadValidate,
        fn_constructor_args=(fmt, None if mapping is None else asdict(mapping), spec_to_dict(spec), chunk_rows),
        batch_size=1,
        batch_format="pyarrow",
        concurrency=(1, max(1, min(len(files), 8))),
    )
    staged.write_parquet(str(staged_dir))

    staged_ds = ray.data.read_parquet(str(staged_dir))
    events = staged_ds.map_batches(accepted_events, batch_format="pyarrow")
    dims = {m: c.dim for m, c in (spec.modalities or {}).items()}
    if embed != "none":
        events = events.map_batches(
            EmbedMissing,
            fn_constructor_args=(embed, embed_options, dims),
            batch_size=embed_batch_size,
            batch_format="pyarrow",
            concurrency=embed_concurrency,
            num_gpus=embed_gpus,
        )
    events.write_parquet(str(events_dir))
    staged_ds.map_batches(quarantined_records, batch_format="pyarrow").write_parquet(str(q_dir))

    accepted = _count_rows(events_dir)
    quarantine = pq.read_table(q_dir, columns=["reason"]) if _has_parquet(q_dir) else pa.table({"reason": pa.array([], pa.string())})
    reasons = {r["values"]: r["counts"] for r in pa.compute.value_counts(quarantine.column("reason")).to_pylist()}
    report: dict[str, Any] = {
        "read": accepted + quarantine.num_rows,
        "accepted": accepted,
        "quarantined": quarantine.num_rows,
        "reasons": dict(sorted(reasons.items())),
        "files": len(files),
        "dims": dims,
    }
    if window_length:
        if num_partitions is None:
            num_partitions = max(2, -(-accepted // partition_rows))
        report["partitions"] = num_partitions
        acc = staged_ds.map_batches(accepted_with_order, batch_format="pyarrow")
        if embed != "none":  # embed here too (a text cache makes the second pass cheap)
            acc = acc.map_batches(
                EmbedMissing, fn_constructor_args=(embed, embed_options, dims), batch_size=embed_batch_size,
                batch_format="pyarrow", concurrency=embed_concurrency, num_gpus=embed_gpus,
            )
        windows = acc.repartition(num_partitions, keys=["entity_id"]).map_batches(
            windows_batch, fn_kwargs={"length": window_length, "stride": window_stride, "min_events": min_events}, batch_size=None, batch_format="pyarrow"
        )
        windows.write_parquet(str(win_dir))
        report["windows"] = _count_rows(win_dir)
    shutil.rmtree(staged_dir, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report["events_per_s"] = round(report["read"] / report["seconds"], 1) if report["seconds"] else None
    if report["read"] != report["accepted"] + report["quarantined"]:  # pragma: no cover - invariant
        raise AssertionError(f"record accounting broken: {report}")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _has_parquet(d: Path) -> bool:
    return d.is_dir() and any(d.glob("*.parquet"))


def _count_rows(d: Path) -> int:
    if not _has_parquet(d):
        return 0
    return sum(pq.ParquetFile(f).metadata.num_rows for f in d.glob("*.parquet"))


__all__ = ["EmbedMissing", "infer_spec", "list_sources", "run_ingest"]
