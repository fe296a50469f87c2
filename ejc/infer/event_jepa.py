"""``EventJEPA``: the user-facing model (seed 000's API) over the JEPA module.

Shape legend: ``n`` events in a sequence, ``d`` model width, ``L_i`` positions at level ``i``.

    model = EventJEPA.from_pretrained("runs/pretrain")
    out = model.process(seq)            # per-event [n, d], per-level, pooled [d]
    nxt = model.predict_next(seq, num_steps=3, temperature=0.0)
    res = model.anomaly_scores(seq)     # per-event scores, sequence score, calibrated thresholds
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ejc.config import Config, apply_overrides, load_config
from ejc.data.sequence import EventSequence
from ejc.embed.tokens import TypeVocab
from ejc.data.sequence import END
from ejc.errors import CheckpointError, EjcError
from ejc.infer.detector import SequenceDetector
from ejc.infer.predictor import NextEventPredictor
from ejc.infer.validate import check_sequence, check_sequences
from ejc.infer.anomaly import AnomalyResult, Calibration, combine, fit_calibration
from ejc.model.encoder import BatchTensors, to_tensors
from ejc.model.jepa import EventJEPAModel
from ejc.train.checkpoint import load_checkpoint
from ejc.train.data import DataSpec, load_sequences

CALIBRATION_FILE = "calibration.json"
PRECISIONS = ("fp32", "bf16")


@dataclass
class ProcessOutput:
    events: np.ndarray  # [n, d] per-event representations
    levels: list[np.ndarray]  # level i: [ceil(n / 2**i), d]
    pooled: np.ndarray  # [d] sequence representation


@dataclass
class PredictedEvent:
    timestamp: float  # predicted time (last time + gap; positions if the sequence is untimed)
    gap: float  # predicted seconds after the previous event
    event_type: str | None
    type_probs: dict[str, float]  # top types with probabilities
    modality: str
    modality_probs: dict[str, float]
    embedding: np.ndarray | None  # [d_m] predicted vector of ``modality`` (None if it has no vectors)
    # the most likely type given that the entity goes on (never END); for a predicted END,
    # ``gap`` / ``timestamp`` say when that next event would come
    if_continuing: str | None = None


class EventJEPA:
    """Event-JEPA model facade.

    Args:
        embedding_dim: width of the event vectors of a single-modality model built from scratch
            (seed 000: ``EventJEPA(embedding_dim=768, num_levels=3)``); use :meth:`fit` or
            :meth:`from_pretrained` for data with several modalities or event types.
        num_levels: hierarchy levels (resolution ``2**i`` at level ``i``).
        config: preset name, YAML path or :class:`Config`.
        modality: modality name of ``embedding_dim``.
        overrides: ``key=value`` config overrides, e.g. ``["model.d_model=64"]``.
        device: torch device of the network ("cpu", "cuda", "cuda:1").
        precision: "fp32" or "bf16": the encoder runs under bfloat16 autocast (outputs stay
            float32, relative difference ~4e-3). Measured 2026-12-04: 1.2-1.5x the events/s of
            fp32 on an AVX-512-bf16 CPU, slower than fp32 on an H200 at these model widths
            (``benchmarks/inference_throughput.py``; RESULTS, "Inference throughput").
    """

    def __init__(
        self,
        embedding_dim: int | None = None,
        num_levels: int | None = None,
        config: Config | str = "base",
        modality: str = "default",
        overrides: list[str] | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        _spec: DataSpec | None = None,
        _state: dict[str, torch.Tensor] | None = None,
        _calibration: Calibration | None = None,
        _predictor: NextEventPredictor | None = None,
        _detector: SequenceDetector | None = None,
    ):
        ov = list(overrides or [])
        if num_levels is not None:
            ov.append(f"model.num_levels={num_levels}")
        self.config = load_config(config, ov) if isinstance(config, str) else apply_overrides(config, ov)
        if _spec is None:
            if embedding_dim is None:
                raise EjcError("EventJEPA needs embedding_dim (or use EventJEPA.fit / EventJEPA.from_pretrained)")
            _spec = DataSpec({modality: int(embedding_dim)}, TypeVocab([]))
        self.spec = _spec
        self.device = torch.device(device)
        if precision not in PRECISIONS:
            raise EjcError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.predictor = _predictor
        self.detector = _detector
        if _predictor is not None:  # one model: the facade's network is the predictor's first type member
            self.model = _predictor.first.jepa.to(self.device)
        else:
            self.model = EventJEPAModel(self.config, self.spec.modality_dims, len(self.spec.vocab)).to(self.device)
            if _state is not None:
                self.model.load_checkpoint_state(_state)
        self.model.eval()
        self.calibration = _calibration
        self._pad = 2 ** (self.config.model.num_levels - 1) if self.config.model.encoder == "hierarchical" else 1

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], device: str = "cpu", precision: str = "fp32") -> EventJEPA:
        """Load a model trained by ``ejc train`` / :meth:`fit` or ``ejc pretrain`` (run or step directory).

        A model from ``ejc train`` holds ``predictor/``: ``predict_next`` then answers with the
        shipped predictor (ensemble, drift feature, blend with the n-gram), END included.
        """
        cfg, spec, state, _, _ = load_checkpoint(path, with_trainer=False)
        cal = None
        cal_path = Path(path) / CALIBRATION_FILE
        if cal_path.is_file():
            cal = Calibration.load(cal_path)
        pred = NextEventPredictor.load(path, device) if NextEventPredictor.exists(path) else None
        if pred is not None and pred.spec.to_dict() != spec.to_dict():
            raise CheckpointError(f"{path}: the checkpoint and predictor/ were trained on different vocabularies; the model directory is corrupted")
        det = SequenceDetector.load(path) if pred is not None else None
        return cls(config=cfg, device=device, precision=precision, _spec=spec, _state=state, _calibration=cal, _predictor=pred, _detector=det)

    @classmethod
    def untrained_like(cls, other: EventJEPA, seed: int = 0) -> EventJEPA:
        """A randomly initialised model with ``other``'s config and data spec (a probe baseline)."""
        torch.manual_seed(seed)
        return cls(config=other.config, device=str(other.device), _spec=other.spec)

    @classmethod
    def fit(cls, events: Any, out: str | os.PathLike[str], config: Config | str = "compact", overrides: list[str] | None = None, progress: Any = None, calibrate: bool = True) -> EventJEPA:
        """Train with the ``ejc train`` recipe on ``events`` into ``out`` and return the loaded model.

        ``events``: an event table (path, ingest directory or Arrow table) or a list of
        :class:`EventSequence`. ``progress``: a callable receiving one line per stage.
        """
        from ejc.train.recipe import train_model

        cfg = load_config(config, overrides) if isinstance(config, str) else config
        seqs = list(events) if isinstance(events, list) else load_sequences(events, cfg.train.min_events)[0]
        train_model(cfg, seqs, out, progress=progress if callable(progress) else None, calibrate=calibrate)
        return cls.from_pretrained(out)

    # -- batching ---------------------------------------------------------------------------
    def _tensors(self, seqs: list[EventSequence]) -> BatchTensors:
        return to_tensors(self.spec.collate(seqs, pad_to_multiple=self._pad), self.device)

    def _amp(self) -> Any:
        """The autocast context of ``precision`` (a no-op for fp32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _context_states(self, bt: BatchTensors) -> torch.Tensor:
        """``[b, L, d]`` causal states the heads read: with the drift feature for a model from ``ejc train``."""
        with self._amp():
            if self.predictor is not None:
                return self.predictor.first.states(bt).float()
            return self.model.context(bt, causal=True).events.float()

    @staticmethod
    def _as_sequence(seq: EventSequence | None, embeddings: Any, timestamps: Any) -> EventSequence:
        if seq is not None:
            return seq
        if embeddings is None:
            raise EjcError("pass an EventSequence, or embeddings= (and optionally timestamps=)")
        return EventSequence(embeddings=np.asarray(embeddings, np.float32), timestamps=None if timestamps is None else np.asarray(timestamps, np.float64))

    # -- representations --------------------------------------------------------------------
    @torch.inference_mode()
    def process(self, seq: EventSequence | None = None, *, embeddings: Any = None, timestamps: Any = None) -> ProcessOutput:
        """Per-event, per-level and pooled representations (EMA target encoder, whole sequence)."""
        s = self._as_sequence(seq, embeddings, timestamps)
        check_sequence(s, self.spec, "process input")
        with self._amp():
            out = self.model.encode(self._tensors([s]))
        n = len(s)
        levels = [lv[0, : -(-n // 2**i)].float().cpu().numpy() for i, lv in enumerate(out.levels)]
        return ProcessOutput(out.events[0, :n].float().cpu().numpy(), levels, out.pooled[0].float().cpu().numpy())

    @torch.inference_mode()
    def embed_sequences(self, seqs: list[EventSequence], batch_size: int = 32) -> np.ndarray:
        """``[len(seqs), d]`` pooled representations, batched."""
        check_sequences(seqs, self.spec, "embed_sequences input", allow_empty=True)
        out = []
        for i in range(0, len(seqs), batch_size):
            with self._amp():
                out.append(self.model.encode(self._tensors(seqs[i : i + batch_size])).pooled.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.config.model.d_model), np.float32)

    # -- prediction -------------------------------------------------------------------------
    def _heads(self):  # noqa: ANN202
        if self.model.heads is None:
            raise EjcError("this model was trained without next-event heads (objective.future=false); retrain with objective.future=true to predict")
        return self.model.heads

    def predict_next(self, seq: EventSequence, num_steps: int = 1, temperature: float = 0.0, top_k: int = 5, seed: int | None = None) -> list[PredictedEvent]:
        """Predict the next ``num_steps`` events autoregressively.

        ``temperature`` 0 takes the most likely type and modality and the median gap; above 0
        samples them (types and modalities from softmax(logits / T), gaps from the mixture).
        Only the last ``train.max_len`` events are used as context.
        """
        return self.predict_next_batch([seq], num_steps, temperature, top_k, seed)[0]

    def predict_next_batch(self, seqs: list[EventSequence], num_steps: int = 1, temperature: float = 0.0, top_k: int = 5, seed: int | None = None) -> list[list[PredictedEvent]]:
        """:meth:`predict_next` for several sequences at once (one padded forward pass per step).

        Greedy results (``temperature`` 0) do not depend on which sequences share the batch;
        sampled ones draw from one generator, so they do (one sequence equals ``predict_next``).
        """
        from ejc.infer.simulate import sample_step

        self._heads()
        check_sequences(seqs, self.spec, "predict_next input")
        if self.predictor is not None:
            return self._predict_shipped(list(seqs), num_steps, temperature, top_k, seed)
        gen = torch.Generator().manual_seed(int(seed if seed is not None else 0))
        curs = list(seqs)
        preds: list[list[PredictedEvent]] = [[] for _ in seqs]
        for _ in range(num_steps if seqs else 0):
            events = sample_step(self, curs, temperature, gen, top_k=top_k)
            for i, ev in enumerate(events):
                assert ev is not None  # no constraints: some type is always allowed
                preds[i].append(ev)
                curs[i] = append_event(curs[i], ev)
        return preds

    @torch.no_grad()
    def _predict_shipped(self, seqs: list[EventSequence], num_steps: int, temperature: float, top_k: int, seed: int | None) -> list[list[PredictedEvent]]:
        """``predict_next_batch`` with the shipped predictor; a sequence whose predicted event is END stops there."""
        pred_model = self.predictor
        assert pred_model is not None
        heads = self._heads()
        gen = torch.Generator().manual_seed(int(seed if seed is not None else 0))
        names, mods = pred_model.names, self.spec.modalities
        curs = list(seqs)
        active = list(range(len(seqs)))
        out: list[list[PredictedEvent]] = [[] for _ in seqs]
        for _ in range(num_steps):
            if not active:
                break
            p = pred_model.predict([curs[i] for i in active])
            h = p.states.to(self.device)
            probs = p.probs
            gaps = p.gaps
            if temperature > 0:
                logits = np.log(np.clip(probs, 1e-30, None)) / temperature
                probs = np.exp(logits - logits.max(1, keepdims=True))
                probs /= probs.sum(1, keepdims=True)
                picks = [int(torch.multinomial(torch.as_tensor(row), 1, generator=gen)) for row in probs]
                gaps = heads.gap.sample(h, temperature, gen).double().cpu().numpy()
            else:
                picks = [int(i) for i in probs.argmax(1)]
            cont = p.continuation()
            m_probs = torch.softmax(heads.modality_head(h).float()[:, : len(mods)], -1).cpu().numpy()
            still = []
            for j, i in enumerate(active):
                s = curs[i]
                typ = names[picks[j]]
                gap = float(gaps[j]) if s.timestamps is not None else 1.0
                m_id = int(m_probs[j].argmax())
                modality = mods[m_id]
                vec = None
                if typ != END and modality in self.spec.modality_dims:
                    tid = torch.as_tensor([self.spec.vocab.stoi[typ]], device=self.device)
                    vec = heads.predict_vector(modality, h[j : j + 1], tid)[0].float().cpu().numpy()
                top = np.argsort(-probs[j], kind="stable")[: max(1, top_k)]
                ev = PredictedEvent(
                    timestamp=float(s.times[-1]) + gap,
                    gap=gap,
                    event_type=typ,
                    type_probs={names[k]: float(probs[j, k]) for k in top if probs[j, k] > 0},
                    modality=modality,
                    modality_probs={mods[k]: float(m_probs[j, k]) for k in range(len(mods))},
                    embedding=vec,
                    if_continuing=cont[j],
                )
                out[i].append(ev)
                if typ != END:
                    curs[i] = append_event(s, ev)
                    still.append(i)
            active = still
        return out

    def simulate(self, seq: EventSequence, num_steps: int = 10, num_paths: int = 16, constraints: Any = None, target_state: Any = None, temperature: float = 1.0, seed: int = 0) -> Any:
        """Sample future paths under constraints; see :mod:`ejc.infer.simulate`.

        ``constraints``: a :class:`~ejc.infer.simulate.Constraints` or a dict of its fields;
        ``target_state``: a :class:`~ejc.infer.simulate.TargetState`, a dict of its fields, or an
        event-type string. Returns a :class:`~ejc.infer.simulate.SimulationResult`.
        A model from ``ejc train`` samples with its first type member (drift feature included;
        the ensemble and the n-gram blend serve ``predict_next`` only); a sampled END ends a
        path (``stopped == "end"``).
        """
        from ejc.infer.simulate import Constraints, TargetState, simulate

        check_sequence(seq, self.spec, "simulate input")
        if isinstance(constraints, dict):
            constraints = Constraints(**constraints)
        if isinstance(target_state, str):
            target_state = TargetState(event_type=target_state)
        elif isinstance(target_state, dict):
            target_state = TargetState(**target_state)
        self._heads()
        return simulate(self, seq, num_steps, num_paths, constraints, target_state, temperature, seed)

    # -- anomalies --------------------------------------------------------------------------
    @torch.no_grad()
    def surprise_components(self, seq: EventSequence) -> dict[str, np.ndarray]:
        """Raw per-event surprise components ``{name: [n]}`` (NaN where not applicable)."""
        check_sequence(seq, self.spec, "anomaly_scores input")
        heads = self._heads()
        n = len(seq)
        comps = {k: np.full(n, np.nan) for k in ("type", "gap", "embedding", "latent")}
        if n < 2:
            return comps
        bt = self._tensors([seq])
        hc = self._context_states(bt)[0, :n].float()
        tgt = self.model.target(bt).events[0, :n].float()
        tgt = F.layer_norm(tgt, tgt.shape[-1:])
        src = hc[:-1]
        if self.config.model.use_types:
            ids = bt.type_ids[0, 1:n]
            logp = torch.log_softmax(heads.type_head(src).float(), -1)
            nll = -logp.gather(1, ids[:, None]).squeeze(1)
            comps["type"][1:] = np.where(ids.cpu().numpy() > 0, nll.cpu().numpy(), np.nan)
        if seq.timestamps is not None:
            comps["gap"][1:] = heads.gap.nll(src, torch.as_tensor(np.diff(seq.timestamps), dtype=torch.float32, device=src.device)).cpu().numpy()
        for m in seq.dims:
            if m not in self.spec.modality_dims:
                continue
            pos = seq.vector_positions(m)
            keep = pos > 0
            if keep.any():
                vec = torch.as_tensor(seq.vectors(m)[keep], device=src.device)
                at = torch.as_tensor(pos[keep], device=src.device)
                pred = heads.predict_vector(m, hc[at - 1], bt.type_ids[0, at])
                comps["embedding"][pos[keep]] = (1 - F.cosine_similarity(pred, vec, dim=-1)).cpu().numpy()
        if heads.future:
            comps["latent"][1:] = F.smooth_l1_loss(heads.future[0](src), tgt[1:], reduction="none").mean(-1).cpu().numpy()
        return comps

    def calibrate(self, seqs: list[EventSequence], quantile: float = 0.99, save_to: str | os.PathLike[str] | None = None) -> Calibration:
        """Fit score standardisation and thresholds on (normal) training sequences.

        ``save_to``: a run directory to write ``calibration.json`` into (read by :meth:`from_pretrained`).
        """
        if not seqs:
            raise EjcError("calibrate needs at least one sequence")
        self.calibration = fit_calibration([self.surprise_components(s) for s in seqs], quantile)
        if save_to is not None:
            self.calibration.save(Path(save_to) / CALIBRATION_FILE)
        return self.calibration

    def anomaly_scores(self, seq: EventSequence) -> AnomalyResult:
        """Per-event and sequence surprise with the calibrated thresholds (inf when uncalibrated).

        A model from ``ejc train`` scores the sequence with its shipped detector
        (:mod:`ejc.infer.detector`: Fisher's combination of the largest type surprise and the
        count-vector novelty, threshold from the recipe's holdout); otherwise the sequence score
        is the mean event score and its threshold the calibration's.
        """
        comps = self.surprise_components(seq)
        scores = combine(comps, self.calibration)
        cal = self.calibration
        seq_score = float(scores.mean()) if scores.size else 0.0
        seq_threshold = cal.sequence_threshold if cal else float("inf")
        if self.detector is not None and self.predictor is not None:
            seq_score = float(self.detector.score(self.predictor.first, self.spec, [seq])[0])
            seq_threshold = self.detector.threshold
        return AnomalyResult(
            event_scores=scores,
            components=comps,
            sequence_score=seq_score,
            event_threshold=cal.event_threshold if cal else float("inf"),
            sequence_threshold=seq_threshold,
        )

    def sequence_anomaly_scores(self, seqs: list[EventSequence]) -> np.ndarray:
        """``[N]`` :meth:`anomaly_scores`' ``sequence_score`` of many sequences, batched."""
        check_sequences(seqs, self.spec, "sequence_anomaly_scores input")
        if self.detector is not None and self.predictor is not None:
            return self.detector.score(self.predictor.first, self.spec, list(seqs))
        return np.array([self.anomaly_scores(s).sequence_score for s in seqs])

    # -- patterns ---------------------------------------------------------------------------
    def detect_patterns(self, seq: EventSequence, kinds: list[str] | str | None = None, **options: Any) -> list[Any]:
        """Typed patterns (periodic, burst, cycle, regime_change, motif, registered kinds) in ``seq``.

        Delegates to :func:`ejc.infer.patterns.detect_patterns`; detectors that use per-event
        representations (regime_change) get this model's ``process(seq).events`` ``[n, d]``,
        computed only when one asks. ``options``: ``min_confidence`` and per-kind dicts.
        """
        from ejc.infer.patterns import detect_patterns

        check_sequence(seq, self.spec, "detect_patterns input")
        return detect_patterns(seq, kinds, representations=lambda: self.process(seq).events, **options)


def append_event(seq: EventSequence, ev: PredictedEvent) -> EventSequence:
    """A new sequence: ``seq`` followed by the predicted event."""
    n = len(seq)
    vecs = [seq.vector_at(i) for i in range(n)] + [ev.embedding]
    ts = None if seq.timestamps is None else np.append(seq.timestamps, ev.timestamp)
    types = None if seq.event_types is None else list(seq.event_types) + [ev.event_type]
    return EventSequence(embeddings=vecs, timestamps=ts, modality=list(seq.modalities) + [ev.modality], event_types=types, id=seq.id, metadata=seq.metadata)


__all__ = ["EventJEPA", "PredictedEvent", "ProcessOutput", "append_event"]
