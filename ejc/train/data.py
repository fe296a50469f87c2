"""Training data: event table -> entity sequences -> fixed-length windows -> deterministic batches.

``DataSpec`` is what the model must know about the data (modality widths, type vocabulary); it
is saved in every checkpoint so a loaded model encodes new data the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ejc.data.schema import check_event_table
from ejc.data.sequence import EventSequence, PaddedBatch, collate, sequences_from_table, window_sequence
from ejc.embed.tokens import TypeVocab
from ejc.errors import EjcError, SchemaError


@dataclass
class DataSpec:
    modality_dims: dict[str, int]
    vocab: TypeVocab
    modalities: list[str] = field(default_factory=list)  # every modality seen, with or without vectors

    def __post_init__(self) -> None:
        if not self.modalities:
            self.modalities = list(self.modality_dims)
        for m in self.modality_dims:
            if m not in self.modalities:
                self.modalities.append(m)

    @classmethod
    def from_sequences(cls, seqs: list[EventSequence], max_types: int = 4096) -> DataSpec:
        dims: dict[str, int] = {}
        mods: dict[str, None] = {}
        types: list[str | None] = []
        for s in seqs:
            for m, d in s.dims.items():
                if dims.setdefault(m, d) != d:
                    raise SchemaError(f"modality {m!r} has widths {dims[m]} and {d} in different sequences")
            mods.update(dict.fromkeys(s.modality_names))
            if s.event_types is not None:
                types.extend(s.event_types.tolist())
        return cls(dims, TypeVocab.build(types, max_size=max_types - 2), list(mods))

    def to_dict(self) -> dict[str, Any]:
        return {"modality_dims": self.modality_dims, "modalities": self.modalities, "vocab": self.vocab.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        return cls({k: int(v) for k, v in d["modality_dims"].items()}, TypeVocab.from_dict(d["vocab"]), list(d.get("modalities", [])))

    def collate(self, seqs: list[EventSequence], max_len: int | None = None, pad_to_multiple: int = 1) -> PaddedBatch:
        return collate(seqs, self.modalities, self.vocab.encode, max_len=max_len, pad_to_multiple=pad_to_multiple)


def modality_dims_batch(events: pa.Table) -> pa.Table:
    """``(modality, dim)`` pairs present in a batch of events; ``dim`` 0 for events without vectors."""
    lengths = pc.fill_null(pc.list_value_length(events.column("embedding")), 0)
    pairs = pa.table({"modality": events.column("modality"), "dim": pc.cast(lengths, pa.int64())})
    return pairs.group_by(["modality", "dim"]).aggregate([])


def type_counts_batch(events: pa.Table) -> pa.Table:
    """``(event_type, count)`` of a batch of events (nulls skipped); partial counts add up."""
    t = pa.table({"event_type": events.column("event_type")}).filter(pc.is_valid(events.column("event_type")))
    g = t.group_by("event_type").aggregate([("event_type", "count")])
    return pa.table({"event_type": g.column("event_type"), "count": pc.cast(g.column("event_type_count"), pa.int64())})


def data_spec_from_summaries(dim_rows: Iterable[Mapping[str, Any]], type_counts: Mapping[str, int], max_types: int = 4096) -> DataSpec:
    """A DataSpec from ``modality_dims_batch`` rows (any number, duplicates allowed) and type counts.

    Width 0 means "events of this modality without vectors": the modality is known but has no
    projection. Two different non-zero widths for one modality are a :class:`SchemaError`.
    """
    mods: dict[str, None] = {}
    dims: dict[str, int] = {}
    for row in dim_rows:
        m, d = str(row["modality"]), int(row["dim"])
        mods[m] = None
        if d > 0 and dims.setdefault(m, d) != d:
            raise SchemaError(f"modality {m!r} has vectors of widths {dims[m]} and {d}; one width per modality")
    counts = {str(k): int(v) for k, v in type_counts.items() if k is not None}
    return DataSpec(dims, TypeVocab.build(counts, max_size=max_types - 2), list(mods))


def read_event_table(events: str | os.PathLike[str] | pa.Table) -> pa.Table:
    """An event table from a table, a Parquet file, an ``ejc ingest``/``ejc synth`` directory
    (``DIR/events.parquet``), or the Ray ingest pipeline's output (``DIR/events/part-*.parquet``,
    or that ``events`` directory itself)."""
    if isinstance(events, pa.Table):
        table = events
    else:
        p = Path(events)
        if p.is_dir():
            if (p / "events.parquet").is_file():
                p = p / "events.parquet"
            elif (p / "events").is_dir() and any((p / "events").glob("*.parquet")):
                p = p / "events"
            elif not any(p.glob("*.parquet")):
                p = p / "events.parquet"
        if not p.exists():
            raise EjcError(f"{p}: no event table here; create one with `ejc ingest SRC --out DIR` or `ejc synth --out DIR`")
        try:
            table = pq.read_table(p)
        except (pa.ArrowInvalid, OSError) as e:
            raise EjcError(f"{p}: cannot read Parquet: {e}") from e
    check_event_table(table)
    return table


def load_sequences(events: str | os.PathLike[str] | pa.Table, min_events: int = 1) -> tuple[list[EventSequence], dict[str, int]]:
    """All entity sequences with at least ``min_events`` events, and counts of what was skipped."""
    table = read_event_table(events)
    seqs = list(sequences_from_table(table))
    kept = [s for s in seqs if len(s) >= min_events]
    stats = {
        "events": table.num_rows,
        "entities": len(seqs),
        "entities_kept": len(kept),
        "entities_too_short": len(seqs) - len(kept),
        "events_in_short_entities": sum(len(s) for s in seqs if len(s) < min_events),
    }
    return kept, stats


def make_windows(seqs: list[EventSequence], length: int, stride: int | None = None) -> list[EventSequence]:
    out: list[EventSequence] = []
    for s in seqs:
        out.extend(window_sequence(s, length, stride or max(1, length // 2)))
    return out


class BatchSampler:
    """Shuffled epochs over ``n`` items with a checkpointable state (exact resume)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < 1:
            raise EjcError("no training sequences: the event table is empty or every entity is shorter than train.min_events")
        self.n, self.batch_size = n, batch_size
        self.rng = np.random.default_rng(seed)
        self.epoch, self.pos = 0, 0
        self.perm = self.rng.permutation(n)

    def next(self) -> np.ndarray:
        out = []
        while len(out) < self.batch_size:
            if self.pos >= self.n:
                self.epoch += 1
                self.pos = 0
                self.perm = self.rng.permutation(self.n)
            take = min(self.batch_size - len(out), self.n - self.pos)
            out.extend(self.perm[self.pos : self.pos + take].tolist())
            self.pos += take
        return np.asarray(out, np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "perm": self.perm.tolist(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.epoch, self.pos = int(st["epoch"]), int(st["pos"])
        self.perm = np.asarray(st["perm"], np.int64)
        self.rng.bit_generator.state = st["rng"]


__all__ = ["BatchSampler", "DataSpec", "data_spec_from_summaries", "load_sequences", "make_windows", "modality_dims_batch", "read_event_table"]
