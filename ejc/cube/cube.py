"""``EmbeddingCube``: entities in several embedding spaces, searchable, related, organised.

Legend: ``n`` entities, ``d`` the dimension of one modality, ``k`` results.

    cube = EmbeddingCube()
    cube.add_entities([Entity("p1", {"text": t1, "image": i1}, {"category": "phones"}), ...])
    cube.find_similar("p1", "text", k=5, filter={"category": "phones"})   # [Neighbor, ...]
    cube.add_cooccurrence(sessions)                 # feeds "complementary"
    cube.create_hierarchy(levels=None, modality="text")   # detected by clustering
    cube.fit_transform("text", "image")             # learned map between two spaces
    cube.find_relationships("p1", "complementary", confidence_threshold=0.5)
    cube.save("cube/"); cube = EmbeddingCube.load("cube/")

Each modality is one :class:`~ejc.cube.index.VectorIndex` (FAISS; exact when small, approximate
by size). The cube itself keeps only ids, hierarchy info and metadata in memory; vectors live in
the indices. What each relationship's confidence means is in :mod:`ejc.cube.relationships`.

Saved layout (a directory, written to a temporary sibling and renamed into place)::

    DIR/manifest.json        format + ejc version, cube version, metric, counts, modality dims,
                             SHA-256 of every file below except the indices (they have their own)
    DIR/entities.parquet     id, hierarchy_info (map), metadata (JSON text)
    DIR/state.json           co-occurrence counts, hierarchies, transform descriptions
    DIR/transforms.npz       the fitted transforms' matrices (no pickles)
    DIR/modalities/mNNN/     one VectorIndex.save() per modality
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ejc.cube.entity import RELATIONSHIP_TYPES, Entity, Neighbor, Relationship, as_vector
from ejc.cube.hierarchy import Hierarchy, declared_hierarchy, detect_hierarchy, split_node
from ejc.cube.index import VectorIndex, replace_dir, sha256_file
from ejc.cube.relationships import Cooccurrence, item_sequences, scores
from ejc.cube.transforms import MODEL_FACTORIES, LinearMap, TransformEntry, TransformRegistry, apply_model, fit_pairs, fvu
from ejc.errors import CubeError, UnknownEntityError, UnknownModalityError

FORMAT = "ejc-cube"
FORMAT_VERSION = 1


@dataclass
class _Record:
    hierarchy_info: dict[str, str]
    metadata: dict[str, Any]
    modalities: set[str] = field(default_factory=set)


class EmbeddingCube:
    """Entities with vectors in several spaces; see the module docstring.

    Args:
        metric: ``"cosine"`` (default), ``"ip"`` or ``"l2"`` for every modality's index.
        index_kind: ``"auto"`` (exact below 20k vectors, IVF / IVF-PQ beyond), ``"flat"``,
            ``"ivf"``, ``"hnsw"`` or ``"ivfpq"``.
        **index_options: passed to every :class:`~ejc.cube.index.VectorIndex`.
    """

    def __init__(self, metric: str = "cosine", index_kind: str = "auto", **index_options: Any) -> None:
        if metric not in ("cosine", "ip", "l2"):
            raise CubeError(f"unknown metric {metric!r}; choose cosine, ip or l2")
        self.metric = metric
        self.index_kind = index_kind
        self.index_options = dict(index_options)
        self.hierarchies: dict[str, Hierarchy] = {}
        self.transforms = TransformRegistry()
        self.cooccurrence: Cooccurrence | None = None
        self.min_support = 3
        self.missing_models: list[dict[str, Any]] = []  # user transforms a loaded cube could not restore
        self._indices: dict[str, VectorIndex] = {}
        self._records: dict[str, _Record] = {}
        self._by_level: dict[str, dict[str, set[str]]] = {}
        self._version: str | None = None

    # ------------------------------------------------------------------------------------------
    # contents

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._records

    @property
    def modalities(self) -> list[str]:
        return sorted(m for m, ix in self._indices.items() if len(ix))

    @property
    def version(self) -> str:
        """An id of the cube's contents: changes on every change, kept by save/load."""
        if self._version is None:
            self._version = uuid.uuid4().hex[:16]
        return self._version

    def dim(self, modality: str) -> int:
        return self._index(modality).dim

    def ids(self) -> list[str]:
        return list(self._records)

    def _changed(self) -> None:
        self._version = None

    def _index(self, modality: str) -> VectorIndex:
        ix = self._indices.get(modality)
        if ix is None or len(ix) == 0:
            raise UnknownModalityError(f"unknown modality {modality!r}; the cube has {self.modalities}")
        return ix

    def _record(self, entity_id: str) -> _Record:
        rec = self._records.get(entity_id) if isinstance(entity_id, str) else None
        if rec is None:
            raise UnknownEntityError(f"unknown entity id {entity_id!r} (the cube holds {len(self)} entities)")
        return rec

    def add_entity(self, entity: Entity) -> None:
        """Add ``entity``, or replace the entity with the same id (vectors, hierarchy, metadata)."""
        self.add_entities([entity])

    def add_entities(self, entities: Iterable[Entity]) -> int:
        """Add or replace many entities at once (one index update per modality); returns the count.

        Everything is checked before anything changes: a bad vector, a dimension that differs
        from the modality's, or a repeated id leaves the cube as it was.
        """
        ents = list(entities)
        seen: set[str] = set()
        dims = {m: ix.dim for m, ix in self._indices.items()}
        per_mod: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        for e in ents:
            if not isinstance(e, Entity):
                raise CubeError(f"add_entities takes Entity objects, got {type(e).__name__}")
            if e.id in seen:
                raise CubeError(f"entity id {e.id!r} appears twice in one call")
            seen.add(e.id)
            for m, v in e.embeddings.items():
                vec = as_vector(v, f"entity {e.id!r}, modality {m!r}", dims.get(m))
                if self.metric == "cosine" and not vec.any():
                    raise CubeError(f"entity {e.id!r}, modality {m!r}: zero vector; cosine similarity needs a direction (drop it or use metric='ip' / 'l2')")
                dims.setdefault(m, vec.shape[0])
                ids, vecs = per_mod.setdefault(m, ([], []))
                ids.append(e.id)
                vecs.append(vec)
        for m, (ids, vecs) in per_mod.items():
            self._index_for_write(m, dims[m]).upsert(ids, np.stack(vecs))
        for e in ents:
            old = self._records.get(e.id)
            if old is not None:
                for m in old.modalities - set(e.embeddings):
                    self._indices[m].remove([e.id])
                self._unindex_levels(e.id, old.hierarchy_info)
            self._records[e.id] = _Record(dict(e.hierarchy_info), dict(e.metadata), set(e.embeddings))
            self._index_levels(e.id, e.hierarchy_info)
        if ents:
            self._changed()
        return len(ents)

    def set_embeddings(self, modality: str, ids: Sequence[str], vectors: np.ndarray) -> int:
        """Set one modality's vectors ``[len(ids), d]`` for existing or new entities (others keep theirs)."""
        ids = [str(i) for i in ids]
        V = np.asarray(vectors, np.float32)
        if V.ndim != 2 or V.shape[0] != len(ids):
            raise CubeError(f"vectors must be [len(ids)={len(ids)}, d], got shape {tuple(V.shape)}")
        if len(set(ids)) != len(ids):
            raise CubeError("ids repeat in one set_embeddings call")
        ix = self._indices.get(modality)
        if ix is not None and len(ix) and ix.dim != V.shape[1]:
            raise CubeError(f"modality {modality!r} has dimension {ix.dim}, got vectors of dimension {V.shape[1]}")
        bad = np.flatnonzero(~np.isfinite(V).all(1))
        if len(bad):
            raise CubeError(f"vectors for {[ids[i] for i in bad[:3]]} contain NaN or infinite values")
        zero = np.flatnonzero(~V.any(1)) if self.metric == "cosine" else []
        if len(zero):
            raise CubeError(f"zero vectors for {[ids[i] for i in zero[:3]]}: cosine similarity needs a direction (drop them or use metric='ip' / 'l2')")
        if not ids:
            return 0
        self._index_for_write(modality, V.shape[1]).upsert(ids, V)
        for i in ids:
            rec = self._records.setdefault(i, _Record({}, {}))
            rec.modalities.add(modality)
        self._changed()
        return len(ids)

    def _index_for_write(self, modality: str, dim: int) -> VectorIndex:
        ix = self._indices.get(modality)
        if ix is None or (len(ix) == 0 and ix.dim != dim):
            ix = VectorIndex(dim, metric=self.metric, kind=self.index_kind, **self.index_options)
            self._indices[modality] = ix
        return ix

    def remove_entity(self, entity_id: str) -> None:
        rec = self._record(entity_id)
        for m in rec.modalities:
            self._indices[m].remove([entity_id])
        self._unindex_levels(entity_id, rec.hierarchy_info)
        del self._records[entity_id]
        self._changed()

    def get_entity(self, entity_id: str) -> Entity:
        rec = self._record(entity_id)
        emb = {m: self._indices[m].get([entity_id])[0].copy() for m in sorted(rec.modalities)}
        return Entity(entity_id, emb, dict(rec.hierarchy_info), dict(rec.metadata))

    def vector(self, entity_id: str, modality: str) -> np.ndarray:
        """The entity's ``[d]`` vector in ``modality``."""
        rec = self._record(entity_id)
        if modality not in rec.modalities:
            self._index(modality)
            raise UnknownModalityError(f"entity {entity_id!r} has no {modality!r} vector (it has {sorted(rec.modalities)})")
        return self._indices[modality].get([entity_id])[0]

    def _index_levels(self, eid: str, info: dict[str, str]) -> None:
        for k, v in info.items():
            self._by_level.setdefault(k, {}).setdefault(v, set()).add(eid)

    def _unindex_levels(self, eid: str, info: dict[str, str]) -> None:
        for k, v in info.items():
            self._by_level.get(k, {}).get(v, set()).discard(eid)

    # ------------------------------------------------------------------------------------------
    # search

    def find_similar(
        self,
        query: str | np.ndarray | None = None,
        modality: str | None = None,
        k: int = 10,
        filter: dict[str, str | list[str]] | None = None,
        *,
        entity_id: str | None = None,
    ) -> list[Neighbor]:
        """The ``k`` nearest entities in ``modality``, best first.

        Args:
            query: an entity id (the entity itself is never returned) or a ``[d]`` vector.
            modality: the space to search; may be omitted when the cube has one modality.
            filter: ``{level: value or [values]}`` on ``hierarchy_info``: only entities
                matching every level are returned.
            entity_id: seed-style alias of ``query`` for an id.
        """
        if entity_id is not None:
            if query is not None:
                raise CubeError("pass either query or entity_id, not both")
            query = entity_id
        if query is None:
            raise CubeError("find_similar needs an entity id or a vector")
        modality = self._pick_modality(modality)
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise CubeError(f"k must be a positive integer, got {k!r}")
        ix = self._index(modality)
        exclude = None
        if isinstance(query, str):
            q = self.vector(query, modality)
            exclude = (query,)
        else:
            q = as_vector(query, f"query vector for modality {modality!r}", ix.dim)
        allowed = self._allowed(filter)
        if allowed is not None and not allowed:
            return []
        hits = ix.search(q, int(k), allowed=allowed, exclude=exclude)[0]
        return [Neighbor(i, float(s), modality) for i, s in hits]

    def _pick_modality(self, modality: str | None) -> str:
        if modality is not None:
            return modality
        mods = self.modalities
        if len(mods) == 1:
            return mods[0]
        raise CubeError(f"name the modality to use (the cube has {mods})")

    def _allowed(self, filter: dict[str, str | list[str]] | None) -> set[str] | None:
        if not filter:
            return None
        if not isinstance(filter, dict):
            raise CubeError(f"filter must be a dict {{level: value or [values]}}, got {type(filter).__name__}")
        allowed: set[str] | None = None
        for level, want in filter.items():
            values = self._by_level.get(level)
            if values is None:
                raise CubeError(f"filter level {level!r} is in no entity's hierarchy_info; known levels: {sorted(self._by_level)}")
            wanted = [want] if isinstance(want, str) else list(want)
            match: set[str] = set().union(*(values.get(str(v), set()) for v in wanted)) if wanted else set()
            allowed = match if allowed is None else allowed & match
        return allowed

    # ------------------------------------------------------------------------------------------
    # relationships

    def add_cooccurrence(self, data: Any, *, item_column: str = "event_type", window: int | None = None, min_support: int | None = None) -> int:
        """Count entities that occur together in event sequences (feeds ``complementary``).

        ``data``: an event table (one sequence per ``entity_id``, items = entity ids in
        ``item_column``), ``EventSequence`` objects (items = their event types), or lists of
        entity ids (sessions / baskets). ``window``: count pairs at most this many events apart
        (None: anywhere in the same sequence). Returns the number of sequences added.
        """
        if self.cooccurrence is None:
            self.cooccurrence = Cooccurrence(window)
        elif window is not None and window != self.cooccurrence.window:
            raise CubeError(f"co-occurrence was counted with window={self.cooccurrence.window}; keep it, or make a new cube")
        if min_support is not None:
            if min_support < 1:
                raise CubeError(f"min_support must be >= 1, got {min_support}")
            self.min_support = int(min_support)
        n = self.cooccurrence.update(item_sequences(data, item_column))
        self._changed()
        return n

    def find_relationships(
        self,
        source_id: str,
        relationship_type: str,
        confidence_threshold: float = 0.5,
        *,
        modality: str | None = None,
        k: int = 10,
        hierarchy: str | None = None,
    ) -> list[Relationship]:
        """Relationships of ``source_id`` of one type with confidence >= the threshold, best first.

        ``modality``: restrict ``similar`` / ``cross_modal`` to one source space. ``k``: how many
        neighbours per space ``similar`` / ``cross_modal`` consider. ``hierarchy``: which
        hierarchy ``parent`` / ``child`` / ``sibling`` read (default: all); for these types
        ``source_id`` may also be a hierarchy node ``"level=value"``.
        """
        if relationship_type not in RELATIONSHIP_TYPES:
            raise CubeError(f"unknown relationship type {relationship_type!r}; choose one of {list(RELATIONSHIP_TYPES)}")
        if relationship_type in ("parent", "child", "sibling"):
            rels = self._hierarchy_relations(source_id, relationship_type, hierarchy)
        else:
            self._record(source_id)
            if relationship_type == "similar":
                rels = self._similar([source_id], modality, k)[source_id]
            elif relationship_type == "complementary":
                rels = self._complementary(source_id)
            else:
                rels = self._cross_modal(source_id, modality, k)
        out = [r for r in rels if r.confidence >= confidence_threshold]
        return sorted(out, key=lambda r: (-r.confidence, r.target))

    def discover_relationships(
        self,
        entity_ids: Iterable[str] | None = None,
        threshold: float = 0.8,
        modality: str | None = None,
        types: Sequence[str] = ("similar", "complementary"),
        k: int = 10,
    ) -> list[Relationship]:
        """Relationships of the given entities (default: all) with confidence >= ``threshold``.

        ``similar`` pairs are reported once (source < target); ``complementary`` is skipped when
        no co-occurrence was added. Other types as in :meth:`find_relationships`.
        """
        ids = list(self._records) if entity_ids is None else [str(i) for i in entity_ids]
        for i in ids:
            self._record(i)
        unknown = [t for t in types if t not in RELATIONSHIP_TYPES]
        if unknown:
            raise CubeError(f"unknown relationship types {unknown}; choose from {list(RELATIONSHIP_TYPES)}")
        out: list[Relationship] = []
        for t in types:
            if t == "similar":
                found = self._similar(ids, modality, k)
                seen: set[tuple[str, str]] = set()
                for src in ids:
                    for r in found[src]:
                        key = (min(r.source, r.target), max(r.source, r.target))
                        if r.confidence >= threshold and key not in seen:
                            seen.add(key)
                            out.append(Relationship(key[0], key[1], "similar", r.confidence, r.evidence))
            elif t == "complementary" and self.cooccurrence is None:
                continue
            else:
                for src in ids:
                    out.extend(self.find_relationships(src, t, threshold, modality=modality, k=k))
        return out

    def _similar(self, ids: list[str], modality: str | None, k: int) -> dict[str, list[Relationship]]:
        """Per source: candidates from each space's top-k, scored by the mean over shared spaces."""
        mods = [modality] if modality is not None else self.modalities
        if modality is not None:
            self._index(modality)
        cands: dict[str, set[str]] = {i: set() for i in ids}
        for m in mods:
            srcs = [i for i in ids if m in self._records[i].modalities]
            if not srcs:
                continue
            ix = self._indices[m]
            hits = ix.search(ix.get(srcs), k + 1)
            for s, row in zip(srcs, hits):
                cands[s].update(t for t, _ in row if t != s)
        out: dict[str, list[Relationship]] = {}
        for s in ids:
            rels = []
            targets = sorted(cands[s])
            per_mod: dict[str, dict[str, float]] = {t: {} for t in targets}
            for m in mods:
                if m not in self._records[s].modalities:
                    continue
                ts = [t for t in targets if m in self._records[t].modalities]
                if ts:
                    ix = self._indices[m]
                    for t, sc in zip(ts, scores(self.metric, ix.get([s])[0], ix.get(ts))):
                        per_mod[t][m] = float(sc)
            for t in targets:
                if per_mod[t]:
                    conf = float(np.mean(list(per_mod[t].values())))
                    rels.append(Relationship(s, t, "similar", conf, {"scores": per_mod[t], "metric": self.metric}))
            out[s] = rels
        return out

    def _complementary(self, source: str) -> list[Relationship]:
        if self.cooccurrence is None:
            raise CubeError("no co-occurrence data: call cube.add_cooccurrence(event_table or sessions) first")
        return [Relationship(source, t, "complementary", cf, ev) for t, cf, ev in self.cooccurrence.complementary(source, self.min_support)
                if t in self._records]

    def _cross_modal(self, source: str, modality: str | None, k: int) -> list[Relationship]:
        rec = self._records[source]
        src_mods = [modality] if modality is not None else sorted(rec.modalities)
        out: list[Relationship] = []
        any_path = False
        for ms in src_mods:
            v = self.vector(source, ms)
            for mt in self.modalities:
                if mt == ms:
                    continue
                try:
                    path = self.find_path(ms, mt)
                except CubeError:
                    continue
                any_path = True
                q = self.transforms.apply(v[None, :], path)
                for t, sc in self._indices[mt].search(q, k, exclude=(source,))[0]:
                    out.append(Relationship(source, t, "cross_modal", float(sc), {"source_modality": ms, "target_modality": mt, "path": path}))
        if not any_path:
            raise CubeError(f"no transform leads from {src_mods} to another modality; fit one with cube.fit_transform(source, target)")
        best: dict[str, Relationship] = {}
        for r in out:
            if r.target not in best or r.confidence > best[r.target].confidence:
                best[r.target] = r
        return list(best.values())

    def _hierarchy_relations(self, source: str, kind: str, hierarchy: str | None) -> list[Relationship]:
        if hierarchy is not None and hierarchy not in self.hierarchies:
            raise CubeError(f"no hierarchy {hierarchy!r}; created: {sorted(self.hierarchies)}")
        if not self.hierarchies:
            raise CubeError("no hierarchy yet: call cube.create_hierarchy(...) first")
        is_entity = source in self._records
        names = [hierarchy] if hierarchy else sorted(self.hierarchies)
        if not is_entity:
            if "=" not in source:
                self._record(source)  # raises: neither an entity nor a node
            level = split_node(source)[0]
            names = [n for n in names if level in self.hierarchies[n].levels]
            if not names:
                raise CubeError(f"no hierarchy has the level of node {source!r}; levels: { {n: h.levels for n, h in self.hierarchies.items()} }")
        out = []
        for name in names:
            h = self.hierarchies[name]
            fn = {"parent": h.parent, "child": h.children, "sibling": h.siblings}[kind]
            for target, conf in fn(source, is_entity):
                out.append(Relationship(source, target, kind, conf, {"hierarchy": name, "source": h.source}))
        return out

    # ------------------------------------------------------------------------------------------
    # hierarchies

    def create_hierarchy(
        self,
        entities: Iterable[Entity | str] | None = None,
        hierarchy_type: str = "cluster",
        levels: int | list[str] | None = None,
        modality: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Build a hierarchy over ``entities`` (default: all) and keep it under ``hierarchy_type``.

        ``levels`` a list of ``hierarchy_info`` names: the declared hierarchy (any order; sorted
        coarse -> fine). ``levels`` an int or None: detected by clustering the ``modality``
        vectors (see :mod:`ejc.cube.hierarchy`; None also detects how many levels); the levels
        are named ``"<hierarchy_type>.<i>"`` (0 = coarsest) and written into each entity's
        ``hierarchy_info``, so ``find_similar(filter=...)`` can use them. ``options`` go to
        :func:`~ejc.cube.hierarchy.detect_hierarchy` (``min_gap_ratio``, ``sample_size``, ...).
        Entity objects not yet in the cube are added. A hierarchy is a snapshot: entities added
        or removed later are not in it until it is created again. Returns :meth:`Hierarchy.to_dict`.
        """
        if not isinstance(hierarchy_type, str) or not hierarchy_type or "=" in hierarchy_type:
            raise CubeError(f"hierarchy_type must be a non-empty name without '=', got {hierarchy_type!r}")
        if entities is None:
            ids = list(self._records)
        else:
            items = list(entities)
            new = [e for e in items if isinstance(e, Entity) and e.id not in self._records]
            if new:
                self.add_entities(new)
            ids = [e.id if isinstance(e, Entity) else str(e) for e in items]
            for i in ids:
                self._record(i)
        if isinstance(levels, (list, tuple)):
            if options:
                raise CubeError(f"options {sorted(options)} only apply to detected hierarchies (levels=None or an int)")
            h = declared_hierarchy({i: self._records[i].hierarchy_info for i in ids}, [str(x) for x in levels], hierarchy_type)
        else:
            modality = self._pick_modality(modality)
            ix = self._index(modality)
            have = [i for i in ids if modality in self._records[i].modalities]
            h = detect_hierarchy(have, ix.get(have), hierarchy_type, levels, self.metric, **options)
            for lv in h.levels:
                for eid, v in h.values[lv].items():
                    rec = self._records[eid]
                    self._unindex_levels(eid, rec.hierarchy_info)
                    rec.hierarchy_info[lv] = v
                    self._index_levels(eid, rec.hierarchy_info)
        self.hierarchies[hierarchy_type] = h
        self._changed()
        return h.to_dict()

    # ------------------------------------------------------------------------------------------
    # transforms between spaces

    def add_model(self, name: str, model: Any = None, source_space: str | None = None, target_space: str | None = None, error: float | None = None) -> None:
        """Register a transform ``source_space -> target_space`` under ``name``.

        ``model``: a callable ``[n, d_s] -> [n, d_t]`` or a ``torch.nn.Module``; None builds the
        one registered with ``@register_model(name)``. Spaces default to the registration's or
        the model's ``source_space`` / ``target_space`` attributes. ``error`` (FVU, lower is
        better) ranks it in :meth:`find_path`; None measures it on the entities present in both
        spaces when first needed.
        """
        reg = MODEL_FACTORIES.get(name, {})
        if model is None:
            if not reg:
                raise CubeError(f"no model given and none registered as {name!r}; pass model= or use @register_model({name!r})")
            model = reg["factory"]
        source_space = source_space or reg.get("source_space") or getattr(model, "source_space", None)
        target_space = target_space or reg.get("target_space") or getattr(model, "target_space", None)
        if not source_space or not target_space:
            raise CubeError(f"model {name!r}: say which spaces it joins (source_space=..., target_space=...)")
        if isinstance(model, type):
            model = model(input_dim=self.dim(source_space), output_dim=self.dim(target_space))
        if not callable(model):
            raise CubeError(f"model {name!r} is not callable (got {type(model).__name__})")
        self.transforms.add(TransformEntry(name, source_space, target_space, model, None if error is None else float(error), "user"))
        self._changed()

    register_model = add_model

    def fit_transform(
        self,
        source_space: str,
        target_space: str,
        method: str = "auto",
        holdout: float = 0.2,
        entity_ids: Iterable[str] | None = None,
        name: str | None = None,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Fit a transform from entities present in both spaces; error measured on held-out pairs.

        ``method``: ``"linear"`` (least squares), ``"procrustes"`` (scaled orthogonal) or
        ``"auto"`` (the one with the lower held-out error). ``entity_ids`` restricts the pairs.
        The final map is refitted on all pairs. Returns the transform's description.
        """
        src, tgt = self._index(source_space), self._index(target_space)
        pool = self._records if entity_ids is None else [str(i) for i in entity_ids]
        both = [i for i in pool if source_space in self._record(i).modalities and target_space in self._records[i].modalities]
        X, Y = src.get(both), tgt.get(both)
        lin, err, info = fit_pairs(X, Y, method, holdout, seed)
        entry = TransformEntry(name or f"{source_space}->{target_space}", source_space, target_space, lin, err, lin.method, info)
        self.transforms.add(entry)
        self._changed()
        return entry.describe()

    def _error(self, e: TransformEntry) -> float:
        if e.error is not None:
            return e.error
        cached = e.info.get("measured")
        if cached and cached[0] == self.version:
            return cached[1]
        both = [i for i, r in self._records.items() if e.source in r.modalities and e.target in r.modalities]
        if len(both) < 2:
            raise CubeError(f"transform {e.name!r} has no error and fewer than 2 entities have both {e.source!r} and {e.target!r} "
                            "vectors to measure it on; pass error= to add_model")
        err = fvu(apply_model(e.fn, self._indices[e.source].get(both), e.name), self._indices[e.target].get(both))
        e.info["measured"] = (self.version, err)
        return err

    def find_path(self, source_space: str, target_space: str) -> list[str]:
        """Names of the transform chain from one space to another with the lowest total error."""
        return self.transforms.find_path(source_space, target_space, self._error)

    def transform(self, vector: np.ndarray, source_space: str, target_space: str) -> np.ndarray:
        """Carry ``vector`` ([d_s] or [n, d_s]) into ``target_space`` along :meth:`find_path`."""
        x = np.asarray(vector, np.float32)
        single = x.ndim == 1
        X = x[None, :] if single else x
        if X.ndim != 2 or X.shape[0] == 0:
            raise CubeError(f"vector must be [d] or [n, d], got shape {tuple(x.shape)}")
        if source_space in self.modalities and X.shape[1] != self.dim(source_space):
            raise CubeError(f"vector has dimension {X.shape[1]} but {source_space!r} has dimension {self.dim(source_space)}")
        if not np.isfinite(X).all():
            raise CubeError("vector contains NaN or infinite values")
        out = self.transforms.apply(X, self.find_path(source_space, target_space))
        return out[0] if single else out

    # ------------------------------------------------------------------------------------------
    # behaviour embeddings

    def add_behaviour(self, model: Any, sequences: Iterable[Any], modality: str = "behaviour", batch_size: int = 32) -> int:
        """Embed each entity's event sequence with an ``EventJEPA`` and store it as ``modality``.

        Entity ids are the sequences' ids; existing entities keep their other modalities, new
        ids become entities. Returns the number of entities embedded.
        """
        seqs = list(sequences)
        ids = [str(s.id) for s in seqs]
        if len(set(ids)) != len(ids):
            raise CubeError("sequence ids repeat; give each entity one sequence")
        if not seqs:
            return 0
        vecs = model.embed_sequences(seqs, batch_size=batch_size)
        return self.set_embeddings(modality, ids, vecs)

    # ------------------------------------------------------------------------------------------
    # persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the cube as a directory (layout in the module docstring), replacing ``path`` atomically.

        User-supplied transforms are not saved (their code cannot be stored without pickling):
        the manifest lists them under ``unsaved_models``; add them again after loading.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        version = self.version
        try:
            ids = list(self._records)
            try:
                meta = [json.dumps(self._records[i].metadata, sort_keys=True, allow_nan=False) for i in ids]
            except (TypeError, ValueError) as e:
                raise CubeError(f"entity metadata must be JSON-serialisable to save the cube ({e})") from e
            table = pa.table({
                "id": pa.array(ids, pa.string()),
                "hierarchy_info": pa.array([list(self._records[i].hierarchy_info.items()) for i in ids], pa.map_(pa.string(), pa.string())),
                "metadata": pa.array(meta, pa.string()),
            })
            pq.write_table(table, tmp / "entities.parquet")
            mods = {}
            for j, m in enumerate(self.modalities):
                rel = f"modalities/m{j:03d}"
                self._indices[m].save(tmp / rel, model_version=version)
                mods[m] = {"dir": rel, "dim": self._indices[m].dim, "count": len(self._indices[m])}
            arrays: dict[str, np.ndarray] = {}
            transforms, unsaved = [], []
            for e in self.transforms.entries():
                if isinstance(e.fn, LinearMap):
                    key = f"t{len(arrays) // 2:03d}"
                    arrays[f"{key}.W"], arrays[f"{key}.b"] = e.fn.W, e.fn.b
                    info = {k: v for k, v in e.info.items() if k != "measured"}
                    transforms.append({**e.describe(), "info": info, "arrays": key})
                else:
                    unsaved.append({"name": e.name, "source": e.source, "target": e.target, "error": e.error})
            np.savez(tmp / "transforms.npz", **arrays)
            state = {
                "cooccurrence": self.cooccurrence.to_dict() if self.cooccurrence else None,
                "min_support": self.min_support,
                "hierarchies": {k: h.to_dict() for k, h in self.hierarchies.items()},
                "transforms": transforms,
            }
            (tmp / "state.json").write_text(json.dumps(state, allow_nan=False))
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "ejc_version": _ejc_version(),
                "version": version,
                "metric": self.metric,
                "index_kind": self.index_kind,
                "index_options": self.index_options,
                "entities": len(ids),
                "modalities": mods,
                "transforms": len(transforms),
                "unsaved_models": unsaved,
                "files": {f: sha256_file(tmp / f) for f in ("entities.parquet", "state.json", "transforms.npz")},
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
            replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> EmbeddingCube:
        """Load a cube written by :meth:`save`; refuses missing, corrupted or foreign files.

        ``mmap``: memory-map the indices read-only (serving many replicas); the cube can then
        be searched but not changed.
        """
        import pyarrow.parquet as pq

        p = Path(path)
        mf = p / "manifest.json"
        if not mf.is_file():
            raise CubeError(f"{p}: not a saved cube (no manifest.json); write one with EmbeddingCube.save()")
        try:
            m = json.loads(mf.read_text())
        except (OSError, ValueError) as e:
            raise CubeError(f"{mf}: unreadable manifest ({e}); the cube is corrupted, save it again") from e
        if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
            raise CubeError(f"{mf}: not an {FORMAT} manifest of format version {FORMAT_VERSION}; save the cube again with this ejc version")
        for f, digest in m["files"].items():
            if not (p / f).is_file():
                raise CubeError(f"{p / f}: missing file of a saved cube; restore it or save the cube again")
            if sha256_file(p / f) != digest:
                raise CubeError(f"{p / f}: SHA-256 does not match the manifest (corrupted); save the cube again")
        cube = cls(m["metric"], m["index_kind"], **m["index_options"])
        table = pq.read_table(p / "entities.parquet")
        ids = table.column("id").to_pylist()
        infos = table.column("hierarchy_info").to_pylist()
        metas = table.column("metadata").to_pylist()
        for i, info, meta in zip(ids, infos, metas):
            cube._records[i] = _Record(dict(info or []), json.loads(meta))
            cube._index_levels(i, cube._records[i].hierarchy_info)
        for mod, d in m["modalities"].items():
            ix = VectorIndex.load(p / d["dir"], mmap=mmap, dim=d["dim"])
            if len(ix) != d["count"] or ix.model_version != m["version"]:
                raise CubeError(f"{p / d['dir']}: index of modality {mod!r} does not belong to this cube (count or version differs); save the cube again")
            cube._indices[mod] = ix
            for i in ix.ids():
                if i not in cube._records:
                    raise CubeError(f"{p / d['dir']}: holds entity {i!r} missing from entities.parquet; the cube is corrupted")
                cube._records[i].modalities.add(mod)
        state = json.loads((p / "state.json").read_text())
        cube.cooccurrence = Cooccurrence.from_dict(state["cooccurrence"]) if state["cooccurrence"] else None
        cube.min_support = int(state["min_support"])
        cube.hierarchies = {k: Hierarchy.from_dict(h) for k, h in state["hierarchies"].items()}
        with np.load(p / "transforms.npz", allow_pickle=False) as z:
            for t in state["transforms"]:
                lin = LinearMap(z[f"{t['arrays']}.W"], z[f"{t['arrays']}.b"], t["kind"])
                cube.transforms.add(TransformEntry(t["name"], t["source"], t["target"], lin, t["error"], t["kind"], t["info"]))
        cube.missing_models = list(m.get("unsaved_models", []))
        cube._version = m["version"]
        return cube

    def __repr__(self) -> str:
        return f"EmbeddingCube(entities={len(self)}, modalities={self.modalities}, metric={self.metric!r})"


def _ejc_version() -> str:
    from ejc import __version__

    return __version__


__all__ = ["EmbeddingCube"]
