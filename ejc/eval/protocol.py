"""Evaluation protocols: reading a source into sequences, chronological splits, scored prefixes.

The next-event protocol is that of Tax et al. 2017 ("Predictive Business Process Monitoring
with LSTM Neural Networks"): cases are sorted by their first event's time, the first 2/3 are
training cases (the last 20% of those validate, e.g. for early stopping and choosing n of an
n-gram), the last 1/3 test. Every prefix of length ``k >= 1`` of every test case is scored;
after the last event the target is an explicit end-of-case symbol (:data:`END`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ejc.data.readers import ColumnMapping, read_events
from ejc.data.schema import TableSpec, Validator
from ejc.data.sequence import END, EventSequence, sequences_from_table
from ejc.errors import EjcError



@dataclass
class LoadedLog:
    """Sequences read from one source file, with what was dropped on the way."""

    sequences: list[EventSequence]
    events: int
    quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"sequences": len(self.sequences), "events": self.events, "quarantined": self.quarantined, "reasons": self.reasons}


def load_log(path: str | os.PathLike[str], format: str = "auto", mapping: ColumnMapping | None = None, time_format: str | None = None) -> LoadedLog:
    """Read and validate ``path`` in memory (the ``ejc ingest`` reader and validator, no files written).

    Records the validator rejects are counted, not used. Sequences keep the file's order of
    first appearance; events inside one are sorted by time.
    """
    validator = Validator(TableSpec(time_format=time_format))
    tables: list[pa.Table] = []
    reasons: Counter[str] = Counter()
    quarantined = 0
    for chunk in read_events(path, format=format, mapping=mapping):
        quarantined += chunk.quarantine.num_rows
        reasons.update(chunk.quarantine.column("reason").to_pylist())
        accepted, bad = validator.validate(chunk.table, str(path))
        quarantined += bad.num_rows
        reasons.update(bad.column("reason").to_pylist())
        if accepted.num_rows:
            tables.append(accepted)
    if not tables:
        raise EjcError(f"{path}: no valid events ({quarantined} records quarantined: {dict(reasons)}); check --format and the column options")
    table = pa.concat_tables(tables)
    return LoadedLog(list(sequences_from_table(table)), table.num_rows, quarantined, dict(sorted(reasons.items())))


@dataclass
class Split:
    """A chronological split of cases: ``fit`` (train minus validation), ``val``, ``test``."""

    fit: list[EventSequence]
    val: list[EventSequence]
    test: list[EventSequence]

    @property
    def train(self) -> list[EventSequence]:
        """All training cases (``fit`` then ``val``, in time order)."""
        return self.fit + self.val

    def sizes(self) -> dict[str, int]:
        return {"fit_cases": len(self.fit), "val_cases": len(self.val), "test_cases": len(self.test)}


def start_time(seq: EventSequence) -> float:
    """The time of a sequence's first event (NaN when untimed or empty)."""
    return float(seq.timestamps[0]) if seq.timestamps is not None and len(seq) else float("nan")


def by_start_time(seqs: list[EventSequence]) -> list[EventSequence]:
    """``seqs`` sorted by first event time; ties and untimed cases keep their order (untimed last)."""
    starts = np.array([start_time(s) for s in seqs])
    key = np.where(np.isnan(starts), np.inf, starts) if not np.isnan(starts).all() else np.zeros(len(seqs))
    return [seqs[i] for i in np.argsort(key, kind="stable")]


def chronological_split(seqs: list[EventSequence], test_fraction: float = 1 / 3, val_fraction: float = 0.2) -> Split:
    """Sort cases by first event time (ties and untimed cases keep their order) and split.

    ``int(n * (1 - test_fraction))`` cases train (3,804 -> 2,536 on Helpdesk), the rest test;
    the last ``round(val_fraction * n_train)`` training cases validate.
    """
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1:
        raise EjcError(f"need 0 < test_fraction < 1 and 0 <= val_fraction < 1, got {test_fraction}, {val_fraction}")
    if len(seqs) < 3:
        raise EjcError(f"a train/validation/test split needs at least 3 cases, got {len(seqs)}")
    ordered = by_start_time(seqs)
    n_train = max(1, min(len(seqs) - 1, int(len(seqs) * (1 - test_fraction) + 1e-9)))
    n_val = int(round(val_fraction * n_train))
    n_fit = max(1, n_train - n_val)
    return Split(ordered[:n_fit], ordered[n_fit:n_train], ordered[n_train:])


@dataclass
class PrefixTargets:
    """Every prefix of every case and what follows it.

    ``case[j]`` / ``length[j]``: the case index and prefix length ``k`` of target ``j``;
    ``types[j]``: the next event's type or :data:`END`; ``gaps[j]``: seconds from the prefix's
    last event to the next one (NaN for END and for untimed cases).
    """

    case: np.ndarray
    length: np.ndarray
    types: np.ndarray
    gaps: np.ndarray

    def __len__(self) -> int:
        return len(self.types)

    @property
    def is_end(self) -> np.ndarray:
        return self.types == END


def type_list(seq: EventSequence) -> list[str]:
    """The sequence's event types as strings (``"None"`` for missing types is never produced: missing types are an error)."""
    if seq.event_types is None:
        raise EjcError(f"sequence {seq.id!r} has no event types; next-event evaluation needs a type column (--type-col)")
    return [str(t) for t in seq.event_types]


def prefix_targets(seqs: list[EventSequence], with_end: bool = True) -> PrefixTargets:
    """Targets of all prefixes ``k = 1..n`` (``k = n`` targets :data:`END` when ``with_end``)."""
    case, length, types, gaps = [], [], [], []
    for ci, s in enumerate(seqs):
        tl = type_list(s)
        n = len(tl)
        t = s.timestamps
        for k in range(1, n + (1 if with_end else 0)):
            case.append(ci)
            length.append(k)
            if k < n:
                types.append(tl[k])
                gaps.append(float(t[k] - t[k - 1]) if t is not None else np.nan)
            else:
                types.append(END)
                gaps.append(np.nan)
    return PrefixTargets(np.asarray(case, np.int64), np.asarray(length, np.int64), np.asarray(types, dtype=object), np.asarray(gaps, np.float64))


__all__ = ["END", "LoadedLog", "PrefixTargets", "Split", "by_start_time", "chronological_split", "load_log", "prefix_targets", "start_time", "type_list"]
