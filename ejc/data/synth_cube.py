"""Synthetic entities for the cube, with exact ground truth: the data behind ``ejc synth --cube``.

Legend: ``N`` entities, ``C`` categories, ``S`` subcategories per category, ``d`` the dimension
of the base space.

What is planted
---------------
* **Hierarchy** (2 levels): categories ``c0..`` and subcategories ``c0.s0, ..``. In the base
  space (the first modality, default ``text``) an entity is ``category centre (norm
  category_scale) + subcategory offset (norm subcategory_scale) + entity noise (expected norm
  entity_noise)``, all in random directions, so the levels are visible to clustering.
  Entities are spread over subcategories uniformly at random (each gets at least
  ``min_per_subcategory``).
* **Spaces** related by hidden noisy linear maps: every further modality ``m`` is
  ``A_m x + e`` with ``A_m`` a random Gaussian ``[d_m, d]`` matrix (not orthogonal), ``x`` the
  base vector and ``e`` Gaussian noise of expected norm ``map_noise * |A_m x|``. A fraction
  ``1 - coverage[m]`` of entities has no vector in ``m``.
* **Similar pairs**: the target is a copy of the source's base vector plus noise of expected
  norm ``similar_noise`` (same subcategory), mapped into every space with fresh map noise.
* **Complementary pairs**: two entities of different categories that co-occur in sessions.
  Sessions (the event table) hold ``session_length`` distinct entities drawn by popularity
  (Zipf weights ``rank ** -popularity_exponent``); when a member of a complementary pair is in
  a session, its partner is inserted too with probability ``complement_prob``.
  Similar and complementary pairs are disjoint: each entity is in at most one planted pair.

Files (``write_synth_cube``): ``entities.parquet`` (``id``, ``category``, ``subcategory``, one
``list<float32>`` column per modality, null where absent), ``events.parquet`` (sessions in
:data:`~ejc.data.schema.EVENT_SCHEMA`: ``entity_id`` = session, ``event_type`` = entity id,
increasing timestamps, no vectors) and ``truth.json``::

    {"seed", "num_entities", "config", "modalities": {name: dim}, "base_modality",
     "hierarchy": {"levels": ["category", "subcategory"], "children": {c: [s, ..]}, "parent": {s: c}},
     "entities": [{"id", "category", "subcategory", "modalities": [..]}],
     "relationships": [{"source", "target", "type": "similar" | "complementary"}],
     "maps": {modality: {"from": base, "matrix": [[..]]}}, "sessions": int}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ejc.data.schema import EVENT_SCHEMA
from ejc.errors import ConfigError


@dataclass
class CubeSynthConfig:
    """What ``generate_cube`` draws from (defaults: 5 categories x 4 subcategories, 2 spaces)."""

    num_categories: int = 5
    subcategories_per_category: int = 4
    min_per_subcategory: int = 3
    modalities: dict[str, int] = field(default_factory=lambda: {"text": 32, "image": 32})
    coverage: dict[str, float] = field(default_factory=dict)  # modality -> fraction of entities with it (default 1)
    category_scale: float = 1.0
    subcategory_scale: float = 0.5
    entity_noise: float = 0.3
    map_noise: float = 0.15
    similar_fraction: float = 0.05  # planted similar pairs per entity
    similar_noise: float = 0.1
    complementary_fraction: float = 0.05  # planted complementary pairs per entity
    sessions_per_entity: float = 8.0
    session_length: tuple[int, int] = (3, 8)
    popularity_exponent: float = 0.5
    complement_prob: float = 0.8
    session_gap_s: float = 30.0

    def validate(self, num_entities: int) -> None:
        p: list[str] = []
        if self.num_categories < 2 or self.subcategories_per_category < 2:
            p.append("num_categories and subcategories_per_category must be >= 2 (a 2-level hierarchy)")
        subs = self.num_categories * self.subcategories_per_category
        if num_entities < subs * self.min_per_subcategory:
            p.append(f"num_entities must be >= {subs * self.min_per_subcategory} ({subs} subcategories x min_per_subcategory), got {num_entities}")
        if not self.modalities or any(int(d) < 2 for d in self.modalities.values()):
            p.append("modalities must name at least one space, each of dimension >= 2")
        unknown = sorted(set(self.coverage) - set(self.modalities))
        if unknown:
            p.append(f"coverage names unknown modalities {unknown}")
        if any(not 0.0 < c <= 1.0 for c in self.coverage.values()):
            p.append("coverage fractions must be in (0, 1]")
        if 2 * (self.similar_fraction + self.complementary_fraction) > 1.0:
            p.append("similar_fraction + complementary_fraction must leave each entity in at most one pair (sum <= 0.5)")
        lo, hi = self.session_length
        if not 2 <= lo <= hi:
            p.append(f"session_length must satisfy 2 <= min <= max, got {self.session_length}")
        if not 0.0 <= self.complement_prob <= 1.0:
            p.append(f"complement_prob must be in [0, 1], got {self.complement_prob}")
        if p:
            raise ConfigError(p)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["session_length"] = list(self.session_length)
        return d


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def generate_cube(num_entities: int = 400, seed: int = 0, config: CubeSynthConfig | None = None) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """``(entities table, session event table, truth)``; deterministic in ``(num_entities, seed, config)``."""
    cfg = config or CubeSynthConfig()
    N = int(num_entities)
    cfg.validate(N)
    rng = np.random.default_rng([seed, 5])
    C, S = cfg.num_categories, cfg.subcategories_per_category
    mods = list(cfg.modalities)
    base, d = mods[0], int(cfg.modalities[mods[0]])
    ids = [f"i{j:05d}" for j in range(N)]
    # hierarchy: everyone's subcategory, at least min_per_subcategory each
    need = np.repeat(np.arange(C * S), cfg.min_per_subcategory)
    sub = np.concatenate([need, rng.integers(0, C * S, N - len(need))])
    sub = sub[rng.permutation(N)]
    cat = sub // S
    cat_c = _unit(rng, C, d) * cfg.category_scale
    sub_c = _unit(rng, C * S, d) * cfg.subcategory_scale
    X = cat_c[cat] + sub_c[sub] + cfg.entity_noise * rng.standard_normal((N, d)) / np.sqrt(d)  # [N, d]
    # planted pairs: disjoint, similar within a subcategory, complementary across categories
    free = list(rng.permutation(N))
    used: set[int] = set()
    rels: list[dict[str, Any]] = []
    sim_pairs: list[tuple[int, int]] = []
    for _ in range(int(round(cfg.similar_fraction * N))):
        a = next((i for i in free if i not in used), None)
        if a is None:
            break
        b = next((j for j in free if j not in used and j != a and sub[j] == sub[a]), None)
        if b is None:
            used.add(a)
            continue
        used.update((a, b))
        sim_pairs.append((a, b))
        X[b] = X[a] + cfg.similar_noise * rng.standard_normal(d) / np.sqrt(d)
        rels.append({"source": ids[a], "target": ids[b], "type": "similar"})
    comp_pairs: list[tuple[int, int]] = []
    for _ in range(int(round(cfg.complementary_fraction * N))):
        a = next((i for i in free if i not in used), None)
        if a is None:
            break
        b = next((j for j in free if j not in used and j != a and cat[j] != cat[a]), None)
        if b is None:
            used.add(a)
            continue
        used.update((a, b))
        comp_pairs.append((a, b))
        rels.append({"source": ids[a], "target": ids[b], "type": "complementary"})
    # spaces
    vectors: dict[str, np.ndarray] = {base: X}
    present: dict[str, np.ndarray] = {}
    maps: dict[str, Any] = {}
    for m in mods:
        if m != base:
            dm = int(cfg.modalities[m])
            A = rng.standard_normal((dm, d)) / np.sqrt(d)
            Y = X @ A.T
            scale = np.linalg.norm(Y, axis=1, keepdims=True) * cfg.map_noise / np.sqrt(dm)
            vectors[m] = Y + scale * rng.standard_normal((N, dm))
            maps[m] = {"from": base, "matrix": A.tolist()}
        present[m] = rng.random(N) < cfg.coverage.get(m, 1.0)
    # sessions
    pop = 1.0 / (1.0 + rng.permutation(N)) ** cfg.popularity_exponent
    pop /= pop.sum()
    partner = {a: b for a, b in comp_pairs} | {b: a for a, b in comp_pairs}
    n_sessions = int(round(cfg.sessions_per_entity * N))
    lo, hi = cfg.session_length
    sess_ids, items, times = [], [], []
    t0 = 1.7e9
    for s in range(n_sessions):
        L = int(rng.integers(lo, hi + 1))
        basket = list(rng.choice(N, size=L, replace=False, p=pop))
        for it in list(basket):
            q = partner.get(int(it))
            if q is not None and q not in basket and rng.random() < cfg.complement_prob:
                basket.insert(int(rng.integers(0, len(basket) + 1)), q)
        start = t0 + s * 3600.0
        for j, it in enumerate(basket):
            sess_ids.append(f"s{s:06d}")
            items.append(ids[int(it)])
            times.append(start + j * cfg.session_gap_s)
    n_ev = len(items)
    events = pa.table({
        "entity_id": pa.array(sess_ids, pa.string()),
        "timestamp": pa.array(times, pa.float64()),
        "event_type": pa.array(items, pa.string()),
        "modality": pa.array(["default"] * n_ev, pa.string()),
        "embedding": pa.nulls(n_ev, pa.list_(pa.float32())),
        "text": pa.nulls(n_ev, pa.string()),
        "attributes": pa.nulls(n_ev, pa.map_(pa.string(), pa.string())),
        "label": pa.nulls(n_ev, pa.string()),
    }).cast(EVENT_SCHEMA)
    cat_names = [f"c{c}" for c in range(C)]
    sub_names = [f"c{c}.s{k}" for c in range(C) for k in range(S)]
    cols: dict[str, pa.Array] = {
        "id": pa.array(ids, pa.string()),
        "category": pa.array([cat_names[c] for c in cat], pa.string()),
        "subcategory": pa.array([sub_names[k] for k in sub], pa.string()),
    }
    for m in mods:
        V = vectors[m].astype(np.float32)
        cols[m] = pa.array([V[i].tolist() if present[m][i] else None for i in range(N)], pa.list_(pa.float32()))
    entities = pa.table(cols)
    truth = {
        "seed": int(seed),
        "num_entities": N,
        "config": cfg.to_dict(),
        "modalities": {m: int(v) for m, v in cfg.modalities.items()},
        "base_modality": base,
        "hierarchy": {
            "levels": ["category", "subcategory"],
            "children": {cat_names[c]: sub_names[c * S:(c + 1) * S] for c in range(C)},
            "parent": {sub_names[k]: cat_names[k // S] for k in range(C * S)},
        },
        "entities": [{"id": ids[i], "category": cat_names[cat[i]], "subcategory": sub_names[sub[i]],
                      "modalities": [m for m in mods if present[m][i]]} for i in range(N)],
        "relationships": rels,
        "maps": maps,
        "sessions": n_sessions,
    }
    return entities, events, truth


def write_synth_cube(out_dir: str | Path, num_entities: int = 400, seed: int = 0, config: CubeSynthConfig | None = None) -> dict[str, Any]:
    """Write ``entities.parquet``, ``events.parquet`` and ``truth.json`` under ``out_dir``; return counts + paths."""
    entities, events, truth = generate_cube(num_entities, seed, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"entities_path": out / "entities.parquet", "events_path": out / "events.parquet", "truth_path": out / "truth.json"}
    pq.write_table(entities, paths["entities_path"])
    pq.write_table(events, paths["events_path"])
    paths["truth_path"].write_text(json.dumps(truth, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    kinds: dict[str, int] = {}
    for r in truth["relationships"]:
        kinds[r["type"]] = kinds.get(r["type"], 0) + 1
    return {"entities": truth["num_entities"], "sessions": truth["sessions"], "events": events.num_rows,
            "modalities": truth["modalities"], "relationships": dict(sorted(kinds.items())), **{k: str(v) for k, v in paths.items()}}


__all__ = ["CubeSynthConfig", "generate_cube", "write_synth_cube"]
