"""`EventSequence`, the in-memory view of one entity's events, and batching for training.

Shape legend: ``n`` events in a sequence, ``d`` (or ``d_m``) embedding width of a modality,
``b`` sequences in a batch, ``L`` padded batch length, ``k_m`` events of modality ``m`` in a batch.

Events are kept sorted by time with ties in their given order (stable sort). Events of several
modalities interleave in one time-ordered sequence; each modality keeps its own vector width, so
vectors are stored per modality (``vectors(m)`` is ``[n_m, d_m]`` in event order) with a row map
from event position to row. An event may have no vector (``has_vector`` false): the model then
sees only its type, modality and time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ejc.data.schema import DEFAULT_MODALITY, EVENT_SCHEMA, check_event_table
from ejc.errors import SchemaError

END = "<end>"  # the end of a case: predicted as one more event type after an entity's last event


class EventSequence:
    """One entity's events, sorted by time.

    Args:
        embeddings: ``[n, d]`` array (one modality, named by ``modality``); or a mapping
            ``{modality: [n_m, d_m]}`` (then ``timestamps`` is a mapping too, or ``None``);
            or a list of ``n`` vectors (``None`` for "no vector") with ``modality`` a list of
            ``n`` names.
        timestamps: ``[n]`` seconds (any origin, e.g. epoch) or ``None`` when only the order is
            known (positions are used as time). Missing values inside a timed sequence are
            filled from their neighbours and counted in ``metadata["imputed_timestamps"]``.
        modality: the modality name, or ``[n]`` names for a list of vectors.
        event_types: optional ``[n]`` categorical types (``None`` entries allowed).
        metadata: free-form dict (kept, never interpreted).
        id: the entity id; a random one when not given.
        labels: optional ``[n]`` evaluation labels.
    """

    def __init__(
        self,
        embeddings: np.ndarray | Mapping[str, np.ndarray] | Sequence[Any] | None = None,
        timestamps: np.ndarray | Mapping[str, np.ndarray] | Sequence[float] | None = None,
        modality: str | Sequence[str] = DEFAULT_MODALITY,
        event_types: Sequence[str | None] | np.ndarray | None = None,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
        labels: Sequence[str | None] | np.ndarray | None = None,
    ):
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.id = str(id) if id is not None else str(self.metadata.get("id", uuid.uuid4().hex[:12]))
        mods, rows, vecs, has_vec, ts = _normalise_inputs(embeddings, timestamps, modality, event_types)
        n = len(mods)
        types = None if event_types is None else np.asarray(list(event_types), dtype=object)
        labs = None if labels is None else np.asarray(list(labels), dtype=object)
        for name, arr in (("event_types", types), ("labels", labs)):
            if arr is not None and len(arr) != n:
                raise SchemaError(f"EventSequence: {name} has {len(arr)} entries but there are {n} events")
        order = np.arange(n)
        if ts is not None:
            ts, imputed = _impute_missing(ts)
            if imputed:
                self.metadata["imputed_timestamps"] = imputed
            order = np.argsort(ts, kind="stable")
        self.timestamps: np.ndarray | None = None if ts is None else ts[order]
        self.modalities: np.ndarray = mods[order]
        self.event_types: np.ndarray | None = None if types is None else types[order]
        self.labels: np.ndarray | None = None if labs is None else labs[order]
        self.has_vector: np.ndarray = has_vec[order]
        # re-pack vectors so each modality's rows follow the new event order
        self._vectors: dict[str, np.ndarray] = {}
        self._rowmap = np.full(n, -1, dtype=np.int64)
        for m, arr in vecs.items():
            pos = np.flatnonzero((self.modalities == m) & self.has_vector)
            src_rows = rows[order][pos]
            self._vectors[m] = np.ascontiguousarray(arr[src_rows], dtype=np.float32)
            self._rowmap[pos] = np.arange(len(pos))

    # -- basic views ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.modalities)

    def __repr__(self) -> str:
        dims = ", ".join(f"{m}:{d}" for m, d in self.dims.items())
        span = ""
        if self.timestamps is not None and len(self):
            span = f", span={self.timestamps[-1] - self.timestamps[0]:.0f}s"
        return f"EventSequence(id={self.id!r}, n={len(self)}, dims={{{dims}}}{span})"

    @property
    def dims(self) -> dict[str, int]:
        """Vector width of each modality present (modalities without vectors are absent)."""
        return {m: int(v.shape[1]) for m, v in self._vectors.items()}

    @property
    def modality_names(self) -> list[str]:
        """Modalities in order of first appearance."""
        _, first = np.unique(self.modalities, return_index=True)
        return [str(self.modalities[i]) for i in sorted(first)]

    @property
    def embeddings(self) -> np.ndarray | dict[str, np.ndarray]:
        """``[n, d]`` when every event has a vector of one modality, else ``{modality: [n_m, d_m]}``."""
        if len(self._vectors) == 1 and self.has_vector.all():
            return next(iter(self._vectors.values()))
        return dict(self._vectors)

    @property
    def embedding_dim(self) -> int:
        dims = set(self.dims.values())
        if len(dims) != 1:
            raise SchemaError(f"sequence {self.id!r} has modalities of widths {self.dims}; ask per modality")
        return dims.pop()

    def vectors(self, modality: str) -> np.ndarray:
        """``[n_m, d_m]`` vectors of one modality, in event order (events without vectors skipped)."""
        if modality not in self._vectors:
            raise KeyError(f"sequence {self.id!r} has no vectors of modality {modality!r}; has {sorted(self._vectors)}")
        return self._vectors[modality]

    def vector_positions(self, modality: str) -> np.ndarray:
        """``[n_m]`` event positions of the rows of :meth:`vectors`."""
        return np.flatnonzero((self.modalities == modality) & self.has_vector)

    def vector_at(self, i: int) -> np.ndarray | None:
        if not self.has_vector[i]:
            return None
        return self._vectors[str(self.modalities[i])][self._rowmap[i]]

    @property
    def times(self) -> np.ndarray:
        """``[n]`` float64 times: the timestamps, or positions 0..n-1 when there are none."""
        if self.timestamps is None:
            return np.arange(len(self), dtype=np.float64)
        return self.timestamps

    def gaps(self) -> np.ndarray:
        """``[n]`` seconds since the previous event (0 for the first)."""
        t = self.times
        return np.diff(t, prepend=t[:1]) if len(t) else t

    def __getitem__(self, key: slice) -> EventSequence:
        if not isinstance(key, slice):
            raise TypeError("EventSequence supports slicing only, e.g. seq[10:20]")
        idx = np.arange(len(self))[key]
        return self.select(idx)

    def select(self, idx: np.ndarray) -> EventSequence:
        """A new sequence made of the events at positions ``idx`` (kept in time order)."""
        idx = np.sort(np.asarray(idx, dtype=np.int64))
        vecs: list[np.ndarray | None] = [self.vector_at(int(i)) for i in idx]
        out = EventSequence.__new__(EventSequence)
        out.metadata = dict(self.metadata)
        out.id = self.id
        out.timestamps = None if self.timestamps is None else self.timestamps[idx]
        out.modalities = self.modalities[idx]
        out.event_types = None if self.event_types is None else self.event_types[idx]
        out.labels = None if self.labels is None else self.labels[idx]
        out.has_vector = self.has_vector[idx]
        out._vectors = {}
        out._rowmap = np.full(len(idx), -1, dtype=np.int64)
        for m in self._vectors:
            pos = np.flatnonzero((out.modalities == m) & out.has_vector)
            out._vectors[m] = (
                np.stack([vecs[p] for p in pos]).astype(np.float32)  # type: ignore[misc]
                if len(pos)
                else np.zeros((0, self._vectors[m].shape[1]), np.float32)
            )
            out._rowmap[pos] = np.arange(len(pos))
        return out

    # -- table round trip -------------------------------------------------------------------
    @classmethod
    def from_table(cls, table: pa.Table, entity_id: str | None = None) -> EventSequence:
        """Build the sequence of one entity from an event table (all rows when ``entity_id`` is None)."""
        if entity_id is not None:
            table = table.filter(pc.equal(table.column("entity_id"), entity_id))
        ids = table.column("entity_id").unique().to_pylist()
        if len(ids) != 1:
            raise SchemaError(f"from_table needs the rows of exactly one entity, got {len(ids)} entities")
        return _sequence_from_rows(table, str(ids[0]))

    def to_table(self) -> pa.Table:
        """This sequence as event-table rows (:data:`EVENT_SCHEMA`)."""
        n = len(self)
        return pa.table(
            {
                "entity_id": [self.id] * n,
                "timestamp": pa.array(self.timestamps, pa.float64()) if self.timestamps is not None else pa.nulls(n, pa.float64()),
                "event_type": pa.array(list(self.event_types), pa.string()) if self.event_types is not None else pa.nulls(n, pa.string()),
                "modality": pa.array(list(self.modalities), pa.string()),
                "embedding": pa.array([None if (v := self.vector_at(i)) is None else v.tolist() for i in range(n)], pa.list_(pa.float32())),
                "text": pa.nulls(n, pa.string()),
                "attributes": pa.nulls(n, pa.map_(pa.string(), pa.string())),
                "label": pa.array(list(self.labels), pa.string()) if self.labels is not None else pa.nulls(n, pa.string()),
            },
            schema=EVENT_SCHEMA,
        )


def sequences_from_table(table: pa.Table, min_events: int = 1) -> Iterator[EventSequence]:
    """Yield one :class:`EventSequence` per entity of an event table, in order of first appearance.

    Entities with fewer than ``min_events`` events are skipped (callers report how many).
    """
    check_event_table(table)
    if table.num_rows == 0:
        return
    ids = table.column("entity_id").combine_chunks()
    # stable grouping: sort row positions by entity (first-appearance order), keep row order within
    dict_ids = pc.dictionary_encode(ids)
    codes = dict_ids.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(order)]])
    names = dict_ids.dictionary.to_pylist()
    # one take of the columns a sequence needs, then zero-copy slices (a take per entity cost
    # ~0.4 ms each: 5 s for HDFS's 12k sessions)
    cols = [c for c in ("timestamp", "embedding", "modality", "event_type", "label") if c in table.column_names]
    grouped = table.select(cols).take(pa.array(order))
    for s, e in zip(starts.tolist(), ends.tolist()):
        if e - s < min_events:
            continue
        yield _sequence_from_rows(grouped.slice(s, e - s), str(names[codes[order[s]]]))


def _sequence_from_rows(table: pa.Table, entity_id: str) -> EventSequence:
    ts_col = table.column("timestamp")
    ts = None
    if ts_col.null_count < table.num_rows:
        ts = ts_col.to_numpy(zero_copy_only=False).astype(np.float64)
    emb = table.column("embedding").to_pylist()
    mods = table.column("modality").to_pylist()
    vectors = [None if v is None else np.asarray(v, np.float32) for v in emb]
    types = table.column("event_type").to_pylist()
    labels = table.column("label").to_pylist()
    return EventSequence(
        embeddings=vectors,
        timestamps=ts,
        modality=mods,
        event_types=types if any(t is not None for t in types) else None,
        labels=labels if any(x is not None for x in labels) else None,
        id=entity_id,
    )


# ----------------------------------------------------------------------------------------------
# input normalisation


def _normalise_inputs(embeddings, timestamps, modality, event_types):  # noqa: ANN001, ANN202
    """Return ``(mods [n] object, rows [n] int, {m: [n_m, d_m]}, has_vec [n] bool, ts [n] | None)``."""
    if isinstance(embeddings, Mapping):
        parts_m, parts_r, parts_t, vecs = [], [], [], {}
        for m, arr in embeddings.items():
            arr = np.asarray(arr, dtype=np.float32)
            if arr.ndim != 2:
                raise SchemaError(f"embeddings[{m!r}] must be [n_m, d_m], got shape {arr.shape}")
            vecs[str(m)] = arr
            parts_m.append(np.full(len(arr), str(m), dtype=object))
            parts_r.append(np.arange(len(arr)))
            if isinstance(timestamps, Mapping):
                if m not in timestamps:
                    raise SchemaError(f"timestamps has no entry for modality {m!r}")
                t = np.asarray(timestamps[m], dtype=np.float64)
                if len(t) != len(arr):
                    raise SchemaError(f"modality {m!r}: {len(arr)} vectors but {len(t)} timestamps")
                parts_t.append(t)
        if timestamps is not None and not isinstance(timestamps, Mapping):
            raise SchemaError("with embeddings given per modality, give timestamps per modality too")
        mods = np.concatenate(parts_m) if parts_m else np.zeros(0, object)
        rows = np.concatenate(parts_r) if parts_r else np.zeros(0, np.int64)
        ts = np.concatenate(parts_t) if parts_t else None
        return mods, rows, vecs, np.ones(len(mods), bool), ts

    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    if isinstance(embeddings, np.ndarray) and embeddings.ndim == 2 and isinstance(modality, str):
        n = len(embeddings)
        _check_len(ts, n)
        return np.full(n, modality, dtype=object), np.arange(n), {modality: embeddings.astype(np.float32)}, np.ones(n, bool), ts
    if embeddings is None:
        n = len(event_types) if event_types is not None else (len(ts) if ts is not None else 0)
        vec_list: list[Any] = [None] * n
    else:
        vec_list = list(embeddings)
        n = len(vec_list)
    mods = np.full(n, modality, dtype=object) if isinstance(modality, str) else np.asarray(list(modality), dtype=object)
    if len(mods) != n:
        raise SchemaError(f"EventSequence: {n} events but {len(mods)} modality names")
    _check_len(ts, n)
    has_vec = np.array([v is not None for v in vec_list], bool)
    rows = np.zeros(n, np.int64)
    vecs: dict[str, np.ndarray] = {}
    for m in dict.fromkeys(mods.tolist()):
        pos = np.flatnonzero((mods == m) & has_vec)
        if len(pos) == 0:
            continue
        widths = {len(vec_list[p]) for p in pos}
        if len(widths) != 1:
            raise SchemaError(f"modality {m!r} has vectors of several widths {sorted(widths)}; one width per modality")
        vecs[str(m)] = np.stack([np.asarray(vec_list[p], dtype=np.float32) for p in pos])
        rows[pos] = np.arange(len(pos))
    return mods, rows, vecs, has_vec, ts


def _check_len(ts: np.ndarray | None, n: int) -> None:
    if ts is not None and len(ts) != n:
        raise SchemaError(f"EventSequence: {n} events but {len(ts)} timestamps")


def _impute_missing(ts: np.ndarray) -> tuple[np.ndarray | None, int]:
    bad = ~np.isfinite(ts)
    if not bad.any():
        return ts, 0
    if bad.all():
        return None, 0
    idx = np.arange(len(ts))
    good = np.flatnonzero(~bad)
    filled = ts.copy()
    # forward fill, then back fill the leading gap
    last = np.maximum.accumulate(np.where(~bad, idx, -1))
    filled[bad] = np.where(last[bad] >= 0, ts[np.maximum(last[bad], 0)], ts[good[0]])
    return filled, int(bad.sum())


# ----------------------------------------------------------------------------------------------
# windows and batches


def window_starts(n: int, length: int, stride: int) -> list[int]:
    """Start positions of windows of ``length`` every ``stride`` over ``n`` events, the last one
    aligned to the end (``[0]`` when ``n <= length``)."""
    if n <= length:
        return [0]
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] + length < n:
        starts.append(n - length)
    return starts


def window_sequence(seq: EventSequence, length: int, stride: int | None = None) -> list[EventSequence]:
    """Cut a long sequence into windows of ``length`` events every ``stride`` events.

    The last window is aligned to the end, so with ``stride <= length`` no event is left out
    (a larger stride skips the events between windows); a sequence no longer than ``length`` is
    returned whole.
    """
    if length <= 0:
        raise ValueError(f"window length must be positive, got {length}")
    if stride is not None and stride <= 0:
        raise ValueError(f"window stride must be positive (or None for the window length), got {stride}")
    if len(seq) <= length:
        return [seq]
    return [seq[s : s + length] for s in window_starts(len(seq), length, stride or length)]


@dataclass
class PaddedBatch:
    """A batch of sequences padded to length ``L`` (numpy; the model moves it to torch).

    Vectors are packed per modality: ``vectors[m]`` is ``[k_m, d_m]`` and ``vector_index[m]``
    ``[k_m]`` gives each row's flat position ``i * L + j`` in the ``[b, L]`` grid.
    """

    vectors: dict[str, np.ndarray]
    vector_index: dict[str, np.ndarray]
    modality_ids: np.ndarray  # [b, L] int64 index into ``modalities``; 0 for padding
    type_ids: np.ndarray  # [b, L] int64 (0 = padding, 1 = unknown)
    times: np.ndarray  # [b, L] float64 seconds since each sequence's first event (positions if untimed)
    abs_times: np.ndarray  # [b, L] float64 absolute timestamps (NaN if untimed): calendar features
    has_time: np.ndarray  # [b] bool
    valid: np.ndarray  # [b, L] bool, False on padding
    modalities: list[str]
    ids: list[str]

    @property
    def lengths(self) -> np.ndarray:
        return self.valid.sum(1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.valid.shape  # type: ignore[return-value]


def collate(
    seqs: Sequence[EventSequence],
    modalities: Sequence[str],
    encode_types: Callable[[Iterable[str | None]], np.ndarray] | None = None,
    max_len: int | None = None,
    pad_to_multiple: int = 1,
) -> PaddedBatch:
    """Pad ``seqs`` into one :class:`PaddedBatch`.

    Args:
        modalities: the model's modality names (fixes ``modality_ids``); an event of another
            modality raises :class:`SchemaError`.
        encode_types: maps type strings to ids (e.g. ``TypeVocab.encode``); all ones when None.
        max_len: keep only the last ``max_len`` events of longer sequences.
        pad_to_multiple: round ``L`` up (hierarchical pooling wants multiples of ``2**levels``).
    """
    if not seqs:
        raise ValueError("collate needs at least one sequence")
    mod_index = {m: i for i, m in enumerate(modalities)}
    if max_len is not None:
        seqs = [s[len(s) - max_len :] if len(s) > max_len else s for s in seqs]
    b = len(seqs)
    L = max(len(s) for s in seqs)
    L = max(pad_to_multiple, -(-L // pad_to_multiple) * pad_to_multiple)
    valid = np.zeros((b, L), bool)
    modality_ids = np.zeros((b, L), np.int64)
    type_ids = np.zeros((b, L), np.int64)
    times = np.zeros((b, L), np.float64)
    abs_times = np.full((b, L), np.nan, np.float64)
    has_time = np.zeros(b, bool)
    packed: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    packed_idx: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    for i, s in enumerate(seqs):
        n = len(s)
        valid[i, :n] = True
        unknown = set(s.modality_names) - set(mod_index)
        if unknown:
            raise SchemaError(f"sequence {s.id!r} has modalities {sorted(unknown)} the model does not know {list(modalities)}")
        modality_ids[i, :n] = [mod_index[m] for m in s.modalities]
        if encode_types is not None and s.event_types is not None:
            type_ids[i, :n] = encode_types(s.event_types)
        else:
            type_ids[i, :n] = 1
        if s.timestamps is not None:
            has_time[i] = True
            times[i, :n] = s.timestamps - (s.timestamps[0] if n else 0.0)
            abs_times[i, :n] = s.timestamps
        else:
            times[i, :n] = np.arange(n)
        for m in s.dims:
            pos = s.vector_positions(m)
            packed[m].append(s.vectors(m))
            packed_idx[m].append(i * L + pos)
    vectors, vector_index = {}, {}
    for m in modalities:
        if packed[m]:
            vectors[m] = np.concatenate(packed[m]).astype(np.float32, copy=False)
            vector_index[m] = np.concatenate(packed_idx[m]).astype(np.int64)
    return PaddedBatch(vectors, vector_index, modality_ids, type_ids, times, abs_times, has_time, valid, list(modalities), [s.id for s in seqs])


__all__ = ["END", "EventSequence", "PaddedBatch", "collate", "sequences_from_table", "window_sequence", "window_starts"]
