"""Hierarchies over entities: declared (from ``hierarchy_info``) or detected by clustering.

A :class:`Hierarchy` has levels ordered coarse -> fine; each entity has one value per level and
each value has one parent value at the level above. A *node* is written ``"level=value"``
(``"category=electronics"``). Relationships read from it: an entity's ``parent`` is its node at
the finest level, a node's ``parent`` the node above, ``child`` goes down (to entities below
the finest level), ``sibling`` = same parent.

Detection (``detect_hierarchy``), legend ``n`` entities, ``d`` dimension:

1. Vectors are L2-normalised for the cosine metric (kept as they are otherwise).
2. Ward agglomerative clustering of (a seeded sample of at most ``sample_size``) entities gives
   a dendrogram whose merge heights ``h_1 >= h_2 >= ..`` (``h_j`` merges ``j+1`` clusters into
   ``j``) grow slowly inside a natural group and jump when two natural groups are merged.
3. The *gap ratio* of a cut into ``k`` clusters is ``h_{k-1} / h_k``: how much dearer the next
   merge is than the last one. Levels are the cuts with the largest gap ratios: all cuts with a
   ratio of at least ``min_gap_ratio`` (default 1.5; on unstructured Gaussian data the largest
   ratio stays under about 1.2) when ``levels`` is None, or the ``levels`` largest otherwise.
   Only ``2 <= k <= n / min_cluster_size`` is considered. Ward cuts are nested, so the levels
   form a tree.
4. Entities outside the sample go to the nearest finest-level centroid (and its ancestors).
5. Each level records its gap ratio and silhouette; each entity's confidence at a level is
   ``(1 + s) / 2`` with ``s`` its silhouette value there (entities outside the sample get the
   mean confidence of their cluster).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ejc.errors import CubeError


def node_id(level: str, value: str) -> str:
    return f"{level}={value}"


def split_node(node: str) -> tuple[str, str]:
    level, sep, value = node.partition("=")
    if not sep:
        raise CubeError(f"{node!r} is not a hierarchy node id (expected 'level=value', e.g. 'category=electronics')")
    return level, value


@dataclass
class Hierarchy:
    """A tree of levels over entities. ``values[level][entity_id]`` is the entity's value there."""

    type: str
    levels: list[str]  # coarse -> fine
    source: str  # "declared" | "detected"
    values: dict[str, dict[str, str]]  # level -> entity id -> value
    parents: dict[str, dict[str, str]]  # level -> value -> parent value (level above); empty for levels[0]
    confidence: dict[str, dict[str, float]] = field(default_factory=dict)  # level -> entity -> [0, 1]
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # level -> {clusters, gap_ratio, silhouette}
    _members: dict[str, dict[str, list[str]]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._members = {}
        for level in self.levels:
            m: dict[str, list[str]] = defaultdict(list)
            for eid, v in self.values[level].items():
                m[v].append(eid)
            self._members[level] = {v: sorted(ids) for v, ids in m.items()}

    # -- queries -----------------------------------------------------------------------------
    def nodes(self, level: str) -> list[str]:
        return [node_id(level, v) for v in sorted(self._members[level])]

    def members(self, node: str) -> list[str]:
        """Entity ids under ``node`` (at any depth)."""
        level, value = self._check_node(node)
        return list(self._members[level].get(value, []))

    def entity_confidence(self, entity_id: str, level: str) -> float:
        return float(self.confidence.get(level, {}).get(entity_id, 1.0))

    def parent(self, item: str, is_entity: bool) -> list[tuple[str, float]]:
        if is_entity:
            fine = self.levels[-1]
            v = self.values[fine].get(item)
            return [] if v is None else [(node_id(fine, v), self.entity_confidence(item, fine))]
        level, value = self._check_node(item)
        i = self.levels.index(level)
        if i == 0:
            return []
        return [(node_id(self.levels[i - 1], self.parents[level][value]), 1.0)]

    def children(self, item: str, is_entity: bool) -> list[tuple[str, float]]:
        if is_entity:
            return []
        level, value = self._check_node(item)
        i = self.levels.index(level)
        if i == len(self.levels) - 1:
            return [(e, self.entity_confidence(e, level)) for e in self._members[level].get(value, [])]
        below = self.levels[i + 1]
        return [(node_id(below, v), 1.0) for v, p in sorted(self.parents[below].items()) if p == value]

    def siblings(self, item: str, is_entity: bool) -> list[tuple[str, float]]:
        if is_entity:
            fine = self.levels[-1]
            v = self.values[fine].get(item)
            if v is None:
                return []
            mine = self.entity_confidence(item, fine)
            return [(e, min(mine, self.entity_confidence(e, fine))) for e in self._members[fine][v] if e != item]
        level, value = self._check_node(item)
        i = self.levels.index(level)
        if i == 0:
            return [(n, 1.0) for n in self.nodes(level) if n != item]
        up = self.parents[level][value]
        return [(node_id(level, v), 1.0) for v, p in sorted(self.parents[level].items()) if p == up and v != value]

    def _check_node(self, node: str) -> tuple[str, str]:
        level, value = split_node(node)
        if level not in self._members or value not in self._members[level]:
            raise CubeError(f"hierarchy {self.type!r} has no node {node!r}; its levels are {self.levels}")
        return level, value

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view: levels, per-level scores, nodes with parents and sizes, assignments."""
        nodes = {}
        for i, level in enumerate(self.levels):
            for v, ids in sorted(self._members[level].items()):
                parent = node_id(self.levels[i - 1], self.parents[level][v]) if i else None
                nodes[node_id(level, v)] = {"level": level, "value": v, "parent": parent, "size": len(ids)}
        return {
            "type": self.type,
            "levels": list(self.levels),
            "source": self.source,
            "scores": self.scores,
            "nodes": nodes,
            "values": self.values,
            "parents": self.parents,
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hierarchy:
        return cls(type=d["type"], levels=list(d["levels"]), source=d["source"], values=d["values"], parents=d["parents"],
                   confidence=d.get("confidence", {}), scores=d.get("scores", {}))


def declared_hierarchy(info: dict[str, dict[str, str]], levels: list[str], hierarchy_type: str) -> Hierarchy:
    """A hierarchy read from ``hierarchy_info`` (``info``: entity id -> {level: value}).

    ``levels`` may come in any order: they are sorted coarse -> fine by their number of distinct
    values. One name that no entity has (seed style: ``["product", "subcategory", "category"]``)
    is taken as the entity level itself when it is the finest. Every value must have one parent.
    """
    present = {k for h in info.values() for k in h}
    unknown = [lv for lv in levels if lv not in present]
    counts = {lv: len({h[lv] for h in info.values() if lv in h}) for lv in levels if lv in present}
    known = sorted(counts, key=lambda lv: (counts[lv], levels.index(lv)))
    if not known or len(unknown) > 1:
        raise CubeError(f"hierarchy levels {unknown} appear in no entity's hierarchy_info; known levels: {sorted(present)}")
    missing = [eid for eid, h in info.items() if not all(lv in h for lv in known)]
    if missing:
        raise CubeError(f"{len(missing)} entities lack some of the levels {known} (e.g. {missing[:3]}); give them values or pass entities=[...]")
    values = {lv: {eid: h[lv] for eid, h in info.items()} for lv in known}
    parents: dict[str, dict[str, str]] = {known[0]: {}}
    for up, lv in zip(known, known[1:]):
        seen: dict[str, set[str]] = defaultdict(set)
        for eid in info:
            seen[values[lv][eid]].add(values[up][eid])
        bad = {v: sorted(p) for v, p in seen.items() if len(p) > 1}
        if bad:
            v, ps = next(iter(bad.items()))
            raise CubeError(f"levels do not nest: {lv}={v!r} sits under several {up} values {ps}; make values unique per parent (e.g. '{ps[0]}/{v}')")
        parents[lv] = {v: next(iter(p)) for v, p in seen.items()}
    h = Hierarchy(type=hierarchy_type, levels=known, source="declared", values=values, parents=parents)
    h.scores = {lv: {"clusters": counts[lv]} for lv in known}
    if unknown:
        h.scores["entity_level"] = {"name": unknown[0]}
    return h


def gap_ratios(X: np.ndarray, min_cluster_size: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ward linkage ``Z`` of ``X`` [n, d], candidate cluster counts ``ks`` and their gap ratios."""
    from scipy.cluster.hierarchy import linkage

    n = len(X)
    Z = linkage(X.astype(np.float64), method="ward")
    h = Z[::-1, 2]  # h[j]: the merge that takes j + 2 clusters to j + 1
    ks = np.arange(2, max(2, n // max(1, min_cluster_size)) + 1)
    ks = ks[ks <= n - 1]
    ratio = h[ks - 2] / np.maximum(h[ks - 1], 1e-12)
    return Z, ks, ratio


def detect_hierarchy(
    ids: list[str],
    X: np.ndarray,
    hierarchy_type: str = "cluster",
    levels: int | None = None,
    metric: str = "cosine",
    min_gap_ratio: float = 1.5,
    max_levels: int = 4,
    min_cluster_size: int = 2,
    sample_size: int = 2000,
    seed: int = 0,
) -> Hierarchy:
    """Detect nested clusters in ``X`` [n, d] (rows = ``ids``); see the module docstring."""
    from scipy.cluster.hierarchy import fcluster
    from sklearn.metrics import silhouette_samples

    n = len(ids)
    if n < 4:
        raise CubeError(f"detecting a hierarchy needs at least 4 entities with vectors, got {n}")
    if levels is not None and levels < 1:
        raise CubeError(f"levels must be >= 1 (or a list of hierarchy_info names), got {levels}")
    Xw = _prepare(X, metric)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=sample_size, replace=False)) if n > sample_size else np.arange(n)
    Xs = Xw[sample]
    Z, ks, ratio = gap_ratios(Xs, min_cluster_size)
    order = np.argsort(-ratio, kind="stable")
    if levels is None:
        chosen = [int(ks[i]) for i in order[:max_levels] if ratio[i] >= min_gap_ratio]
        if not chosen:
            best = float(ratio[order[0]]) if len(order) else 0.0
            raise CubeError(f"no hierarchy found: the largest gap ratio is {best:.2f} < min_gap_ratio={min_gap_ratio}; "
                            "pass levels=N to force N levels, or lower min_gap_ratio")
    else:
        if len(ks) < levels:
            raise CubeError(f"cannot cut {len(Xs)} entities into {levels} levels of clusters of >= {min_cluster_size}")
        chosen = [int(ks[i]) for i in order[:levels]]
    chosen.sort()
    names = [f"{hierarchy_type}.{i}" for i in range(len(chosen))]
    labels = [fcluster(Z, k, criterion="maxclust") for k in chosen]  # per level, [n_sample] in 1..k
    # name values path-style: level 0 by size ("0", "1", ..), level i "<parent>.<j>"
    sample_values: list[np.ndarray] = []
    for i, lab in enumerate(labels):
        vals = np.empty(len(lab), dtype=object)
        if i == 0:
            ranked = [c for c, _ in Counter(lab.tolist()).most_common()]
            for j, c in enumerate(ranked):
                vals[lab == c] = str(j)
        else:
            prev = sample_values[-1]
            for pv in sorted(set(prev.tolist())):
                inside = prev == pv
                ranked = [c for c, _ in Counter(lab[inside].tolist()).most_common()]
                for j, c in enumerate(ranked):
                    vals[inside & (lab == c)] = f"{pv}.{j}"
        sample_values.append(vals)
    # assign everyone through the finest centroids
    fine = sample_values[-1]
    fine_names = sorted(set(fine.tolist()))
    cents = np.stack([Xs[fine == v].mean(0) for v in fine_names])
    nearest = np.argmin((cents**2).sum(1)[None, :] - 2.0 * Xw @ cents.T, axis=1) if n > len(sample) else None  # [n]
    values: dict[str, dict[str, str]] = {}
    parents: dict[str, dict[str, str]] = {}
    confidence: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[str, Any]] = {}
    sample_pos = {int(j): p for p, j in enumerate(sample)}
    for i, name in enumerate(names):
        sv = sample_values[i]
        # map each fine value to its value at this level
        fine_to_here = {v: sv[fine == v][0] for v in fine_names}
        col = {}
        for r in range(n):
            p = sample_pos.get(r)
            col[ids[r]] = str(sv[p]) if p is not None else str(fine_to_here[fine_names[int(nearest[r])]])
        values[name] = col
        if i == 0:
            parents[name] = {}
        else:
            up = sample_values[i - 1]
            parents[name] = {str(v): str(up[sv == v][0]) for v in set(sv.tolist())}
        codes = np.unique(sv, return_inverse=True)[1]
        sil = silhouette_samples(Xs, codes) if len(set(codes.tolist())) > 1 else np.zeros(len(Xs))
        conf_s = 0.5 * (1.0 + sil)
        by_value = {v: float(conf_s[sv == v].mean()) for v in set(sv.tolist())}
        confidence[name] = {ids[r]: float(conf_s[sample_pos[r]]) if r in sample_pos else by_value[col[ids[r]]] for r in range(n)}
        k = chosen[i]
        scores[name] = {"clusters": len(set(sv.tolist())), "gap_ratio": float(ratio[list(ks).index(k)]), "silhouette": float(sil.mean())}
    h = Hierarchy(type=hierarchy_type, levels=names, source="detected", values=values, parents=parents, confidence=confidence, scores=scores)
    h.scores["criterion"] = {"method": "ward gap ratio", "min_gap_ratio": min_gap_ratio, "sampled": int(len(sample)),
                             "top_gap_ratios": [[int(ks[i]), float(ratio[i])] for i in order[:8]]}
    return h


def _prepare(X: np.ndarray, metric: str) -> np.ndarray:
    X = np.asarray(X, np.float64)
    if metric == "cosine":
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return X


__all__ = ["Hierarchy", "declared_hierarchy", "detect_hierarchy", "gap_ratios", "node_id", "split_node"]
