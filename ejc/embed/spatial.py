"""Spatial tokens: grid-cell hashing at several scales (seed 002, "spatial hashing").

:func:`spatial_hash` names the grid cell of side ``resolution`` holding a point
(``spatial_hash(12.5, 8.3, 1.0) == "cell_12_8"``). :class:`SpatialHashEmbedder` (registry
name ``spatial``) embeds an event's ``(x, y)`` as the normalised sum of the hashed unit
vectors of its cells at every scale (default 0.5, 1, 2, 4): two points share a cell at
every scale coarser than their distance (unless a cell border lies between them), so
nearby points have high cosine and far ones ~0. Coordinates are read from the
``attributes`` map column (keys ``x`` / ``y`` by default); an event without usable
coordinates gets the zero vector.

Shapes: ``n`` events, ``d`` embedding dimension, ``s`` scales.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ejc.embed.registry import Embedder, register_embedding_type
from ejc.embed.tokens import hashed_vector
from ejc.errors import EmbeddingError


def _cell_index(v: float, resolution: float) -> int:
    return math.floor(v / resolution)


def spatial_hash(x: float, y: float, resolution: float) -> str:
    """Id ``"cell_<i>_<j>"`` of the ``resolution``-sized grid cell holding ``(x, y)``
    (``i = floor(x / resolution)``, ``j = floor(y / resolution)``)."""
    if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution > 0):
        raise EmbeddingError(f"spatial_hash: resolution must be a positive number, got {resolution!r}")
    x, y = float(x), float(y)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise EmbeddingError(f"spatial_hash: coordinates must be finite, got ({x}, {y})")
    return f"cell_{_cell_index(x, resolution)}_{_cell_index(y, resolution)}"


@register_embedding_type("spatial")
class SpatialHashEmbedder(Embedder):
    """Multi-scale hashed grid cells of ``(x, y)`` read from the ``attributes`` column.

    Cell vectors are cached (at most ``max_cache`` of them; the cache is cleared when full).
    """

    model_name = "multi-scale-spatial-hash"
    normalize = True

    def __init__(
        self,
        dim: int = 64,
        resolutions: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
        x_key: str = "x",
        y_key: str = "y",
        modality: str | None = None,
        max_cache: int = 1_000_000,
    ):
        super().__init__(dim, modality)
        res = [float(r) for r in resolutions]
        if not res or any(not (math.isfinite(r) and r > 0) for r in res):
            raise EmbeddingError(f"spatial embedder: resolutions must be positive numbers, got {list(resolutions)}")
        self.resolutions = tuple(res)
        self.x_key, self.y_key = x_key, y_key
        self.max_cache = int(max_cache)
        self._cache: dict[tuple[float, int, int], np.ndarray] = {}

    def cell_vector(self, resolution: float, i: int, j: int) -> np.ndarray:
        key = (resolution, i, j)
        v = self._cache.get(key)
        if v is None:
            if len(self._cache) >= self.max_cache:
                self._cache.clear()
            # the resolution is part of the token: the 1.0 cell (0, 0) and the 4.0 cell (0, 0) differ
            v = hashed_vector(f"{resolution!r}/cell_{i}_{j}", self.dim, "spatial")
            self._cache[key] = v
        return v

    def embed_xy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``x``, ``y`` ``[n]`` float (NaN = missing) -> unit vectors ``[n, d]`` (zeros where missing)."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        n = x.shape[0]
        out = np.zeros((n, self.dim), np.float64)  # [n, d]
        ok = np.isfinite(x) & np.isfinite(y) & (np.abs(x) < 1e15) & (np.abs(y) < 1e15)  # cell ids fit int64
        if not ok.any():
            return out.astype(np.float32)
        xs, ys = x[ok], y[ok]
        acc = np.zeros((xs.shape[0], self.dim), np.float64)
        for r in self.resolutions:
            cells = np.stack([np.floor(xs / r), np.floor(ys / r)], axis=1).astype(np.int64)  # [n_ok, 2]
            uniq, inv = np.unique(cells, axis=0, return_inverse=True)
            table = np.stack([self.cell_vector(r, int(i), int(j)) for i, j in uniq])  # [u, d]
            acc += table[inv.reshape(-1)]
        acc /= np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)
        out[ok] = acc
        return out.astype(np.float32)

    def _coords(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        n = table.num_rows
        if "attributes" not in table.column_names:
            raise EmbeddingError(
                f"the 'spatial' embedder reads '{self.x_key}'/'{self.y_key}' from the 'attributes' column; "
                f"columns: {table.column_names}"
            )
        col = table.column("attributes")
        if not pa.types.is_map(col.type):
            raise EmbeddingError(f"the 'attributes' column must be a map<string, string>, got {col.type}")

        def lookup(key: str) -> np.ndarray:
            vals = pc.map_lookup(col, key, "first")
            s = pd.Series(pc.cast(vals, pa.string()).to_pylist(), dtype="object")
            return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) if n else np.zeros(0)

        return lookup(self.x_key), lookup(self.y_key)

    def embed_table(self, table: pa.Table) -> np.ndarray:
        return self.embed_xy(*self._coords(table))

    def process(self, data: Sequence[Any]) -> np.ndarray:
        """Embed ``(x, y)`` pairs; ``None`` (or a pair with a missing coordinate) -> zeros."""
        n = len(data)
        x = np.full(n, np.nan)
        y = np.full(n, np.nan)
        for k, p in enumerate(data):
            if p is None:
                continue
            try:
                px, py = p
            except (TypeError, ValueError) as e:
                raise EmbeddingError(f"spatial embedder: item {k} is {p!r}, expected an (x, y) pair") from e
            x[k] = np.nan if px is None else float(px)
            y[k] = np.nan if py is None else float(py)
        return self.embed_xy(x, y)


__all__ = ["SpatialHashEmbedder", "spatial_hash"]
