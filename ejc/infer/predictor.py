"""The shipped next-event predictor: an ensemble of next-event nets, blended with the drift-aware n-gram.

Shape legend: ``P`` sequences (prefixes) predicted together, ``d`` model width, ``V`` type names
(the vocabulary without ``<pad>``/``<unk>``, :data:`~ejc.data.sequence.END` among them when the
model was trained on complete cases).

``ejc train`` chooses every part on its holdout and writes it to ``MODEL/predictor/``; the
facade (:class:`~ejc.infer.event_jepa.EventJEPA`) loads it and answers ``predict_next`` with it.
Three roles, each an average over its members (nets that differ in seed; a net can serve
several roles):

- ``type``: the next type's distribution, END included (its argmax is ``event_type``);
- ``gap``: the next gap, the median of each member's log-normal mixture, averaged;
- ``cont``: the next type's distribution *given that the entity goes on* (its argmax over the
  non-END types is ``if_continuing``).

Then :class:`Blend`: each role mixed with the drift-aware n-gram, ``(1 - w) model + w n-gram``,
``w`` chosen on the holdout per role (0: the nets alone).

Layout of ``MODEL/predictor/``: ``predictor.json`` (format, names, roles, members, blend,
time scales, quantile) , ``member_<i>.safetensors`` (one net each), ``ngram.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ejc.config import Config
from ejc.data.sequence import END, EventSequence
from ejc.errors import CheckpointError
from ejc.eval.metrics import scores_of_probs
from ejc.model.encoder import to_tensors
from ejc.model.jepa import EventJEPAModel
from ejc.model.next_event import NextEventNet, TimeScale
from ejc.model.ngram import NGramPredictor
from ejc.train.data import DataSpec

PREDICTOR_DIR = "predictor"
FORMAT_VERSION = 1
ROLES = ("type", "gap", "cont")
BLEND_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass
class Blend:
    """Convex blend of the nets with the n-gram per role; a weight of 0 is the nets alone."""

    type_weight: float = 0.0
    gap_weight: float = 0.0
    cont_weight: float = 0.0
    holdout: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> {weight: holdout value}

    def probs(self, p_model: np.ndarray, p_ngram: np.ndarray, weight: float) -> np.ndarray:
        return (1 - weight) * p_model + weight * p_ngram

    def gaps(self, g_model: np.ndarray, g_ngram: np.ndarray) -> np.ndarray:
        g_ngram = np.where(np.isfinite(g_ngram), g_ngram, g_model)  # the net's gap where the n-gram has none
        return (1 - self.gap_weight) * g_model + self.gap_weight * g_ngram


def choose_blend(p_type: np.ndarray, g_model: np.ndarray, p_cont: np.ndarray, p_ngram: np.ndarray, g_ngram: np.ndarray, targets: Any, names: list[str], weights: tuple[float, ...] = BLEND_WEIGHTS) -> Blend:
    """Per role the weight with the best holdout value: accuracy incl. END (types), time MAE
    (gaps), accuracy_excl_end (continuation types); ties go to the smaller weight (more model)."""
    out = Blend(holdout={"accuracy": {}, "time_mae_days": {}, "accuracy_excl_end": {}})
    best = {"accuracy": -1.0, "time_mae_days": float("inf"), "accuracy_excl_end": -1.0}
    for w in weights:
        b = Blend(w, w, w)
        sc = scores_of_probs(b.probs(p_type, p_ngram, w), b.gaps(g_model, g_ngram), targets, names, b.probs(p_cont, p_ngram, w))
        for k in best:
            out.holdout[k][str(w)] = sc[k]
        if sc["accuracy"] > best["accuracy"] + 1e-12:
            best["accuracy"], out.type_weight = sc["accuracy"], w
        if np.isfinite(sc["time_mae_days"]) and sc["time_mae_days"] < best["time_mae_days"] - 1e-12:
            best["time_mae_days"], out.gap_weight = sc["time_mae_days"], w
        if sc["accuracy_excl_end"] > best["accuracy_excl_end"] + 1e-12:
            best["accuracy_excl_end"], out.cont_weight = sc["accuracy_excl_end"], w
    return out


@dataclass
class Prediction:
    """What the predictor says about the next event of each of ``P`` sequences."""

    names: list[str]
    probs: np.ndarray  # [P, V] next type, END included
    cont_probs: np.ndarray  # [P, V] next type given the entity goes on (END column kept; argmax skips it)
    gaps: np.ndarray  # [P] seconds to the next event (were there one)
    states: torch.Tensor  # [P, d] the first type member's state at each sequence's last event

    def types(self) -> list[str]:
        return [self.names[i] for i in self.probs.argmax(1)]

    def continuation(self) -> list[str]:
        p = self.cont_probs.copy()
        if END in self.names:
            p[:, self.names.index(END)] = -np.inf
        return [self.names[i] for i in p.argmax(1)]


class NextEventPredictor:
    """``nets`` (members) serving ``roles`` (role -> member indices), blended with ``ngram``."""

    def __init__(self, nets: list[NextEventNet], roles: dict[str, list[int]], spec: DataSpec, ngram: NGramPredictor | None = None, blend: Blend | None = None, quantile: float = 0.5, members: list[dict[str, Any]] | None = None):
        missing = [r for r in ROLES if not roles.get(r)]
        if missing:
            raise CheckpointError(f"the predictor has no members for role(s) {missing}")
        self.nets, self.roles, self.spec = nets, {r: list(roles[r]) for r in ROLES}, spec
        self.ngram, self.blend, self.quantile = ngram, blend or Blend(), quantile
        self.members = members or [{} for _ in nets]
        self.names = list(spec.vocab.itos[2:])
        self._cols = torch.as_tensor([spec.vocab.stoi[t] for t in self.names])
        cfg = nets[0].jepa.cfg
        self.max_len = cfg.train.max_len
        self._pad = 2 ** (cfg.model.num_levels - 1) if cfg.model.encoder == "hierarchical" else 1
        for n in nets:
            n.eval()

    def subset(self, members: list[int] | None = None, blend: bool = True) -> NextEventPredictor:
        """A view on the same nets: only ``members`` per role (None: all), without the n-gram when not ``blend``."""
        roles = {r: [i for i in idx if members is None or i in members] for r, idx in self.roles.items()}
        return NextEventPredictor(self.nets, roles, self.spec, self.ngram if blend else None, self.blend if blend else Blend(), self.quantile, self.members)

    @property
    def first(self) -> NextEventNet:
        """The first ``type`` member: the net whose heads give modalities, vectors and sampled gaps."""
        return self.nets[self.roles["type"][0]]

    @torch.no_grad()
    def predict(self, seqs: list[EventSequence], batch_size: int = 512) -> Prediction:
        """The next event of every sequence (each read at its last event; the last ``train.max_len`` events are context)."""
        parts = [self._predict(seqs[i : i + batch_size]) for i in range(0, len(seqs), batch_size)]
        if not parts:
            z = np.zeros((0, len(self.names)))
            return Prediction(self.names, z, z, np.zeros(0), torch.zeros(0, self.first.jepa.cfg.model.d_model))
        return Prediction(self.names, np.concatenate([p.probs for p in parts]), np.concatenate([p.cont_probs for p in parts]), np.concatenate([p.gaps for p in parts]), torch.cat([p.states for p in parts]))

    def _predict(self, seqs: list[EventSequence]) -> Prediction:
        cropped = [s[len(s) - self.max_len :] if len(s) > self.max_len else s for s in seqs]
        dev = next(self.first.parameters()).device
        bt = to_tensors(self.spec.collate(cropped, None, self._pad), dev)
        rows = torch.arange(len(cropped), device=dev)
        last = torch.as_tensor([len(s) - 1 for s in cropped], device=dev)
        used = sorted({i for r in ROLES for i in self.roles[r]})
        h = {i: self.nets[i].states(bt)[rows, last].float() for i in used}  # member -> [P, d]
        probs = {i: torch.softmax(self.nets[i].type_logits(h[i]), -1)[:, self._cols.to(dev)].double().cpu().numpy() for i in set(self.roles["type"]) | set(self.roles["cont"])}
        p_type = np.mean([probs[i] for i in self.roles["type"]], 0)
        p_cont = np.mean([probs[i] for i in self.roles["cont"]], 0)
        gaps = np.mean([self.nets[i].gap_quantile(h[i], self.quantile).double().cpu().numpy() for i in self.roles["gap"]], 0)
        if self.ngram is not None:
            types = [[str(t) for t in s.event_types] if s.event_types is not None else [] for s in seqs]
            p_ng = np.stack([self.ngram.distribution(t, self.names) for t in types])
            g_ng = np.array([self.ngram.predict(t)[1] for t in types], np.float64)
            b = self.blend
            p_type, p_cont, gaps = b.probs(p_type, p_ng, b.type_weight), b.probs(p_cont, p_ng, b.cont_weight), b.gaps(gaps, g_ng)
        return Prediction(self.names, p_type, p_cont, gaps, h[self.roles["type"][0]])

    # -- persistence ------------------------------------------------------------------------
    def save(self, model_dir: str | os.PathLike[str]) -> Path:
        """Write ``MODEL/predictor/`` (member weights, roles, blend, n-gram counts)."""
        d = Path(model_dir) / PREDICTOR_DIR
        d.mkdir(parents=True, exist_ok=True)
        for i, net in enumerate(self.nets):
            save_file({k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}, str(d / f"member_{i}.safetensors"))
        if self.ngram is not None:
            (d / "ngram.json").write_text(json.dumps(self.ngram.to_dict()))
        meta = {
            "format_version": FORMAT_VERSION,
            "names": self.names,
            "roles": self.roles,
            "members": [{**m, "time_scale": net.scale.to_dict(), "drift": net.use_drift} for m, net in zip(self.members, self.nets)],
            "blend": asdict(self.blend),
            "ngram": self.ngram is not None,
            "quantile": self.quantile,
            "config": self.first.jepa.cfg.to_dict(),
            "data_spec": self.spec.to_dict(),
        }
        (d / "predictor.json").write_text(json.dumps(meta, indent=2))
        return d

    @classmethod
    def exists(cls, model_dir: str | os.PathLike[str]) -> bool:
        return (Path(model_dir) / PREDICTOR_DIR / "predictor.json").is_file()

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> NextEventPredictor:
        d = Path(model_dir) / PREDICTOR_DIR
        try:
            meta = json.loads((d / "predictor.json").read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{d / 'predictor.json'}: unreadable predictor metadata: {e}") from e
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{d}: predictor format {meta.get('format_version')} is not {FORMAT_VERSION}; re-train with `ejc train`")
        cfg = Config.from_dict(meta["config"])
        spec = DataSpec.from_dict(meta["data_spec"])
        nets = []
        for i, m in enumerate(meta["members"]):
            net = NextEventNet(EventJEPAModel(cfg, spec.modality_dims, len(spec.vocab)), TimeScale.from_dict(m["time_scale"]), drift=bool(m.get("drift", True)))
            path = d / f"member_{i}.safetensors"
            try:
                net.load_state_dict(load_file(str(path)))
            except Exception as e:
                raise CheckpointError(f"{path}: missing, corrupted or of another architecture: {e}") from e
            nets.append(net.to(device))
        ngram = None
        if meta.get("ngram"):
            try:
                ngram = NGramPredictor.from_dict(json.loads((d / "ngram.json").read_text()))
            except (OSError, ValueError, KeyError) as e:
                raise CheckpointError(f"{d / 'ngram.json'}: unreadable n-gram counts: {e}") from e
        b = meta.get("blend", {})
        blend = Blend(float(b.get("type_weight", 0)), float(b.get("gap_weight", 0)), float(b.get("cont_weight", 0)), b.get("holdout", {}))
        out = cls(nets, meta["roles"], spec, ngram, blend, float(meta.get("quantile", 0.5)), [{k: v for k, v in m.items() if k not in ("time_scale", "drift")} for m in meta["members"]])
        if out.names != meta["names"]:
            raise CheckpointError(f"{d}: the saved type names do not match the vocabulary; the predictor is corrupted")
        return out


__all__ = ["BLEND_WEIGHTS", "Blend", "NextEventPredictor", "PREDICTOR_DIR", "Prediction", "ROLES", "choose_blend"]
