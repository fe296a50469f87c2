"""Temporal tokens: per-event calendar features and fixed-window type counts (seed 002).

* :func:`temporal_features` / :class:`TemporalEmbedder` (registry name ``temporal``): for each
  timestamp (float seconds since the Unix epoch, UTC) the cyclic hour-of-day and
  day-of-week position as sin/cos pairs, plus one-hot hour (24) and weekday (7, Monday = 0)
  bins. A missing timestamp gives the zero vector (no real timestamp does: its sin/cos
  pairs have unit norm).
* :func:`temporal_bin_counts`: the seed's "temporal binning": split time into fixed windows
  aligned to ``origin + k * bin_seconds`` and count each event type per window, giving the
  multi-hot count vector ``e_t = [c_1 .. c_V]`` of every window from the first event to the
  last (empty windows included, as zero rows).

Shapes: ``n`` events, ``nb`` bins, ``V`` vocabulary size, ``d`` feature dimension.
Feature layout (``d = 35`` with one-hot bins, else 4)::

    [0] sin(2pi h/24)  [1] cos(2pi h/24)  [2] sin(2pi w/7)  [3] cos(2pi w/7)
    [4:28] one-hot hour 0..23             [28:35] one-hot weekday Mon..Sun

where ``h`` is the fractional hour of day and ``w`` the fractional day of week.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ejc.data.schema import parse_timestamps
from ejc.embed.registry import Embedder, register_embedding_type
from ejc.embed.tokens import TypeVocab
from ejc.errors import EmbeddingError

SECONDS_PER_DAY = 86_400.0
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
CYCLIC_DIM = 4
ONE_HOT_DIM = 24 + 7


def to_seconds(data: Sequence[Any] | np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Timestamps (numbers in seconds, datetimes, numpy datetime64, ISO strings, None) -> ``[n]`` float64.

    Naive datetimes and strings are read as UTC; missing or unparsable values become NaN.
    """
    if isinstance(data, (pa.Array, pa.ChunkedArray)):
        secs, _, _ = parse_timestamps(data)
        return secs
    if isinstance(data, np.ndarray) and data.dtype.kind in "fiu":
        return data.astype(np.float64)
    if isinstance(data, np.ndarray) and data.dtype.kind == "M":
        us = data.astype("datetime64[us]")
        out = us.astype(np.int64).astype(np.float64) / 1e6
        out[np.isnat(us)] = np.nan
        return out
    out = np.full(len(data), np.nan, np.float64)
    strings: dict[int, str] = {}
    for i, v in enumerate(data):
        if v is None:
            continue
        if isinstance(v, bool):
            raise EmbeddingError(f"timestamp {v!r} at position {i} is a bool, not a time")
        if isinstance(v, (int, float, np.integer, np.floating)):
            out[i] = float(v)
        elif isinstance(v, _dt.datetime):
            out[i] = (v if v.tzinfo else v.replace(tzinfo=_dt.timezone.utc)).timestamp()
        elif isinstance(v, _dt.date):
            out[i] = _dt.datetime(v.year, v.month, v.day, tzinfo=_dt.timezone.utc).timestamp()
        elif isinstance(v, np.datetime64):
            out[i] = np.nan if np.isnat(v) else v.astype("datetime64[us]").astype(np.int64) / 1e6
        elif isinstance(v, str):
            strings[i] = v
        else:
            raise EmbeddingError(f"cannot read {type(v).__name__} {v!r} at position {i} as a timestamp")
    if strings:
        secs, _, _ = parse_timestamps(pa.array(list(strings.values()), pa.string()))
        out[list(strings)] = secs
    return out


def temporal_features(timestamps: np.ndarray | Sequence[Any], one_hot: bool = True, utc_offset_hours: float = 0.0) -> np.ndarray:
    """Calendar features ``[n, d]`` float32 (layout in the module docstring); NaN time -> zeros.

    ``utc_offset_hours`` shifts to local wall-clock time first (e.g. ``-5`` for US Eastern
    standard time), so "hour 9" means 9 in the morning where the events happened.
    """
    t = np.asarray(to_seconds(timestamps), np.float64)  # [n]
    n = t.shape[0]
    ok = np.isfinite(t)
    local = np.where(ok, t, 0.0) + utc_offset_hours * 3600.0
    days = np.floor(local / SECONDS_PER_DAY)
    sec_of_day = local - days * SECONDS_PER_DAY  # [0, 86400)
    hour = sec_of_day / 3600.0  # fractional hour of day
    weekday = np.mod(days + _EPOCH_WEEKDAY, 7.0)  # Monday = 0
    week_pos = weekday + sec_of_day / SECONDS_PER_DAY  # fractional day of week
    dim = CYCLIC_DIM + (ONE_HOT_DIM if one_hot else 0)
    out = np.zeros((n, dim), np.float32)
    out[:, 0] = np.sin(2 * np.pi * hour / 24.0)
    out[:, 1] = np.cos(2 * np.pi * hour / 24.0)
    out[:, 2] = np.sin(2 * np.pi * week_pos / 7.0)
    out[:, 3] = np.cos(2 * np.pi * week_pos / 7.0)
    if one_hot:
        rows = np.arange(n)
        hour_bin = np.clip(np.floor(hour).astype(np.int64), 0, 23)  # clip: float rounding at midnight
        out[rows, CYCLIC_DIM + hour_bin] = 1.0
        out[rows, CYCLIC_DIM + 24 + weekday.astype(np.int64)] = 1.0
    out[~ok] = 0.0
    return out


