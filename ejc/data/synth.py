"""Synthetic event logs with exact ground truth: the data behind ``ejc synth``.

Every capability of ejc (sequence understanding, prediction, anomalies, patterns, the cube) is
measured on this data, so the truth it records is exact: every index and timestamp in it is
read back from the generated table, and the generator checks the properties it promises.

Legend: ``N`` entities, ``n`` events of one entity, ``B`` background event types, ``K`` all
event types, ``d`` the dimension of one modality.

What is generated
-----------------
* ``K`` event types ``t00..t{K-1}``. The first ``B = K - 2`` are *background* types emitted
  by the class dynamics; ``t{K-2}`` is emitted only by planted ``periodic`` patterns and
  ``t{K-1}`` only by ``type`` anomalies.
* Classes ``c0..`` with subclasses ``c0.s0, c0.s1, ..``. A class is a Markov chain over the
  background types plus a gap (timing) profile. Every chain is doubly stochastic, so every
  class has the *same* (uniform) stationary type distribution: the bag of events, and so the
  mean of raw event embeddings, carries no class information; order and timing do. A class's
  chain is ``(1 - noise - w) P + w Q + noise U`` with ``P`` the class's successor cycle
  ``x -> sigma(sigma^-1(x) + 1)``, ``Q`` its skip ``x -> sigma(sigma^-1(x) + 2)`` (one type
  skipped) and ``U`` uniform; the subclass sets ``w`` (``subclass_skip_weights``).
  ``class_transitions`` lets classes share a chain: by default ``c0`` and ``c1`` have identical
  transitions and differ only in timing (regular vs bursty gaps). Because every step moves
  1 or 2 places along one cycle of ``B >= 9`` types, no loop shorter than 5 steps exists in a
  class chain except through the uniform noise, so background data holds no short cycles.
* Gaps between events are log-normal (a two-component mixture for the ``bursty`` profile),
  never below ``min_gap_s``; entity start times are spread uniformly over
  ``start_spread_days`` from ``epoch`` (2024-01-01 UTC). Timestamps are float64 epoch seconds.
* Modalities of different dimension (default behavior 16-d, text 24-d, image 32-d, image the
  rarest). Each event has one modality, drawn independently of everything else; its vector is
  the modality's unit-norm prototype for the event type (orthonormal when ``d >= K``) plus Gaussian noise of expected norm
  ``noise_scale`` (float32). Text-modality events carry ``text = "event tXX"``. A fraction of
  entities has a home location; their events carry ``attributes = {"x": .., "y": ..}``
  jittered around it, other events have null attributes.
* ``label`` is ``"anomaly"`` exactly at the planted anomalous events, ``"normal"`` elsewhere.

The table is sorted by ``entity_id`` (zero-padded ids ``e00000``, ..) and then by timestamp,
so an ``index`` in the truth is the position of the event among its entity's rows.

Truth layout (``truth.json``)
-----------------------------
::

    {
      "seed": int, "num_entities": int, "config": {SynthConfig as a dict}, "epoch": float,
      "modalities": {name: dim},
      "event_types": ["t00", ...], "background_types": [...],
      "special_types": {"periodic": "t10", "rare": "t11"},
      "timing": {profile name: {p_fast, fast_median_s, fast_sigma, median_s, sigma, mean_s}},
      "classes": {"c0": {"timing": "regular", "transition_structure": 0,
                         "subclasses": ["c0.s0", "c0.s1"]}, ...},
      "subclasses": {"c0.s0": {"class": "c0", "skip_weight": float,
                               "transition_matrix": [[B floats]] * B}, ...},
      "transition_structures": [{"successor": [B ints], "skip": [B ints]}, ...],
      "regime_transition_matrix": [[...]], "foreign_transition_matrix": [[...]],
      "prototypes": {modality: [[d floats]] * K},
      "hierarchy": {"levels": ["class", "subclass"], "children": {class: [subclass, ..]},
                    "parent": {subclass: class}},
      "entities": [{"id", "class", "subclass", "timing", "num_events", "start", "end",
                    "home": [x, y] | null, "anomalous_sequence": bool,
                    "num_anomalous_events": int, "patterns": [kind, ..],
                    "role": "base" | "similar_copy" | "complementary_follower"}],
      "patterns": [{"entity", "kind", "start", "end", "start_index", "end_index", ...}],
      "anomalous_events": [{"entity", "index", "kind", "timestamp", ...}],
      "anomalous_sequences": [{"entity", "kind"}],
      "relationships": [{"source", "target", "type", ...}]
    }

Pattern records (``start``/``end`` are timestamps, ``*_index`` final positions, inclusive):

* ``periodic``: the type ``event_type`` every ``period`` s (``period`` in ``periodic_periods_s``)
  with each event within ``jitter`` s of its slot ``start_time + k * period``; ``count``
  events at ``indices``. Background events interleave with them inside the span.
* ``burst``: ``count`` consecutive events (indices ``start_index..end_index``) with gaps in
  ``burst_gap_s``; ``end - start <= window`` (``burst_window_s``). Outside bursts no window
  of ``burst_window_s`` seconds holds ``burst_events[0]`` events (gaps never fall below
  ``min_gap_s``).
* ``cycle``: ``motif`` (3-4 distinct types) repeated ``repeats`` (>= 5) times exactly on
  ``start_index..end_index``; the events just outside do not extend the repetition. Outside
  cycles (and back-to-back periodic heartbeats) no 3- or 4-event period repeats 4 times.
* ``regime_change``: at ``time`` (the timestamp of event ``index``) gaps are multiplied by
  ``gap_factor`` (>= 6x up or down) and, when ``switched_transitions``, the chain switches from
  ``transitions_before`` to ``transitions_after``. ``start``..``end`` is the measurement window
  (``regime_window`` events on each side, no other planted thing inside); ``gap_ratio`` is the
  geometric-mean gap after / before measured on that window and ``median_gap_ratio`` the
  median ratio; both are >= ``regime_min_ratio`` (or <= its inverse).

Anomalous events: ``embedding`` (vector of norm ``embedding_anomaly_norm`` in a random
direction: at distance >= norm - 1 from every unit prototype), ``type`` (the rare type, never
emitted by any class), ``time`` (``gap`` s since the previous event, 100-300x the local mean
gap or under 0.1 s). Anomalous sequences (``shuffled``: same bag, order permuted;
``reversed``: time-reversed transitions; ``foreign``: a chain of no class) keep their nominal
class in ``entities`` but do not follow its dynamics; their events are labelled ``normal``.
Relationships: ``similar`` (target is a time-shifted copy of the source's background with
some types replaced, jittered gaps and fresh embedding noise; same class and subclass) and
``complementary`` (every target event follows a source event by ``delay_s`` in
``[min, max]``). Relationship members, anomalous sequences and entities with patterns are
disjoint, and relationship members never get time anomalies, so nothing planted leaks into
another entity unrecorded.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ejc.data.schema import EVENT_SCHEMA
from ejc.errors import ConfigError

EPOCH_2024 = 1704067200.0  # 2024-01-01T00:00:00Z
PATTERN_KINDS = ("periodic", "burst", "cycle", "regime_change")
ANOMALY_KINDS = ("embedding", "type", "time")
SEQUENCE_ANOMALY_KINDS = ("shuffled", "reversed", "foreign")
_DAY = 86400.0


@dataclass
class GapProfile:
    """Log-normal gaps in seconds; with ``p_fast > 0`` a mixture with a fast component."""

    median_s: float = 1200.0
    sigma: float = 0.5
    p_fast: float = 0.0
    fast_median_s: float = 60.0
    fast_sigma: float = 0.5

    @property
    def mean_s(self) -> float:
        slow = self.median_s * math.exp(self.sigma**2 / 2)
        fast = self.fast_median_s * math.exp(self.fast_sigma**2 / 2)
        return self.p_fast * fast + (1 - self.p_fast) * slow

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        u = rng.random(n)
        z = rng.standard_normal(n)
        fast = u < self.p_fast
        mu = np.where(fast, math.log(self.fast_median_s), math.log(self.median_s))
        sig = np.where(fast, self.fast_sigma, self.sigma)
        return np.exp(mu + sig * z)


def _default_timing() -> dict[str, GapProfile]:
    return {
        "regular": GapProfile(median_s=1200.0, sigma=0.25),
        "irregular": GapProfile(median_s=1200.0, sigma=0.9),
        "bursty": GapProfile(median_s=2400.0, sigma=0.7, p_fast=0.6, fast_median_s=60.0, fast_sigma=0.5),
    }


@dataclass
class SynthConfig:
    """Everything ``generate`` draws from. Defaults give ~200-event entities over a few days."""

    # types and classes
    num_event_types: int = 12  # t00..t11; the last two are reserved (periodic, rare)
    num_classes: int = 4
    subclasses_per_class: int = 2
    class_transitions: tuple[int, ...] = (0, 0, 1, 2)  # c0 and c1 share their chain
    class_timing: tuple[str, ...] = ("regular", "bursty", "irregular", "irregular")
    transition_noise: float = 0.3
    subclass_skip_weights: tuple[float, ...] = (0.0, 0.2)
    # lengths and time
    length_median: float = 195.0
    length_sigma: float = 0.35
    length_range: tuple[int, int] = (100, 400)
    timing: dict[str, GapProfile] = field(default_factory=_default_timing)
    min_gap_s: float = 5.0
    start_spread_days: float = 28.0
    epoch: float = EPOCH_2024
    # modalities and attributes
    modalities: dict[str, int] = field(default_factory=lambda: {"behavior": 16, "text": 24, "image": 32})
    modality_weights: dict[str, float] = field(default_factory=lambda: {"behavior": 0.5, "text": 0.35, "image": 0.15})
    noise_scale: float = 0.5
    coord_fraction: float = 0.5
    coord_extent: float = 100.0
    coord_jitter: float = 0.5
    # planted patterns
    pattern_fraction: float = 0.4
    second_pattern_prob: float = 0.3
    periodic_periods_s: tuple[float, ...] = (3600.0, 21600.0, 86400.0)
    periodic_count: tuple[int, int] = (5, 12)
    periodic_jitter: float = 0.01  # fraction of the period
    burst_events: tuple[int, int] = (20, 40)
    burst_gap_s: tuple[float, float] = (0.5, 1.5)
    burst_window_s: float = 60.0
    cycle_motif_len: tuple[int, int] = (3, 4)
    cycle_repeats: tuple[int, int] = (5, 8)
    regime_gap_factor: tuple[float, float] = (6.0, 12.0)
    regime_window: int = 30
    regime_switch_prob: float = 0.5
    regime_min_ratio: float = 4.0
    # anomalies
    anomaly_entity_fraction: float = 0.3
    anomaly_event_rate: tuple[float, float] = (0.01, 0.02)
    embedding_anomaly_norm: float = 3.0
    time_anomaly_factor: tuple[float, float] = (100.0, 300.0)
    time_anomaly_short_s: tuple[float, float] = (0.01, 0.1)
    anomalous_sequence_fraction: float = 0.04
    # related entities (pairs per entity)
    similar_fraction: float = 0.03
    complementary_fraction: float = 0.03
    similar_type_noise: float = 0.05
    similar_gap_jitter: float = 0.1
    similar_shift_days: tuple[float, float] = (1.0, 14.0)
    complementary_delay_s: tuple[float, float] = (5.0, 55.0)
    complementary_follow: tuple[float, float] = (0.7, 0.95)

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every problem at once."""
        p: list[str] = []
        if self.num_event_types < 11:
            p.append(f"num_event_types must be >= 11 (9 background types + 2 reserved), got {self.num_event_types}")
        if self.num_classes < 1 or self.subclasses_per_class < 1:
            p.append("num_classes and subclasses_per_class must be >= 1")
        if len(self.class_transitions) != self.num_classes:
            p.append(f"class_transitions needs one entry per class ({self.num_classes}), got {len(self.class_transitions)}")
        elif sorted(set(self.class_transitions)) != list(range(max(self.class_transitions) + 1)):
            p.append(f"class_transitions must number structures 0..k without gaps, got {self.class_transitions}")
        if len(self.class_timing) != self.num_classes:
            p.append(f"class_timing needs one entry per class ({self.num_classes}), got {len(self.class_timing)}")
        unknown = sorted(set(self.class_timing) - set(self.timing))
        if unknown:
            p.append(f"class_timing names profiles {unknown} missing from timing {sorted(self.timing)}")
        if len(self.subclass_skip_weights) != self.subclasses_per_class:
            p.append(f"subclass_skip_weights needs {self.subclasses_per_class} entries, got {len(self.subclass_skip_weights)}")
        if not 0 < self.transition_noise < 1:
            p.append(f"transition_noise must be in (0, 1), got {self.transition_noise}")
        if any(w < 0 or w + self.transition_noise >= 1 for w in self.subclass_skip_weights):
            p.append("each subclass skip weight must be >= 0 and leave the successor weight positive")
        lo, hi = self.length_range
        if not 10 <= lo <= hi:
            p.append(f"length_range must satisfy 10 <= min <= max, got {self.length_range}")
        if set(self.modalities) != set(self.modality_weights):
            p.append("modalities and modality_weights must name the same modalities")
        if any(int(d) < 1 for d in self.modalities.values()):
            p.append("every modality dimension must be >= 1")
        if any(w < 0 for w in self.modality_weights.values()) or sum(self.modality_weights.values()) <= 0:
            p.append("modality_weights must be non-negative with a positive sum")
        if self.min_gap_s * (self.burst_events[0] - 1) <= self.burst_window_s:
            p.append(
                f"min_gap_s * (burst_events[0] - 1) must exceed burst_window_s so that background "
                f"never looks like a burst (got {self.min_gap_s} * {self.burst_events[0] - 1} <= {self.burst_window_s})"
            )
        if self.burst_gap_s[1] * (self.burst_events[1] - 1) > self.burst_window_s:
            p.append("burst_gap_s[1] * (burst_events[1] - 1) must fit in burst_window_s")
        if self.burst_gap_s[1] >= self.min_gap_s:
            p.append("burst gaps must be shorter than min_gap_s")
        if not (3 <= self.cycle_motif_len[0] <= self.cycle_motif_len[1] <= 4):
            p.append(f"cycle_motif_len must lie within 3..4, got {self.cycle_motif_len}")
        if self.cycle_repeats[0] < 5:
            p.append(f"cycle_repeats must start at >= 5, got {self.cycle_repeats}")
        if self.regime_gap_factor[0] < self.regime_min_ratio * 1.25:
            p.append("regime_gap_factor[0] must comfortably exceed regime_min_ratio")
        if self.regime_window < 10:
            p.append("regime_window must be >= 10 events")
        if self.periodic_count[0] < 3:
            p.append("periodic_count must start at >= 3")
        if not 0 < self.periodic_jitter < 0.1:
            p.append("periodic_jitter must be in (0, 0.1)")
        if 2 * (self.similar_fraction + self.complementary_fraction) + self.anomalous_sequence_fraction > 1:
            p.append("relationship and anomalous-sequence fractions leave no entities")
        if self.complementary_delay_s[1] - self.complementary_delay_s[0] < 10.0 or self.complementary_delay_s[0] < 0:
            p.append(f"complementary_delay_s must be a non-negative range at least 10 s wide, got {self.complementary_delay_s}")
        for name in ("pattern_fraction", "second_pattern_prob", "anomaly_entity_fraction", "coord_fraction",
                     "regime_switch_prob", "similar_type_noise"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                p.append(f"{name} must be in [0, 1], got {v}")
        if p:
            raise ConfigError(p)

    def to_dict(self) -> dict[str, Any]:
        return _jsonify(dataclasses.asdict(self))


def _jsonify(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonify(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonify(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    return x


# ----------------------------------------------------------------------------------------------
# internal records


@dataclass
class _Plan:
    """What one entity will contain, decided before any type or time is drawn."""

    index: int
    cls: int
    sub: int
    n: int  # pre-merge events: background + cycle (periodic events come on top)
    role: str = "base"  # base | similar_copy | complementary_follower
    source: int = -1
    aseq: str | None = None
    kinds: list[str] = field(default_factory=list)
    segments: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> inclusive positions
    motif: list[int] = field(default_factory=list)
    repeats: int = 0
    change: int = -1
    regime_factor: float = 1.0
    regime_switch: bool = False
    anomalies: dict[int, str] = field(default_factory=dict)  # pre-merge position -> kind
    allowed_anomalies: tuple[str, ...] = ANOMALY_KINDS
    chain_pos: np.ndarray | None = None
    home: tuple[float, float] | None = None


@dataclass
class _Result:
    times: np.ndarray  # (n,) float64 sorted
    types: np.ndarray  # (n,) int
    anomaly: np.ndarray  # (n,) bool
    emb_anomaly: np.ndarray  # (n,) bool
    bg_types: np.ndarray  # chain types before any planting (copied by similar targets)
    bg_gaps: np.ndarray  # gaps before anomalies (copied by similar targets)
    start: float
    patterns: list[dict[str, Any]]
    anomalies: list[dict[str, Any]]


# ----------------------------------------------------------------------------------------------
# the generator


class _Generator:
    def __init__(self, cfg: SynthConfig, num_entities: int, seed: int):
        self.cfg = cfg
        self.N = num_entities
        self.seed = seed
        streams = np.random.SeedSequence(seed).spawn(5)
        self.r_world, self.r_plan, self.r_chain, self.r_asm, self.r_emb = (np.random.default_rng(s) for s in streams)
        self.K = cfg.num_event_types
        self.B = self.K - 2
        self.periodic_type = self.K - 2
        self.rare_type = self.K - 1
        self.type_names = [f"t{i:02d}" for i in range(self.K)]
        self.class_names = [f"c{c}" for c in range(cfg.num_classes)]
        self.sub_names = [[f"c{c}.s{s}" for s in range(cfg.subclasses_per_class)] for c in range(cfg.num_classes)]
        w = max(5, len(str(max(num_entities - 1, 0))))
        self.ids = [f"e{i:0{w}d}" for i in range(num_entities)]

    # -- the world: chains and prototypes (independent of the number of entities)
    def _world(self) -> None:
        cfg, B, rng = self.cfg, self.B, self.r_world
        n_struct = max(cfg.class_transitions) + 1
        # structures + regime + foreign: cycles whose moves (and reversed moves) share at most
        # two edges with another structure's moves, so no chain passes for another
        sigmas: list[np.ndarray] = []
        kept_s: list[np.ndarray] = []  # (B, B) successor adjacency
        kept_b: list[np.ndarray] = []  # (B, B) successor + skip adjacency
        limit, rounds = 2, 0
        ar = np.arange(B)
        while len(sigmas) < n_struct + 2:
            rounds += 1
            if rounds % 20 == 0:
                limit += 1  # only reached for tiny B
            cand = np.argsort(rng.random((512, B)), axis=1)  # (c, B) candidate orders
            S = np.zeros((512, B, B))
            Q = np.zeros((512, B, B))
            ci = np.arange(512)[:, None]
            S[ci, cand, cand[:, (ar + 1) % B]] = 1.0
            Q[ci, cand, cand[:, (ar + 2) % B]] = 1.0
            ok = np.ones(512, bool)
            for So, Bo in zip(kept_s, kept_b):
                ok &= np.einsum("cij,ij->c", S, Bo) <= limit
                ok &= np.einsum("cij,ij->c", S + Q, So) <= limit
                ok &= np.einsum("cji,ij->c", S, Bo) <= limit
                ok &= np.einsum("cij,ji->c", S + Q, So) <= limit
            good = np.flatnonzero(ok)
            if len(good):
                k = int(good[0])
                sigmas.append(cand[k])
                kept_s.append(S[k])
                kept_b.append(S[k] + Q[k])
        self.succ, self.skip = [], []
        for sg in sigmas:
            succ, skip = np.empty(B, int), np.empty(B, int)
            succ[sg] = sg[(np.arange(B) + 1) % B]
            skip[sg] = sg[(np.arange(B) + 2) % B]
            self.succ.append(succ)
            self.skip.append(skip)
        eye = np.eye(B)
        eps = cfg.transition_noise

        def chain(i: int, w: float) -> np.ndarray:
            return (1 - eps - w) * eye[self.succ[i]] + w * eye[self.skip[i]] + eps / B

        mats = []
        self.mat_of: dict[tuple[int, int], int] = {}
        for c in range(cfg.num_classes):
            for s, w in enumerate(cfg.subclass_skip_weights):
                self.mat_of[(c, s)] = len(mats)
                mats.append(chain(cfg.class_transitions[c], w))
        self.regime_mat = len(mats)
        mats.append(chain(n_struct, 0.0))
        self.foreign_mat = len(mats)
        mats.append(chain(n_struct + 1, 0.0))
        self.mats = np.stack(mats)  # (m, B, B), rows sum to 1, columns sum to 1
        cum = np.cumsum(self.mats, axis=2)
        cum[..., -1] = 1.0
        self.cum = cum
        self.protos: dict[str, np.ndarray] = {}
        for m, d in cfg.modalities.items():
            v = rng.standard_normal((self.K, int(d)))
            if d >= self.K:  # orthonormal prototypes: every pair at distance sqrt(2)
                v = np.linalg.qr(v.T)[0].T
            self.protos[m] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)  # (K, d)

    # -- roles, lengths and layouts
    def _plan(self) -> list[_Plan]:
        cfg, N, rng = self.cfg, self.N, self.r_plan
        C, S = cfg.num_classes, cfg.subclasses_per_class
        lab = rng.permutation(np.arange(N) % (C * S))
        lo, hi = cfg.length_range
        lengths = np.clip(np.round(np.exp(math.log(cfg.length_median) + cfg.length_sigma * rng.standard_normal(N))), lo, hi)
        plans = [_Plan(index=i, cls=int(lab[i] // S), sub=int(lab[i] % S), n=int(lengths[i])) for i in range(N)]
        homes = rng.random(N) < cfg.coord_fraction
        xy = rng.random((N, 2)) * cfg.coord_extent
        for p in plans:
            if homes[p.index]:
                p.home = (float(xy[p.index, 0]), float(xy[p.index, 1]))

        order = [int(i) for i in rng.permutation(N)]
        n_sim = int(round(cfg.similar_fraction * N))
        n_comp = int(round(cfg.complementary_fraction * N))
        while 2 * (n_sim + n_comp) > N:
            n_sim, n_comp = max(0, n_sim - 1), max(0, n_comp - 1)
        self.pairs: list[tuple[int, int, str]] = []
        k = 0
        for kind, count in (("similar", n_sim), ("complementary", n_comp)):
            for _ in range(count):
                a, b = order[k], order[k + 1]
                k += 2
                self.pairs.append((a, b, kind))
        for a, b, kind in self.pairs:
            pa_, pb = plans[a], plans[b]
            pa_.allowed_anomalies = pb.allowed_anomalies = ("embedding", "type")
            pb.source = a
            if kind == "similar":
                pb.role, pb.cls, pb.sub, pb.n, pb.home = "similar_copy", pa_.cls, pa_.sub, pa_.n, pa_.home
            else:
                same = [c for c in range(C) if cfg.class_timing[c] == cfg.class_timing[pa_.cls]]
                pb.role = "complementary_follower"
                pb.cls = int(same[int(rng.integers(len(same)))])
                pb.sub = int(rng.integers(S))
        rest = order[k:]
        n_aseq = min(len(rest), int(round(cfg.anomalous_sequence_fraction * N)))
        for j, i in enumerate(rest[:n_aseq]):
            plans[i].aseq = SEQUENCE_ANOMALY_KINDS[j % len(SEQUENCE_ANOMALY_KINDS)]
        eligible = rest[n_aseq:]
        n_pat = int(round(cfg.pattern_fraction * len(eligible)))
        chosen = [int(i) for i in rng.permutation(eligible)[:n_pat]] if eligible else []
        for j, i in enumerate(chosen):
            first = PATTERN_KINDS[j % len(PATTERN_KINDS)]
            kinds = [first]
            if rng.random() < cfg.second_pattern_prob:
                others = [x for x in PATTERN_KINDS if x != first]
                kinds.append(others[int(rng.integers(len(others)))])
            self._layout(plans[i], kinds)

        # complementary followers: their length is the number of source events they follow
        for a, b, kind in self.pairs:
            if kind == "complementary":
                f = rng.uniform(*cfg.complementary_follow)
                plans[b].n = min(plans[a].n, max(cfg.length_range[0], int(round(f * plans[a].n))))

        cand = [i for i in range(N) if plans[i].aseq is None]
        n_an = int(round(cfg.anomaly_entity_fraction * len(cand)))
        for i in sorted(int(x) for x in rng.permutation(cand)[:n_an]) if cand else []:
            self._place_anomalies(plans[i])

        for p in plans:  # chain positions: everything but a cycle segment
            if p.role == "similar_copy":
                p.chain_pos = np.zeros(0, int)
                continue
            mask = np.ones(p.n, bool)
            if "cycle" in p.segments:
                s, e = p.segments["cycle"]
                mask[s : e + 1] = False
            p.chain_pos = np.flatnonzero(mask)
        return plans

    def _layout(self, p: _Plan, kinds: list[str]) -> None:
        cfg, rng = self.cfg, self.r_plan
        sizes: list[tuple[str, int]] = []
        for kind in kinds:
            if kind == "burst":
                sizes.append((kind, int(rng.integers(cfg.burst_events[0], cfg.burst_events[1] + 1))))
            elif kind == "cycle":
                L = int(rng.integers(cfg.cycle_motif_len[0], cfg.cycle_motif_len[1] + 1))
                p.motif = [int(x) for x in rng.choice(self.B, size=L, replace=False)]
                p.repeats = int(rng.integers(cfg.cycle_repeats[0], cfg.cycle_repeats[1] + 1))
                sizes.append((kind, L * p.repeats))
            elif kind == "regime_change":
                sizes.append((kind, 2 * cfg.regime_window))
        margin = 3
        taken: list[tuple[int, int]] = []
        for kind, size in sizes:
            hi = p.n - size - margin
            placed = False
            for _ in range(50):
                if hi < margin:
                    break
                s = int(rng.integers(margin, hi + 1))
                e = s + size - 1
                if all(e + margin < a or s > b + margin for a, b in taken):
                    taken.append((s, e))
                    p.segments[kind] = (s, e)
                    placed = True
                    break
            if placed:
                p.kinds.append(kind)
        if "periodic" in kinds:
            p.kinds.append("periodic")  # placed in time once timestamps exist; may be dropped
        if "regime_change" in p.segments:
            s, _ = p.segments["regime_change"]
            p.change = s + cfg.regime_window
            f = math.exp(rng.uniform(math.log(cfg.regime_gap_factor[0]), math.log(cfg.regime_gap_factor[1])))
            p.regime_factor = f if rng.random() < 0.5 else 1.0 / f
            p.regime_switch = bool(rng.random() < cfg.regime_switch_prob)
        p.kinds.sort(key=PATTERN_KINDS.index)

    def _place_anomalies(self, p: _Plan) -> None:
        cfg, rng = self.cfg, self.r_plan
        blocked = np.zeros(p.n, bool)
        blocked[0] = True
        for s, e in p.segments.values():
            blocked[max(0, s - 1) : e + 2] = True
        cand = np.flatnonzero(~blocked)
        want = max(1, int(round(rng.uniform(*cfg.anomaly_event_rate) * p.n)))
        chosen: list[int] = []
        for q in rng.permutation(cand):
            if all(abs(int(q) - c) >= 3 for c in chosen):
                chosen.append(int(q))
                if len(chosen) == want:
                    break
        for q in sorted(chosen):
            p.anomalies[q] = p.allowed_anomalies[int(rng.integers(len(p.allowed_anomalies)))]

    # -- Markov chains for all entities at once
    def _chains(self, plans: list[_Plan]) -> np.ndarray:
        rng = self.r_chain
        E = len(plans)
        lens = np.array([len(p.chain_pos) for p in plans])  # type: ignore[arg-type]
        T = int(lens.max()) if E else 0
        matid = np.zeros((E, max(T, 1)), np.int64)  # (N, T) transition used to reach step t
        for i, p in enumerate(plans):
            if p.aseq == "foreign":
                matid[i] = self.foreign_mat
            else:
                matid[i] = self.mat_of[(p.cls, p.sub)]
                if p.regime_switch and p.change >= 0:
                    steps = np.flatnonzero(p.chain_pos >= p.change)  # type: ignore[operator]
                    matid[i, steps] = self.regime_mat
        out = np.zeros((E, max(T, 1)), np.int64)  # (N, T)
        state = rng.integers(0, self.B, E)
        out[:, 0] = state
        rows = np.arange(E)
        for t in range(1, T):
            cdf = self.cum[matid[:, t], state]  # (N, B)
            u = rng.random(E)
            state = (u[:, None] >= cdf).sum(axis=1)
            out[rows, t] = state
        return out

    # -- one entity
    def _gaps(self, p: _Plan, n: int) -> np.ndarray:
        prof = self.cfg.timing[self.cfg.class_timing[p.cls]]
        return prof.sample(self.r_asm, n)

    def _assemble_base(self, p: _Plan, chain: np.ndarray) -> _Result:
        cfg, rng, n = self.cfg, self.r_asm, p.n
        bg = chain[: len(p.chain_pos)].copy()  # type: ignore[arg-type]
        if p.aseq == "shuffled":
            bg = rng.permutation(bg)
        elif p.aseq == "reversed":
            bg = bg[::-1].copy()
        types = np.empty(n, np.int64)
        types[p.chain_pos] = bg
        if "cycle" in p.segments:
            s, e = p.segments["cycle"]
            types[s : e + 1] = np.tile(p.motif, p.repeats)
            if types[s - 1] == p.motif[-1]:
                types[s - 1] = (types[s - 1] + 1) % self.B
            if e + 1 < n and types[e + 1] == p.motif[0]:
                types[e + 1] = (types[e + 1] + 1) % self.B
        gaps = self._gaps(p, n)
        if p.change >= 0:
            gaps[p.change :] *= p.regime_factor
        gaps = np.maximum(gaps, cfg.min_gap_s)
        regime: dict[str, Any] = {}
        if p.change >= 0:
            regime = self._fix_regime(p, gaps)
        if "burst" in p.segments:
            s, e = p.segments["burst"]
            gaps[s + 1 : e + 1] = rng.uniform(cfg.burst_gap_s[0], cfg.burst_gap_s[1], e - s)
        bg_gaps = gaps.copy()
        anomaly = np.zeros(n, bool)
        emb_anom = np.zeros(n, bool)
        extra: dict[int, dict[str, Any]] = {}
        prof = cfg.timing[cfg.class_timing[p.cls]]
        for q, kind in p.anomalies.items():
            anomaly[q] = True
            if kind == "type":
                types[q] = self.rare_type
                extra[q] = {"event_type": self.type_names[self.rare_type]}
            elif kind == "embedding":
                emb_anom[q] = True
                extra[q] = {"norm": float(cfg.embedding_anomaly_norm)}
            else:
                local = prof.mean_s * (p.regime_factor if 0 <= p.change <= q else 1.0)
                if rng.random() < 0.5:
                    gaps[q] = local * math.exp(rng.uniform(*np.log(cfg.time_anomaly_factor)))
                else:
                    gaps[q] = rng.uniform(*cfg.time_anomaly_short_s)
        protected = np.zeros(n, bool)
        if "cycle" in p.segments:
            s, e = p.segments["cycle"]
            protected[s : e + 1] = True
        self._break_accidental_cycles(types, protected | anomaly)
        start = cfg.epoch + rng.uniform(0, cfg.start_spread_days * _DAY)
        gaps[0] = 0.0
        times = start + np.cumsum(gaps)
        for q in p.anomalies:
            if p.anomalies[q] == "time":
                extra[q] = {"gap": float(times[q] - times[q - 1])}

        # periodic overlay, placed in time where nothing else is planted
        ptimes = np.zeros(0)
        period = jitter = 0.0
        if "periodic" in p.kinds:
            ptimes, period, jitter = self._periodic(p, times)
            if not len(ptimes):
                p.kinds.remove("periodic")
        all_t = np.concatenate([times, ptimes])
        all_ty = np.concatenate([types, np.full(len(ptimes), self.periodic_type)])
        order = np.argsort(all_t, kind="stable")
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        final_t = all_t[order]
        res = _Result(
            times=final_t,
            types=all_ty[order],
            anomaly=np.concatenate([anomaly, np.zeros(len(ptimes), bool)])[order],
            emb_anomaly=np.concatenate([emb_anom, np.zeros(len(ptimes), bool)])[order],
            bg_types=bg,
            bg_gaps=bg_gaps,
            start=float(start),
            patterns=[],
            anomalies=[],
        )
        eid = self.ids[p.index]

        def span(kind: str, s: int, e: int, **kw: Any) -> dict[str, Any]:
            si, ei = int(inv[s]), int(inv[e])
            return {"entity": eid, "kind": kind, "start": float(final_t[si]), "end": float(final_t[ei]),
                    "start_index": si, "end_index": ei, **kw}

        if "periodic" in p.kinds:
            idx = inv[n:]
            res.patterns.append(span("periodic", n, n + len(ptimes) - 1, event_type=self.type_names[self.periodic_type],
                                     period=float(period), jitter=float(jitter), count=int(len(ptimes)),
                                     indices=[int(i) for i in idx]))
        if "burst" in p.segments:
            s, e = p.segments["burst"]
            res.patterns.append(span("burst", s, e, count=e - s + 1, window=float(cfg.burst_window_s),
                                     mean_gap=float(np.mean(np.diff(times[s : e + 1])))))
        if "cycle" in p.segments:
            s, e = p.segments["cycle"]
            res.patterns.append(span("cycle", s, e, motif=[self.type_names[x] for x in p.motif], repeats=p.repeats))
        if "regime_change" in p.segments:
            s, e = p.segments["regime_change"]
            before = self.sub_names[p.cls][p.sub]
            res.patterns.append(span("regime_change", s, e, time=float(times[p.change]), index=int(inv[p.change]),
                                     gap_factor=float(p.regime_factor), switched_transitions=p.regime_switch,
                                     transitions_before=before,
                                     transitions_after="regime" if p.regime_switch else before, **regime))
        res.patterns.sort(key=lambda r: r["start_index"])
        for q in sorted(p.anomalies):
            res.anomalies.append({"entity": eid, "index": int(inv[q]), "kind": p.anomalies[q],
                                  "timestamp": float(times[q]), **extra.get(q, {})})
        return res

    def _fix_regime(self, p: _Plan, gaps: np.ndarray) -> dict[str, Any]:
        """Redraw the window's gaps until the measured ratio shows the change (>= min ratio)."""
        cfg = self.cfg
        s, e = p.segments["regime_change"]
        c = p.change
        up = p.regime_factor > 1
        for _ in range(1000):
            before, after = gaps[s + 1 : c], gaps[c : e + 1]
            geo = math.exp(float(np.mean(np.log(after)) - np.mean(np.log(before))))
            med = float(np.median(after) / np.median(before))
            ok = (geo >= cfg.regime_min_ratio and med >= cfg.regime_min_ratio) if up else (
                geo <= 1 / cfg.regime_min_ratio and med <= 1 / cfg.regime_min_ratio)
            if ok:
                return {"gap_ratio": geo, "median_gap_ratio": med}
            fresh = self._gaps(p, e - s)
            fresh[c - s - 1 :] *= p.regime_factor
            gaps[s + 1 : e + 1] = np.maximum(fresh, cfg.min_gap_s)
        raise RuntimeError("regime change window could not be drawn; regime_gap_factor too small for the timing profile")

    def _periodic(self, p: _Plan, times: np.ndarray) -> tuple[np.ndarray, float, float]:
        cfg, rng, n = self.cfg, self.r_asm, len(times)
        busy: list[tuple[float, float]] = []
        for s, e in p.segments.values():
            busy.append((times[max(s - 1, 0)], times[min(e + 1, n - 1)]))
        for q in p.anomalies:
            busy.append((times[q - 1], times[min(q + 1, n - 1)]))
        busy.sort()
        free: list[tuple[float, float]] = []
        cur = float(times[0])
        for a, b in busy:
            if a > cur:
                free.append((cur, float(a)))
            cur = max(cur, float(b))
        if times[-1] > cur:
            free.append((cur, float(times[-1])))
        cmin, cmax = cfg.periodic_count
        longest = max((b - a for a, b in free), default=0.0)
        fits = [P for P in cfg.periodic_periods_s if (cmin - 1) * P + 2.5 * cfg.periodic_jitter * P < longest]
        if not fits:
            return np.zeros(0), 0.0, 0.0
        P = float(fits[int(rng.integers(len(fits)))])
        J = cfg.periodic_jitter * P
        ok = [(a, b) for a, b in free if (cmin - 1) * P + 2.5 * J < b - a]
        a, b = ok[int(rng.integers(len(ok)))]
        most = min(cmax, int((b - a - 2.5 * J) // P) + 1)
        count = int(rng.integers(cmin, most + 1))
        lo, hi = a + 1.25 * J, b - (count - 1) * P - 1.25 * J
        t0 = rng.uniform(lo, hi)
        pt = t0 + np.arange(count) * P + rng.uniform(-J, J, count)
        return pt, P, J

    def _break_accidental_cycles(self, types: np.ndarray, protected: np.ndarray) -> None:
        """Make sure no 3- or 4-type period repeats 4 times outside planted cycles."""
        for _ in range(100):
            hit = _find_repeats(types, protected, repeats=4)
            if hit is None:
                return
            # a value matching none of the types 3 or 4 places away creates no new repetition
            near = {int(types[j]) for j in (hit - 4, hit - 3, hit + 3, hit + 4) if 0 <= j < len(types)}
            choices = [v for v in range(self.B) if v not in near and v != types[hit]]
            types[hit] = choices[int(self.r_asm.integers(len(choices)))]

    def _assemble_similar(self, p: _Plan, src: _Result) -> _Result:
        cfg, rng = self.cfg, self.r_asm
        types = src.bg_types.copy() if len(src.bg_types) == p.n else src.types.copy()
        n = len(types)
        flip = rng.random(n) < cfg.similar_type_noise
        types[flip] = (types[flip] + 1 + rng.integers(0, self.B - 1, int(flip.sum()))) % self.B
        gaps = np.maximum(src.bg_gaps[:n] * np.exp(cfg.similar_gap_jitter * rng.standard_normal(n)), cfg.min_gap_s)
        shift = rng.uniform(*cfg.similar_shift_days) * _DAY
        start = src.start + shift
        gaps[0] = 0.0
        times = start + np.cumsum(gaps)
        res = self._finish_follower(p, times, types)
        res.start = float(start)
        res.bg_types = types
        return res

    def _assemble_complementary(self, p: _Plan, src: _Result, chain: np.ndarray) -> tuple[_Result, dict[str, Any]]:
        cfg, rng = self.cfg, self.r_asm
        sel = np.sort(rng.permutation(len(src.times))[: p.n])
        base = rng.uniform(cfg.complementary_delay_s[0], cfg.complementary_delay_s[1] - 10.0)
        delays = base + rng.uniform(0.0, 10.0, len(sel))
        times = np.sort(src.times[sel] + delays)
        types = chain[: len(times)].copy()
        res = self._finish_follower(p, times, types)
        res.start = float(times[0])
        info = {"delay_s": [float(cfg.complementary_delay_s[0]), float(cfg.complementary_delay_s[1])],
                "follow_fraction": float(len(sel) / len(src.times))}
        return res, info

    def _finish_follower(self, p: _Plan, times: np.ndarray, types: np.ndarray) -> _Result:
        n = len(times)
        anomaly = np.zeros(n, bool)
        emb = np.zeros(n, bool)
        records = []
        eid = self.ids[p.index]
        for q, kind in sorted(p.anomalies.items()):
            if q >= n:
                continue
            anomaly[q] = True
            rec: dict[str, Any] = {"entity": eid, "index": int(q), "kind": kind, "timestamp": float(times[q])}
            if kind == "type":
                types[q] = self.rare_type
                rec["event_type"] = self.type_names[self.rare_type]
            else:
                emb[q] = True
                rec["norm"] = float(self.cfg.embedding_anomaly_norm)
            records.append(rec)
        self._break_accidental_cycles(types, anomaly)
        return _Result(times=times, types=types, anomaly=anomaly, emb_anomaly=emb, bg_types=types,
                       bg_gaps=np.diff(times, prepend=times[0]), start=float(times[0]), patterns=[], anomalies=records)

    # -- the whole run
    def run(self) -> tuple[pa.Table, dict[str, Any]]:
        cfg = self.cfg
        self._world()
        plans = self._plan()
        chains = self._chains(plans)
        results: dict[int, _Result] = {}
        rel_info: dict[int, dict[str, Any]] = {}
        for p in plans:
            if p.role == "base":
                results[p.index] = self._assemble_base(p, chains[p.index])
        for a, b, kind in self.pairs:
            if kind == "similar":
                results[b] = self._assemble_similar(plans[b], results[a])
                rel_info[b] = {"time_shift": float(results[b].start - results[a].start),
                               "type_noise": float(cfg.similar_type_noise)}
            else:
                results[b], rel_info[b] = self._assemble_complementary(plans[b], results[a], chains[b])
        table = self._table(plans, results)
        truth = self._truth(plans, results, rel_info)
        return table, truth

    def _table(self, plans: list[_Plan], results: dict[int, _Result]) -> pa.Table:
        cfg, rng = self.cfg, self.r_emb
        res = [results[i] for i in range(self.N)]
        counts = np.array([len(r.times) for r in res], np.int64)
        ent = np.repeat(np.arange(self.N), counts)
        times = np.concatenate([r.times for r in res]) if res else np.zeros(0)
        types = np.concatenate([r.types for r in res]).astype(np.int64) if res else np.zeros(0, np.int64)
        anom = np.concatenate([r.anomaly for r in res]) if res else np.zeros(0, bool)
        emb_anom = np.concatenate([r.emb_anomaly for r in res]) if res else np.zeros(0, bool)
        total = len(times)
        mod_names = list(cfg.modalities)
        wts = np.array([cfg.modality_weights[m] for m in mod_names], float)
        mod = rng.choice(len(mod_names), size=total, p=wts / wts.sum())  # (n_total,)
        dims = np.array([int(cfg.modalities[m]) for m in mod_names], np.int64)[mod]
        offsets = np.zeros(total + 1, np.int64)
        np.cumsum(dims, out=offsets[1:])
        values = np.empty(int(offsets[-1]), np.float32)
        for k, m in enumerate(mod_names):
            rows = np.flatnonzero(mod == k)
            d = int(cfg.modalities[m])
            vec = self.protos[m][types[rows]] + (cfg.noise_scale / math.sqrt(d)) * rng.standard_normal((len(rows), d))
            bad = emb_anom[rows]
            if bad.any():
                v = rng.standard_normal((int(bad.sum()), d))
                vec[bad] = cfg.embedding_anomaly_norm * v / np.linalg.norm(v, axis=1, keepdims=True)
            values[(offsets[rows][:, None] + np.arange(d)).ravel()] = vec.astype(np.float32).ravel()
        emb = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, pa.float32()))

        def strings(codes: np.ndarray, words: list[str], mask: np.ndarray | None = None) -> pa.Array:
            d = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32), mask=mask), pa.array(words, pa.string()))
            return d.cast(pa.string())

        text_idx = mod_names.index("text") if "text" in mod_names else -1
        has_home = np.array([plans[i].home is not None for i in range(self.N)], bool)
        home = np.array([plans[i].home if plans[i].home else (0.0, 0.0) for i in range(self.N)], float).reshape(-1, 2)
        ev_home = has_home[ent] if total else np.zeros(0, bool)
        rows = np.flatnonzero(ev_home)
        xy = home[ent[rows]] + cfg.coord_jitter * rng.standard_normal((len(rows), 2))  # (rows, 2)
        items = pa.array(np.round(xy, 6).ravel(), pa.float64()).cast(pa.string())
        keys = strings(np.tile(np.array([0, 1]), len(rows)), ["x", "y"])
        moff = np.zeros(total + 1, np.int32)
        np.cumsum(np.where(ev_home, 2, 0), out=moff[1:])
        attrs = pa.MapArray.from_arrays(pa.array(moff), keys, items, mask=pa.array(~ev_home))
        table = pa.table(
            {
                "entity_id": strings(ent, self.ids),
                "timestamp": pa.array(times, pa.float64()),
                "event_type": strings(types, self.type_names),
                "modality": strings(mod, mod_names),
                "embedding": emb,
                "text": strings(types, [f"event {t}" for t in self.type_names], mask=mod != text_idx),
                "attributes": attrs,
                "label": strings(anom.astype(np.int64), ["normal", "anomaly"]),
            }
        )
        return table.cast(EVENT_SCHEMA)

    def _truth(self, plans: list[_Plan], results: dict[int, _Result], rel_info: dict[int, dict[str, Any]]) -> dict[str, Any]:
        cfg = self.cfg
        B = self.B
        entities, patterns, anomalies, aseqs = [], [], [], []
        for p in plans:
            r = results[p.index]
            entities.append({
                "id": self.ids[p.index],
                "class": self.class_names[p.cls],
                "subclass": self.sub_names[p.cls][p.sub],
                "timing": cfg.class_timing[p.cls],
                "num_events": int(len(r.times)),
                "start": float(r.times[0]),
                "end": float(r.times[-1]),
                "home": list(p.home) if p.home else None,
                "anomalous_sequence": p.aseq is not None,
                "num_anomalous_events": len(r.anomalies),
                "patterns": [x["kind"] for x in r.patterns],
                "role": p.role,
            })
            patterns.extend(r.patterns)
            anomalies.extend(r.anomalies)
            if p.aseq:
                aseqs.append({"entity": self.ids[p.index], "kind": p.aseq})
        rels = []
        for a, b, kind in self.pairs:
            rels.append({"source": self.ids[a], "target": self.ids[b], "type": kind, **rel_info.get(b, {})})
        n_struct = max(cfg.class_transitions) + 1
        return _jsonify({
            "seed": self.seed,
            "num_entities": self.N,
            "config": cfg.to_dict(),
            "epoch": cfg.epoch,
            "modalities": {m: int(d) for m, d in cfg.modalities.items()},
            "event_types": self.type_names,
            "background_types": self.type_names[:B],
            "special_types": {"periodic": self.type_names[self.periodic_type], "rare": self.type_names[self.rare_type]},
            "timing": {k: {**dataclasses.asdict(v), "mean_s": v.mean_s} for k, v in cfg.timing.items()},
            "classes": {
                self.class_names[c]: {"timing": cfg.class_timing[c], "transition_structure": int(cfg.class_transitions[c]),
                                      "subclasses": self.sub_names[c]}
                for c in range(cfg.num_classes)
            },
            "subclasses": {
                self.sub_names[c][s]: {"class": self.class_names[c], "skip_weight": float(w),
                                       "transition_matrix": self.mats[self.mat_of[(c, s)]].tolist()}
                for c in range(cfg.num_classes) for s, w in enumerate(cfg.subclass_skip_weights)
            },
            "transition_structures": [{"successor": self.succ[i].tolist(), "skip": self.skip[i].tolist()} for i in range(n_struct)],
            "regime_transition_matrix": self.mats[self.regime_mat].tolist(),
            "foreign_transition_matrix": self.mats[self.foreign_mat].tolist(),
            "prototypes": {m: v.astype(np.float64).tolist() for m, v in self.protos.items()},
            "hierarchy": {
                "levels": ["class", "subclass"],
                "children": {self.class_names[c]: self.sub_names[c] for c in range(cfg.num_classes)},
                "parent": {s: self.class_names[c] for c in range(cfg.num_classes) for s in self.sub_names[c]},
            },
            "entities": entities,
            "patterns": patterns,
            "anomalous_events": anomalies,
            "anomalous_sequences": aseqs,
            "relationships": rels,
        })


def _find_repeats(types: np.ndarray, protected: np.ndarray, repeats: int, lengths: tuple[int, ...] = (3, 4)) -> int | None:
    """Position to change if some period-L run (L in ``lengths``) spans ``repeats`` motifs, else None.

    Protected positions (planted cycles, anomalies) never take part in a run.
    """
    x = np.where(protected, -1 - np.arange(len(types)), types)
    for L in lengths:
        if len(x) <= L:
            continue
        eq = np.concatenate([[False], x[L:] == x[:-L], [False]]).astype(np.int8)
        d = np.diff(eq)
        starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        for s, e in zip(starts, ends):
            if e - s >= (repeats - 1) * L:  # run of matches x[i+L]==x[i] for i in [s, e)
                return int(s + L + (e - s) // 2)
    return None


def generate(num_entities: int = 200, seed: int = 0, config: SynthConfig | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """Generate an event table (exactly :data:`EVENT_SCHEMA`) and its JSON-serialisable truth.

    The same ``(num_entities, seed, config)`` always gives the same table and truth. The truth
    layout is described in the module docstring.
    """
    cfg = config or SynthConfig()
    cfg.validate()
    if int(num_entities) < 1:
        raise ConfigError(f"num_entities must be >= 1, got {num_entities}")
    return _Generator(cfg, int(num_entities), int(seed)).run()


def truth_json(truth: dict[str, Any]) -> str:
    """The exact text written to ``truth.json`` (stable across runs and processes)."""
    return json.dumps(truth, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def summarize(truth: dict[str, Any]) -> dict[str, Any]:
    """Counts of what ``truth`` holds: entities, events and planted things by kind."""
    def by_kind(items: list[dict[str, Any]], key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for it in items:
            out[it[key]] = out.get(it[key], 0) + 1
        return dict(sorted(out.items()))

    return {
        "entities": len(truth["entities"]),
        "events": int(sum(e["num_events"] for e in truth["entities"])),
        "patterns": by_kind(truth["patterns"], "kind"),
        "anomalous_events": by_kind(truth["anomalous_events"], "kind"),
        "anomalous_sequences": by_kind(truth["anomalous_sequences"], "kind"),
        "relationships": by_kind(truth["relationships"], "type"),
    }


def write_synth(out_dir: str | Path, num_entities: int = 200, seed: int = 0, config: SynthConfig | None = None) -> dict[str, Any]:
    """Write ``out_dir/events.parquet`` and ``out_dir/truth.json``; return :func:`summarize` + paths."""
    table, truth = generate(num_entities, seed, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    events_path, truth_path = out / "events.parquet", out / "truth.json"
    pq.write_table(table, events_path)
    truth_path.write_text(truth_json(truth), encoding="utf-8")
    return {**summarize(truth), "events_path": str(events_path), "truth_path": str(truth_path)}


__all__ = [
    "ANOMALY_KINDS",
    "EPOCH_2024",
    "PATTERN_KINDS",
    "SEQUENCE_ANOMALY_KINDS",
    "GapProfile",
    "SynthConfig",
    "generate",
    "summarize",
    "truth_json",
    "write_synth",
]
