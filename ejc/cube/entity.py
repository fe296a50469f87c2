"""The cube's value types: an :class:`Entity` living in several embedding spaces, a search hit
(:class:`Neighbor`) and a typed, scored link between two entities (:class:`Relationship`).

Legend: ``d`` the dimension of one modality (embedding space).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ejc.errors import CubeError

RELATIONSHIP_TYPES = ("similar", "complementary", "parent", "child", "sibling", "cross_modal")


def as_vector(value: Any, what: str, dim: int | None = None) -> np.ndarray:
    """``value`` as a finite 1-D float32 ``[d]`` array, or :class:`CubeError` saying what is wrong."""
    try:
        vec = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise CubeError(f"{what}: not a numeric vector ({e})") from e
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    if vec.ndim != 1 or vec.size == 0:
        raise CubeError(f"{what}: expected a 1-D vector, got shape {tuple(vec.shape)}")
    if dim is not None and vec.shape[0] != dim:
        raise CubeError(f"{what}: has dimension {vec.shape[0]} but this space has dimension {dim}")
    if not np.isfinite(vec).all():
        raise CubeError(f"{what}: contains NaN or infinite values; clean or drop the vector first")
    return vec


@dataclass
class Entity:
    """One thing (product, user, document, ...) with a vector in each of its modalities.

    Args:
        id: unique id; a random 12-hex-digit one when not given (seed-style ``Entity(embeddings=..)``).
        embeddings: ``{modality: [d_modality]}``; converted to float32 and checked (1-D, finite).
        hierarchy_info: ``{level: value}``, e.g. ``{"category": "electronics", "subcategory": "phones"}``;
            used by ``find_similar(filter=...)`` and by declared hierarchies. Values become strings.
        metadata: free-form, kept as is (JSON-serialisable if the cube is saved).
    """

    id: str | None = None
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    hierarchy_info: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.id is None:
            self.id = uuid.uuid4().hex[:12]
        if not isinstance(self.id, str) or not self.id:
            raise CubeError(f"entity id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.embeddings, dict):
            raise CubeError(f"entity {self.id!r}: embeddings must be a dict {{modality: vector}}, got {type(self.embeddings).__name__}")
        clean = {}
        for m, v in self.embeddings.items():
            if not isinstance(m, str) or not m:
                raise CubeError(f"entity {self.id!r}: modality names must be non-empty strings, got {m!r}")
            clean[m] = as_vector(v, f"entity {self.id!r}, modality {m!r}")
        self.embeddings = clean
        info = {}
        for k, v in dict(self.hierarchy_info).items():
            if not isinstance(k, str) or not k or v is None:
                raise CubeError(f"entity {self.id!r}: hierarchy_info needs non-empty string levels and non-null values, got {k!r}: {v!r}")
            info[k] = str(v)
        self.hierarchy_info = info
        self.metadata = dict(self.metadata)


@dataclass(frozen=True)
class Neighbor:
    """One search hit: ``score`` is higher for more similar (cosine, inner product, or -L2)."""

    entity_id: str
    score: float
    modality: str

    def to_dict(self) -> dict[str, Any]:
        return {"entity_id": self.entity_id, "score": self.score, "modality": self.modality}


@dataclass(frozen=True)
class Relationship:
    """A typed link ``source -> target`` with a confidence and the evidence behind it.

    ``type`` is one of :data:`RELATIONSHIP_TYPES`; what ``confidence`` means per type is
    documented in :mod:`ejc.cube.relationships`.
    """

    source: str
    target: str
    type: str
    confidence: float
    evidence: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        conf = self.confidence if math.isfinite(self.confidence) else None
        return {"source": self.source, "target": self.target, "type": self.type, "confidence": conf, "evidence": dict(self.evidence)}


def entities_from_table(table: Any, id_column: str = "id", hierarchy_columns: list[str] | None = None) -> list[Entity]:
    """Entities from a table with one row per entity (``ejc synth --cube``'s ``entities.parquet``).

    ``id_column`` holds the ids; every list-of-numbers column is a modality (null: the entity has
    no vector there); ``hierarchy_columns`` (default: every other string column) give
    ``hierarchy_info``. ``table``: a ``pyarrow.Table`` or a Parquet path.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pq.read_table(table)
    if id_column not in table.column_names:
        raise CubeError(f"entity table has no id column {id_column!r} (columns: {table.column_names}); pass id_column=")
    vec_cols = [f.name for f in table.schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type) or pa.types.is_fixed_size_list(f.type)]
    if hierarchy_columns is None:
        hierarchy_columns = [f.name for f in table.schema if f.name != id_column and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
    missing = [c for c in hierarchy_columns if c not in table.column_names]
    if missing:
        raise CubeError(f"entity table has no hierarchy columns {missing} (columns: {table.column_names})")
    ids = table.column(id_column).to_pylist()
    vecs = {c: table.column(c).to_pylist() for c in vec_cols}
    levels = {c: table.column(c).to_pylist() for c in hierarchy_columns}
    out = []
    for r, eid in enumerate(ids):
        emb = {c: v[r] for c, v in vecs.items() if v[r] is not None}
        info = {c: v[r] for c, v in levels.items() if v[r] is not None}
        if eid is None:
            raise CubeError(f"entity table row {r}: the id ({id_column}) is null")
        out.append(Entity(str(eid), emb, info))
    return out


__all__ = ["RELATIONSHIP_TYPES", "Entity", "Neighbor", "Relationship", "as_vector", "entities_from_table"]