@register_embedding_type("temporal")
class TemporalEmbedder(Embedder):
    """Per-event calendar features from the ``timestamp`` column (see :func:`temporal_features`)."""

    model_name = "calendar-features"
    normalize = False

    def __init__(self, one_hot: bool = True, utc_offset_hours: float = 0.0, modality: str | None = None):
        if not -24.0 < float(utc_offset_hours) < 24.0:
            raise EmbeddingError(f"utc_offset_hours must be within (-24, 24), got {utc_offset_hours}")
        super().__init__(CYCLIC_DIM + (ONE_HOT_DIM if one_hot else 0), modality)
        self.one_hot = bool(one_hot)
        self.utc_offset_hours = float(utc_offset_hours)

    def embed_table(self, table: pa.Table) -> np.ndarray:
        if "timestamp" not in table.column_names:
            raise EmbeddingError(f"the 'temporal' embedder reads the 'timestamp' column; columns: {table.column_names}")
        secs, _, _ = parse_timestamps(table.column("timestamp"))
        return temporal_features(secs, self.one_hot, self.utc_offset_hours)

    def process(self, data: Sequence[Any]) -> np.ndarray:
        return temporal_features(to_seconds(data), self.one_hot, self.utc_offset_hours)


def temporal_bin_counts(
    timestamps: np.ndarray | Sequence[Any],
    types: Sequence[str | None] | pa.Array | pa.ChunkedArray,
    bin_seconds: float,
    vocab: TypeVocab | Sequence[str],
    *,
    origin: float = 0.0,
    skip_missing: bool = False,
    max_bins: int = 10_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Count event types in fixed time windows.

    Windows are ``[origin + k * bin_seconds, origin + (k + 1) * bin_seconds)``, from the
    window holding the earliest event to the one holding the latest, every window in
    between included. ``vocab`` is a :class:`TypeVocab` (columns are its ids; unknown and
    null types count under ``<unk>``) or a list of type names (columns in list order; a type
    not in the list is an error: nothing is dropped silently). Events without a timestamp
    are an error unless ``skip_missing``.

    Returns ``(bin_starts [nb] float64 seconds, counts [nb, V] int64)``.
    """
    if not (isinstance(bin_seconds, (int, float)) and math.isfinite(bin_seconds) and bin_seconds > 0):
        raise EmbeddingError(f"bin_seconds must be a positive number, got {bin_seconds!r}")
    t = np.asarray(to_seconds(timestamps), np.float64)  # [n]
    if isinstance(types, (pa.Array, pa.ChunkedArray)):
        type_list: list[str | None] = types.to_pylist()
    else:
        type_list = list(types)
    if len(type_list) != t.shape[0]:
        raise EmbeddingError(f"temporal_bin_counts: {t.shape[0]} timestamps but {len(type_list)} types")

    if isinstance(vocab, TypeVocab):
        V = len(vocab)
        ids = vocab.encode(type_list)
    else:
        names = list(vocab)
        index = {s: i for i, s in enumerate(names)}
        if len(index) != len(names):
            raise EmbeddingError("temporal_bin_counts: vocab has duplicate names")
        V = len(names)
        missing_names = sorted({str(s) for s in type_list if s not in index})
        if missing_names:
            raise EmbeddingError(
                f"temporal_bin_counts: types {missing_names[:10]} are not in vocab; add them, "
                f"or pass a TypeVocab (which counts unknown types under <unk>)"
            )
        ids = np.fromiter((index[s] for s in type_list), np.int64, count=len(type_list))

    ok = np.isfinite(t)
    if not ok.all():
        if not skip_missing:
            raise EmbeddingError(
                f"temporal_bin_counts: {int((~ok).sum())} of {len(t)} events have no timestamp; "
                f"fill them or pass skip_missing=True"
            )
        t, ids = t[ok], ids[ok]
    if t.size == 0:
        return np.zeros(0, np.float64), np.zeros((0, V), np.int64)

    k = np.floor((t - origin) / bin_seconds).astype(np.int64)  # [n] window index
    k0 = int(k.min())
    nb = int(k.max()) - k0 + 1
    if nb > max_bins:
        raise EmbeddingError(
            f"temporal_bin_counts: {nb} windows of {bin_seconds}s span the data, more than max_bins={max_bins}; "
            f"use a larger bin_seconds"
        )
    counts = np.bincount((k - k0) * V + ids, minlength=nb * V).astype(np.int64).reshape(nb, V)
    bin_starts = origin + (k0 + np.arange(nb, dtype=np.float64)) * bin_seconds
    return bin_starts, counts


__all__ = ["TemporalEmbedder", "temporal_bin_counts", "temporal_features", "to_seconds"]
