"""Ray Data ingest: event logs -> validated events + quarantine -> (embedded) -> training windows.

    files --(one Ray Data task per file: ejc reader + Validator, chunk by chunk)--> stage tables
          --(map_batches actor pool: embed events without vectors; only with embed=...)-->
          --(EventLogSink: one pass writes)--> OUT/events/      accepted events (EVENT_SCHEMA)
                                               OUT/quarantine/  every rejected record, with its reason
                                               OUT/.buckets/k/  accepted events by entity hash
    OUT/.buckets/k --(WindowSink: a task per bucket sorts by time, then source order, and windows)--> OUT/windows/
    OUT/report.json   read = accepted + quarantined, reasons, dims, seconds

The file is the unit of parallelism, so quarantine rows keep their source row numbers. The read,
validate and write of a file run fused in one task and stream chunk by chunk: memory per task is
bounded by ``chunk_rows``, windowing memory by the bucket size (``partition_rows``), and nothing
but counts reaches the driver. Buckets replace a hash shuffle: entity ``e`` goes to bucket
``blake2b(e) mod B`` as it is written, so the windowing pass reads each bucket once. Widths per
modality are fixed before the distributed pass (declared, or inferred from the first chunk of
up to ``sample_files`` files) so every task validates against the same spec.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ejc.data.readers import ColumnMapping, detect_format, read_events
from ejc.data.schema import EmbeddingConfig, TableSpec, Validator
from ejc.errors import EjcError, ReaderError
from pipelines.batches import embed_stage, read_and_validate_file, spec_from_dict, spec_to_dict
from pipelines.sinks import EventLogSink, WindowSink, rows_on_disk

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


@contextmanager
def _user_errors_unwrapped() -> Iterator[None]:
    """Re-raise an :class:`EjcError` raised inside a Ray task as itself (one clear line, e.g.
    ``<file>: not a readable Parquet file``) instead of Ray's wrapper with the task's traceback."""
    try:
        yield
    except Exception as e:  # Ray's wrappers subclass the cause's class too: look for the plain one
        seen, cur = set(), e
        while cur is not None and id(cur) not in seen:
            seen.add(id(cur))
            if isinstance(cur, EjcError) and type(cur).__module__ == "ejc.errors":
                raise cur from None
            cur = getattr(cur, "cause", None) or cur.__cause__
        raise


def estimate_rows(files: list[Path], fmt: str) -> int:
    """Rows in ``files`` before reading them: Parquet footers, else lines in the first MiB scaled by size."""
    total = 0
    for f in files:
        kind = detect_format(f) if fmt == "auto" else fmt
        if kind == "parquet":
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except (OSError, pa.ArrowException) as e:
                raise ReaderError(f, f"not a readable Parquet file: {e}") from None
            continue
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(1 << 20)
        lines = max(1, head.count(b"\n"))
        total += int(size * lines / max(1, len(head)))
        if kind == "sequences":  # one line holds many events; count tokens instead
            total += int(size * head.count(b" ") / max(1, len(head)))
    return total


def read_validate(batch: pa.Table, fmt: str, mapping: dict[str, Any] | None, spec: dict[str, Any], chunk_rows: int):  # noqa: ANN201 - generator of pa.Table
    """``{"path": [...]}`` batch of file paths -> stage tables (a generator: one per chunk)."""
    m = ColumnMapping(**mapping) if mapping else None
    s = spec_from_dict(spec)
    for path in batch.column("path").to_pylist():
        yield from read_and_validate_file(path, detect_format(path) if fmt == "auto" else fmt, m, s, chunk_rows)


class EmbedMissing:
    """Actor-pool stage: embed accepted events of stage tables that have no vector (GPU when the actor has one)."""

    def __init__(self, embed: str, options: dict[str, Any] | None = None, dims: dict[str, int] | None = None):
        from ejc.embed import create_embedder

        options = dict(options or {})
        if embed == "text" and "device" not in options:
            import torch

            options["device"] = "cuda" if torch.cuda.is_available() else "cpu"  # the actor's GPU, when it was given one
        self.embedder = create_embedder(embed, **options)
        self.dims = dict(dims or {})

    def __call__(self, batch: pa.Table) -> pa.Table:
        return embed_stage(batch, self.embedder, self.dims)


def run_ingest(
    src: str | Path,
    out: str | Path,
    fmt: str = "auto",
    mapping: ColumnMapping | None = None,
    spec: TableSpec | None = None,
    embed: str = "none",
    embed_options: dict[str, Any] | None = None,
    embed_concurrency: int = 1,
    embed_gpus: float | None = None,
    embed_batch_size: int = 4096,
    window_length: int | None = None,
    window_stride: int | None = None,
    min_events: int = 1,
    num_partitions: int | None = None,
    chunk_rows: int = 65536,
    partition_rows: int = 250_000,
) -> dict[str, Any]:
    """Run the pipeline on the current Ray cluster (the caller owns ``ray.init``); returns the report.

    ``num_partitions`` (entity buckets for windowing; one bucket is sorted and cut in one task)
    defaults to ``ceil(estimated rows / partition_rows)``, so a task's memory stays bounded
    however large the log is. ``embed_gpus`` (GPUs per embedding actor) defaults to 1 for
    ``embed="text"`` when the cluster has GPUs, else 0.
    """
    import ray.data

    t0 = time.perf_counter()
    out = Path(out)
    files = list_sources(src)
    spec = infer_spec(files, fmt, mapping, spec)
    bucket_dir, events_dir, q_dir, win_dir = out / ".buckets", out / "events", out / "quarantine", out / "windows"
    for d in (bucket_dir, events_dir, q_dir, win_dir, out / ".staged"):
        shutil.rmtree(d, ignore_errors=True)
    num_buckets = 0
    if window_length:
        num_buckets = num_partitions or max(1, -(-estimate_rows(files, fmt) // partition_rows))
    dims = {m: c.dim for m, c in (spec.modalities or {}).items()}

    items = ray.data.from_items([{"path": str(f)} for f in files], override_num_blocks=len(files))
    staged = items.map_batches(
        read_validate,
        fn_kwargs={"fmt": fmt, "mapping": None if mapping is None else asdict(mapping), "spec": spec_to_dict(spec), "chunk_rows": chunk_rows},
        batch_size=1,
        batch_format="pyarrow",
    )
    if embed != "none":
        if embed_gpus is None:
            embed_gpus = 1.0 if embed == "text" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        staged = staged.map_batches(
            EmbedMissing,
            fn_constructor_args=(embed, embed_options, dims),
            batch_size=embed_batch_size,
            batch_format="pyarrow",
            concurrency=embed_concurrency,
            num_gpus=embed_gpus,
        )
    sink = EventLogSink(out, num_buckets, bucket_dir.name)
    with _user_errors_unwrapped():
        staged.write_datasink(sink)
    t_ingest = time.perf_counter() - t0
    totals = sink.totals
    accepted, quarantined = int(totals["accepted"]), int(totals["quarantined"])
    on_disk = (rows_on_disk(events_dir), rows_on_disk(q_dir))
    if on_disk != (accepted, quarantined):
        raise EjcError(f"{out}: the write tasks reported {accepted} accepted / {quarantined} quarantined rows but "
                       f"{on_disk[0]} / {on_disk[1]} are on disk; another job may be writing into the same --out")
    report: dict[str, Any] = {
        "read": accepted + quarantined,
        "accepted": accepted,
        "quarantined": quarantined,
        "reasons": dict(sorted(totals["reasons"].items())),
        "files": len(files),
        "dims": dims,
        "phase_seconds": {"read_validate_write": round(t_ingest, 2)},
    }
    if embed != "none":
        from ejc.embed import create_embedder

        made = create_embedder(embed, **(embed_options or {})).config()  # models load lazily: this reads no weights
        if accepted:
            report["dims"] = {**dims, made.modality: made.dim}
        report["embed"] = {"embedder": embed, "modality": made.modality, "dim": made.dim, "actors": embed_concurrency, "gpus_per_actor": embed_gpus}
    if window_length:
        buckets = sorted(str(p) for p in bucket_dir.iterdir()) if bucket_dir.is_dir() else []
        report["partitions"] = num_buckets
        report["largest_partition"] = max(totals["buckets"].values(), default=0)
        wsink = WindowSink(win_dir, window_length, window_stride, min_events)
        if buckets:
            with _user_errors_unwrapped():
                ray.data.from_items([{"path": b} for b in buckets], override_num_blocks=len(buckets)).write_datasink(wsink)
        if wsink.totals["events"] != accepted:
            raise EjcError(f"{out}: windowing read {wsink.totals['events']} events but {accepted} were accepted")
        report["windows"] = wsink.totals["windows"]
        shutil.rmtree(bucket_dir, ignore_errors=True)
        report["phase_seconds"]["windows"] = round(time.perf_counter() - t0 - t_ingest, 2)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report["events_per_s"] = round(report["read"] / report["seconds"], 1) if report["seconds"] else None
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


__all__ = ["EmbedMissing", "estimate_rows", "infer_spec", "list_sources", "read_validate", "run_ingest"]
