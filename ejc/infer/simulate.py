"""Sampling futures: one autoregressive step shared by ``predict_next`` and ``simulate``.

Shape legend: ``P`` paths (sequences advanced together), ``d`` width, ``V`` type vocabulary.

A step encodes every path causally (only the last ``context`` events), reads the heads at the
last event and draws the next event: type and modality from softmax(logits / T) restricted by
the constraints (argmax at T = 0), the gap from the log-normal mixture truncated to
``[min_delay, max_delay]`` by inverse-CDF sampling (its median at T = 0), the vector from the
embedding head of the chosen modality.

Constraints (``Constraints``): ``min_delay`` / ``max_delay`` seconds between events,
``allowed_types`` / ``forbidden_types``, ``allowed_modalities``, ``causal_order`` pairs
``(a, b)`` meaning ``b`` may only happen once ``a`` has happened (in the history or the path),
and ``horizon`` seconds after the last observed event. A target state stops a path when it is
reached: an event type, or a vector of a modality within a cosine threshold, or a predicate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ejc.data.sequence import END, EventSequence
from ejc.errors import EjcError

if TYPE_CHECKING:
    from ejc.infer.event_jepa import EventJEPA, PredictedEvent


@dataclass
class Constraints:
    min_delay: float = 0.0
    max_delay: float | None = None
    allowed_types: set[str] | None = None
    forbidden_types: set[str] = field(default_factory=set)
    allowed_modalities: set[str] | None = None
    causal_order: list[tuple[str, str]] = field(default_factory=list)
    horizon: float | None = None

    def check(self, vocab_types: Iterable[str], modalities: list[str]) -> None:
        known = set(vocab_types)
        problems = []
        for name, types in (("allowed_types", self.allowed_types or set()), ("forbidden_types", self.forbidden_types)):
            unknown = sorted(set(types) - known)
            if unknown:
                problems.append(f"{name} has types the model never saw: {unknown[:10]}")
        for a, b in self.causal_order:
            for t in (a, b):
                if t not in known:
                    problems.append(f"causal_order mentions unknown type {t!r}")
        if self.allowed_modalities is not None and not set(self.allowed_modalities) & set(modalities):
            problems.append(f"allowed_modalities {sorted(self.allowed_modalities)} shares nothing with the model's {modalities}")
        if self.min_delay < 0 or (self.max_delay is not None and self.max_delay < self.min_delay):
            problems.append(f"need 0 <= min_delay <= max_delay, got {self.min_delay} / {self.max_delay}")
        if problems:
            raise EjcError("invalid simulation constraints: " + "; ".join(problems))


@dataclass
class TargetState:
    event_type: str | None = None
    embedding: np.ndarray | None = None  # [d_m] of ``modality``
    modality: str | None = None
    min_cosine: float = 0.9
    predicate: Callable[[Any], bool] | None = None

    def reached(self, ev: PredictedEvent) -> bool:
        if self.event_type is not None and ev.event_type == self.event_type:
            return True
        if self.embedding is not None and ev.embedding is not None and ev.modality == (self.modality or ev.modality):
            a, b = np.asarray(self.embedding, np.float64), np.asarray(ev.embedding, np.float64)
            if a.shape == b.shape and float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)) >= self.min_cosine:
                return True
        return bool(self.predicate is not None and self.predicate(ev))


@dataclass
class SimulationResult:
    paths: list[list[PredictedEvent]]
    reached: list[bool]  # per path: target reached
    reached_at: list[int | None]  # per path: step index of the target event
    stopped: list[str]  # per path: "target", "steps", "horizon", "end" (END predicted) or "dead_end"

    @property
    def target_probability(self) -> float:
        return float(np.mean(self.reached)) if self.reached else 0.0

    def summary(self) -> dict[str, Any]:
        hit_times = [p[i].timestamp - (p[0].timestamp - p[0].gap) for p, i in zip(self.paths, self.reached_at) if i is not None]
        counts: dict[str, int] = {}
        for p in self.paths:
            for ev in p:
                counts[str(ev.event_type)] = counts.get(str(ev.event_type), 0) + 1
        return {
            "paths": len(self.paths),
            "target_probability": self.target_probability,
            "median_time_to_target": float(np.median(hit_times)) if hit_times else None,
            "mean_path_length": float(np.mean([len(p) for p in self.paths])) if self.paths else 0.0,
            "type_counts": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
            "stopped": {k: self.stopped.count(k) for k in sorted(set(self.stopped))},
        }


@torch.no_grad()
def sample_step(model: EventJEPA, seqs: list[EventSequence], temperature: float, gen: torch.Generator, constraints: Constraints | None = None, context: int | None = None, top_k: int = 5) -> list[PredictedEvent | None]:
    """The next event of every sequence (None where the constraints leave no allowed type)."""
    from ejc.infer.event_jepa import PredictedEvent

    heads = model._heads()
    c = constraints or Constraints()
    ctx = context or model.config.train.max_len
    cropped = [s[len(s) - ctx :] if len(s) > ctx else s for s in seqs]
    bt = model._tensors(cropped)
    last = torch.as_tensor([len(s) - 1 for s in cropped], device=bt.valid.device)
    h = model._context_states(bt)[torch.arange(len(cropped), device=last.device), last].float()  # [P, d]
    itos = model.spec.vocab.itos
    mods = model.spec.modalities
    V = len(itos)
    logits = heads.type_head(h).float()  # [P, V]
    allowed = torch.ones(len(seqs), V, dtype=torch.bool)
    allowed[:, :2] = False  # <pad>, <unk>
    if c.allowed_types is not None:
        allowed[:, [i for i, t in enumerate(itos) if t not in c.allowed_types]] = False
    if c.forbidden_types:
        allowed[:, [i for i, t in enumerate(itos) if t in c.forbidden_types]] = False
    for p, s in enumerate(seqs):
        seen = set() if s.event_types is None else set(s.event_types.tolist())
        for a, b in c.causal_order:
            if a not in seen and b in model.spec.vocab.stoi:
                allowed[p, model.spec.vocab.stoi[b]] = False
    allowed = allowed.to(logits.device)
    logits = logits.masked_fill(~allowed, float("-inf"))
    mlog = heads.modality_head(h).float()[:, : len(mods)]
    if c.allowed_modalities is not None:
        mlog[:, [i for i, m in enumerate(mods) if m not in c.allowed_modalities]] = float("-inf")
    t = max(temperature, 1e-6)
    p_type = torch.softmax(logits / t, -1).nan_to_num(0.0)
    p_mod = torch.softmax(mlog / t, -1)
    # gap: inverse CDF of the mixture truncated to [min_delay, max_delay]
    y_lo = torch.log(torch.full((len(seqs),), c.min_delay, device=h.device) + 1e-3)
    q_lo = heads.gap.cdf_y(h, y_lo)
    q_hi = heads.gap.cdf_y(h, torch.log(torch.full((len(seqs),), c.max_delay, device=h.device) + 1e-3)) if c.max_delay is not None else torch.ones_like(q_lo)
    u = torch.rand(len(seqs), generator=gen).to(h.device) if temperature > 0 else torch.full((len(seqs),), 0.5, device=h.device)
    gaps = heads.gap.quantile(h, q_lo + u * (q_hi - q_lo)).clamp_min(c.min_delay)
    out: list[PredictedEvent | None] = []
    for p, s in enumerate(seqs):
        if not allowed[p].any() and V > 2:
            out.append(None)
            continue
        if temperature > 0:
            t_id = int(torch.multinomial(p_type[p].cpu(), 1, generator=gen)) if V > 2 else 0
            m_id = int(torch.multinomial(p_mod[p].cpu(), 1, generator=gen))
        else:
            t_id, m_id = int(p_type[p].argmax()), int(p_mod[p].argmax())
        gap = float(gaps[p]) if s.timestamps is not None else 1.0
        modality = mods[m_id]
        tid = torch.as_tensor([t_id if V > 2 else 1], device=h.device)
        vec = heads.predict_vector(modality, h[p : p + 1], tid)[0].cpu().numpy() if modality in model.spec.modality_dims else None
        k = min(top_k, max(1, V - 2))
        top = torch.topk(p_type[p], k)
        out.append(
            PredictedEvent(
                timestamp=float(s.times[-1]) + gap,
                gap=gap,
                event_type=itos[t_id] if V > 2 else None,
                type_probs={itos[int(i)]: float(v) for v, i in zip(top.values, top.indices) if int(i) >= 2 and float(v) > 0},
                modality=modality,
                modality_probs={mods[i]: float(p_mod[p, i]) for i in range(len(mods))},
                embedding=vec,
            )
        )
    return out


def simulate(model: EventJEPA, seq: EventSequence, num_steps: int, num_paths: int, constraints: Constraints | None = None, target_state: TargetState | None = None, temperature: float = 1.0, seed: int = 0, context: int | None = None) -> SimulationResult:
    """Sample ``num_paths`` futures of up to ``num_steps`` events each (see the module doc)."""
    from ejc.infer.event_jepa import append_event

    if len(seq) == 0:
        raise EjcError("simulate needs at least one observed event")
    if num_steps < 1 or num_paths < 1:
        raise EjcError(f"num_steps and num_paths must be at least 1, got {num_steps} / {num_paths}")
    c = constraints or Constraints()
    c.check(model.spec.vocab.types, model.spec.modalities)
    gen = torch.Generator().manual_seed(seed)
    start = float(seq.times[-1])
    states = [seq] * num_paths
    paths: list[list[PredictedEvent]] = [[] for _ in range(num_paths)]
    stopped: list[str | None] = [None] * num_paths
    reached_at: list[int | None] = [None] * num_paths
    for step in range(num_steps):
        active = [p for p in range(num_paths) if stopped[p] is None]
        if not active:
            break
        events = sample_step(model, [states[p] for p in active], temperature, gen, c, context)
        for p, ev in zip(active, events):
            if ev is None:
                stopped[p] = "dead_end"
                continue
            if c.horizon is not None and ev.timestamp - start > c.horizon:
                stopped[p] = "horizon"
                continue
            paths[p].append(ev)
            if ev.event_type == END:  # the model says the entity ends here (a model trained on complete cases)
                stopped[p] = "end"
                if target_state is not None and target_state.reached(ev):
                    reached_at[p] = step
                continue
            states[p] = append_event(states[p], ev)
            if target_state is not None and target_state.reached(ev):
                stopped[p], reached_at[p] = "target", step
    final = [s or "steps" for s in stopped]
    return SimulationResult(paths, [r is not None for r in reached_at], reached_at, final)


__all__ = ["Constraints", "SimulationResult", "TargetState", "sample_step", "simulate"]
