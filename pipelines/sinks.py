"""Ray Data sinks of the ingest pipeline: each write task writes its own part files and returns counts.

:class:`EventLogSink` takes stage tables (:data:`pipelines.batches.STAGE_SCHEMA`) and writes, per
block, ``events/``, ``quarantine/`` and (when windowing) ``<bucket_dir>/<k>/`` part files in one pass.
:class:`WindowSink` takes bucket directories and writes each one's sorted, windowed events.

Part files are named by the write task's index (``ctx.task_idx``) and the block's position in
it, so a retried task overwrites its own files instead of adding duplicates; the driver checks
the rows on disk against the counts the tasks returned (:func:`rows_on_disk`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import Datasink

from pipelines.batches import split_stage


def _write(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary name (a killed task leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def _merge_counts(total: dict[str, Any], part: dict[str, Any]) -> None:
    for k, v in part.items():
        if isinstance(v, dict):
            _merge_counts(total.setdefault(k, {}), v)
        else:
            total[k] = total.get(k, 0) + v


class _CountingSink(Datasink):
    """A sink whose write tasks return count dicts; :attr:`totals` is their sum after the write."""

    @staticmethod
    def empty() -> dict[str, Any]:
        return {}

    def __init__(self) -> None:
        self.totals: dict[str, Any] = self.empty()

    def on_write_complete(self, write_result: Any) -> None:
        totals = self.empty()
        for part in write_result.write_returns:
            _merge_counts(totals, part)
        self.totals = totals


class EventLogSink(_CountingSink):
    """Stage tables -> ``OUT/events``, ``OUT/quarantine`` and ``OUT/<bucket_dir>/<k>`` (``num_buckets > 0``).

    After the write, :attr:`totals` holds ``accepted``, ``quarantined``, ``reasons`` and
    ``buckets`` (rows per bucket) summed over every task.
    """

    @staticmethod
    def empty() -> dict[str, Any]:
        return {"accepted": 0, "quarantined": 0, "reasons": {}, "buckets": {}}

    def __init__(self, out: str | Path, num_buckets: int = 0, bucket_dir: str = "buckets"):
        super().__init__()
        self.out = Path(out)
        self.num_buckets = int(num_buckets)
        self.bucket_dir = bucket_dir

    def write(self, blocks: Iterable[pa.Table], ctx: Any) -> dict[str, Any]:
        counts = self.empty()
        for i, block in enumerate(blocks):
            if block.num_rows == 0:
                continue
            name = f"part-{ctx.task_idx:06d}-{i:05d}.parquet"
            parts = split_stage(block, self.num_buckets)
            if parts.events.num_rows:
                _write(parts.events, self.out / "events" / name)
            if parts.quarantine.num_rows:
                _write(parts.quarantine, self.out / "quarantine" / name)
            for b, t in parts.buckets.items():
                _write(t, self.out / self.bucket_dir / f"{b:05d}" / name)
                counts["buckets"][str(b)] = counts["buckets"].get(str(b), 0) + t.num_rows
            _merge_counts(counts, parts.counts())
        return counts


class WindowSink(_CountingSink):
    """``{"path": bucket dir}`` rows -> ``OUT/windows/<bucket>.parquet``: sorted by time, windowed.

    One bucket is read whole, so a task's memory is bounded by the bucket size (the pipeline
    sizes buckets by ``partition_rows``), not by the log.
    """

    @staticmethod
    def empty() -> dict[str, Any]:
        return {"buckets": 0, "events": 0, "windows": 0}

    def __init__(self, out: str | Path, length: int, stride: int | None, min_events: int):
        super().__init__()
        self.out = Path(out)
        self.length, self.stride, self.min_events = length, stride, min_events

    def write(self, blocks: Iterable[pa.Table], ctx: Any) -> dict[str, Any]:
        from ejc.data.windows import windows_batch

        counts = self.empty()
        for block in blocks:
            for path in block.column("path").to_pylist():
                events = pq.read_table(path)
                win = windows_batch(events, self.length, self.stride, self.min_events)
                if win.num_rows:
                    _write(win, self.out / f"bucket-{Path(path).name}.parquet")
                counts["buckets"] += 1
                counts["events"] += events.num_rows
                counts["windows"] += win.num_rows
        return counts


def rows_on_disk(d: Path) -> int:
    """Rows in the Parquet files directly under ``d`` (from their footers; 0 when there are none)."""
    if not d.is_dir():
        return 0
    return sum(pq.ParquetFile(f).metadata.num_rows for f in d.glob("*.parquet"))


__all__ = ["EventLogSink", "WindowSink", "rows_on_disk"]
