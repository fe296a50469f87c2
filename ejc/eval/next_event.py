"""Next-event prediction with the ejc model: JEPA pretraining, then supervised next-event heads.

Shape legend: ``b`` cases in a batch, ``L`` padded length, ``d`` model width, ``V`` type vocabulary.

Recipe (:func:`fit_next_event`):

1. the cases get an explicit end-of-case event (:data:`~ejc.eval.protocol.END`, at the time of
   the last event), so the end is predicted as one more type;
2. the Event-JEPA model is pretrained with its own objective (``cfg.train.steps`` steps of
   :class:`~ejc.train.loop.Trainer`, JEPA + next-event terms);
3. its next-event heads are trained with the supervised loss (type cross-entropy incl. END, gap
   NLL of the log-normal mixture excl. END), the JEPA loss kept as an auxiliary term weighted
   by ``jepa_weight`` (0 switches it off). Tokens also get the event's absolute time, scaled so
   that the training cases' start times span 0..1: logs drift, and this lets the model tell
   an old regime from a recent one (test cases lie beyond 1, which the linear feature extends).
   The loss can weigh recent cases more (:func:`recency_weights`, a half-life). Every epoch
   is scored on the validation cases (loss, accuracy incl./excl. END, time MAE); the best
   epoch of each tracked criterion is kept (:func:`selection_value`), and training stops when
   none improved for ``patience`` epochs.

:func:`run_next_event` runs the selection on ``fit``/``val``: a grid of recency half-lives,
the type predictions taken from the (half-life, epoch) with the best validation accuracy and
the time predictions from the one with the best validation MAE (by default: next types and
next times need not drift at the same rate). It then refits each chosen model on all training
cases for its chosen number of epochs (the most recent cases matter most when a log drifts),
averages ``ensemble`` seeds, and predicts the test prefixes: the most likely type (END
included) and the median of the predicted gap distribution (MAE-optimal when calibrated), or
with ``median_weight > 0`` the output of a median head trained with an L1 loss (its minimiser
is the conditional median itself, whatever the shape of the gap distribution).

With ``blend`` (default) the reported ``ejc`` prediction is the model blended with the
drift-aware n-gram (:class:`Blend`): type probabilities and gaps mixed with weights chosen on
the validation cases (:func:`choose_blend`; weight 0, the model alone, when the n-gram does
not help there). The model alone is reported as ``ejc_model``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ejc.config import Config
from ejc.data.sequence import EventSequence, window_sequence
from ejc.eval.protocol import END, PrefixTargets, prefix_targets, start_time, type_list
from ejc.errors import EjcError
from ejc.model.encoder import BatchTensors, to_tensors
from ejc.model.jepa import EventJEPAModel
from ejc.train.data import DataSpec, make_windows
from ejc.train.loop import Trainer, ema_at


@dataclass
class FineTuneOptions:
    """Supervised next-event training (the model itself is configured by a :class:`Config`)."""

    max_epochs: int = 60
    patience: int = 8  # epochs without a better validation value of any tracked criterion before stopping
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    jepa_weight: float = 0.1  # auxiliary JEPA loss weight (0: off)
    gap_weight: float = 0.5  # gap NLL weight beside the type cross-entropy
    ensemble: int = 1  # models with different seeds whose predictions are averaged
    # recency half-lives tried (fractions of the training time span; None = no weighting); the
    # one best on validation by `select` (types) / `gap_select` (times) is used
    half_lives: tuple[float | None, ...] = (None, 0.3, 0.1, 0.05, 0.03, 0.02)
    select: str = "accuracy"  # epoch / half-life criterion on validation for the type predictions (selection_value)
    gap_select: str | None = "mae"  # the same for the gap predictions (None: the model chosen by `select`)
    # the same for the type predictions given that the case goes on (accuracy_excl_end; None: the `select` model)
    cont_select: str | None = "continuation"
    refit: bool = True  # refit the selected models on all training cases (fit + val)
    quantile: float = 0.5  # predicted gap = this quantile of the gap distribution
    # weight of an L1 loss on log1p(gap in hours) for a direct median head (0: off); when on,
    # the predicted gap is that head's output instead of the mixture's quantile
    median_weight: float = 0.0
    # blend the model with the drift-aware n-gram (weights chosen on validation, see choose_blend)
    blend: bool = True
    seed: int = 0


def with_end(seq: EventSequence) -> EventSequence:
    """``seq`` followed by an :data:`END` event at its last event's time (types only, no vectors)."""
    types = type_list(seq)
    if END in types:
        raise EjcError(f"sequence {seq.id!r} already has an event of type {END!r}, which names the end of a case here; rename that type")
    ts = None if seq.timestamps is None else np.append(seq.timestamps, seq.timestamps[-1])
    return EventSequence(embeddings=None, timestamps=ts, event_types=types + [END], id=seq.id)


def strip_vectors(seq: EventSequence) -> EventSequence:
    """The sequence's types and times only (next-event evaluation predicts types and gaps)."""
    return EventSequence(embeddings=None, timestamps=seq.timestamps, event_types=type_list(seq), id=seq.id)


@dataclass
class TimeScale:
    """Absolute time scaled so that the training cases' start times span 0..1."""

    origin: float
    span: float

    @classmethod
    def fit(cls, seqs: list[EventSequence]) -> TimeScale:
        starts = np.array([start_time(s) for s in seqs])
        starts = starts[np.isfinite(starts)]
        if not len(starts):
            return cls(0.0, 1.0)
        return cls(float(starts.min()), float(max(starts.max() - starts.min(), 1.0)))

    def __call__(self, abs_times: torch.Tensor) -> torch.Tensor:
        u = (abs_times.double() - self.origin) / self.span
        return torch.where(torch.isfinite(u), u, torch.zeros_like(u)).float()


class NextEventNet(nn.Module):
    """The Event-JEPA model plus a drift feature (scaled absolute time) added to its input tokens."""

    def __init__(self, jepa: EventJEPAModel, scale: TimeScale):
        super().__init__()
        self.jepa = jepa
        self.scale = scale
        self.drift = nn.Linear(1, jepa.cfg.model.d_model)
        nn.init.zeros_(self.drift.weight)
        nn.init.zeros_(self.drift.bias)
        # direct median of the next gap: log1p(gap / 1 h), trained with an L1 loss (use_median)
        self.median = nn.Linear(jepa.cfg.model.d_model, 1)
        self.use_median = False

    def median_gap(self, h: torch.Tensor) -> torch.Tensor:
        """``[...]`` predicted median gap (seconds) from the median head."""
        return torch.expm1(self.median(h).squeeze(-1).clamp(0, 20)) * 3600.0

    def states(self, bt: BatchTensors) -> torch.Tensor:
        """``[b, L, d]`` causal context states: position ``t`` sees events ``<= t`` only."""
        enc = self.jepa.context
        x = enc.embed(bt) + self.drift(self.scale(bt.abs_times).unsqueeze(-1)) * bt.valid.unsqueeze(-1)
        return enc.encoder(x, bt.valid, causal=True).events

    def type_logits(self, h: torch.Tensor) -> torch.Tensor:
        assert self.jepa.heads is not None
        logits = self.jepa.heads.type_head(h)
        logits[..., :2] = float("-inf")  # <pad>, <unk> are never predicted
        return logits

    def supervised_loss(self, bt: BatchTensors, gap_weight: float, end_id: int, weights: torch.Tensor | None = None, median_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        """Type CE over every (prefix, next) pair incl. END; gap NLL over pairs not ending the case.

        ``weights``: ``[b]`` per-sequence loss weights (weighted means; all 1 when not given).
        ``median_weight``: weight of the median head's L1 loss on ``log1p(gap / 1 h)`` (its
        minimiser is the conditional median, so the head predicts the MAE-optimal gap).
        """
        heads = self.jepa.heads
        assert heads is not None
        h = self.states(bt)
        pair = bt.valid[:, :-1] & bt.valid[:, 1:]
        w = (weights if weights is not None else torch.ones(pair.shape[0])).unsqueeze(1).expand_as(pair)[pair]
        src = h[:, :-1][pair]
        nxt = bt.type_ids[:, 1:][pair]
        keep = nxt > 1
        ce_all = F.cross_entropy(heads.type_head(src[keep]), nxt[keep], reduction="none") if keep.any() else src.sum(-1)[:0]
        ce = (ce_all * w[keep]).sum() / w[keep].sum().clamp_min(1e-12) if keep.any() else src.sum() * 0
        total = ce
        parts = {"type": float(ce.detach())}
        timed = bt.has_time.unsqueeze(1).expand_as(pair)[pair] & (nxt != end_id)
        if timed.any():
            gap = (bt.times[:, 1:] - bt.times[:, :-1])[pair]
            nll_all = heads.gap.nll(src[timed], gap[timed])
            nll = (nll_all * w[timed]).sum() / w[timed].sum().clamp_min(1e-12)
            total = total + gap_weight * nll
            parts["gap_nll"] = float(nll.detach())
            if median_weight > 0:
                y = torch.log1p(gap[timed].clamp_min(0) / 3600.0)
                l1 = ((self.median(src[timed]).squeeze(-1) - y).abs() * w[timed]).sum() / w[timed].sum().clamp_min(1e-12)
                total = total + median_weight * l1
                parts["gap_l1"] = float(l1.detach())
        return total, parts


SELECTIONS = ("loss", "accuracy", "mae", "continuation")


def selection_value(rec: dict[str, float], select: str) -> float:
    """The early-stopping / model-selection criterion of a validation record (lower is better).

    ``loss``: the validation loss (type cross-entropy + weighted gap NLL). ``accuracy``: minus
    the validation accuracy incl. END; ``mae``: the validation time MAE (days, excl. END);
    ``continuation``: minus the validation accuracy of the most likely non-END type on the
    targets that are not END (``accuracy_excl_end``). For the last three a lower loss only
    breaks exact ties (its share is < 1e-6).
    """
    if select == "loss":
        return rec["val_loss"]
    if select == "accuracy":
        return -rec["val_accuracy"] + 1e-6 * math.tanh(rec["val_loss"])
    if select == "mae":
        return rec["val_time_mae_days"] + 1e-6 * math.tanh(rec["val_loss"])
    if select == "continuation":
        return -rec["val_accuracy_excl_end"] + 1e-6 * math.tanh(rec["val_loss"])
    raise EjcError(f"unknown selection criterion {select!r}; use one of {SELECTIONS}")


def _batches(n: int, size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i : i + size] for i in range(0, n, size)]


@dataclass
class FitResult:
    net: NextEventNet
    spec: DataSpec
    epochs: int  # epochs trained
    best_epoch: int  # epoch with the best validation loss (== epochs without validation)
    best_val_loss: float = float("nan")
    half_life: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    best_value: float = float("nan")  # the selection criterion at the best epoch (lower is better)
    best_record: dict[str, float] = field(default_factory=dict)  # the validation record of the best epoch
    criterion: str = "loss"  # the criterion ``net`` / ``best_*`` were selected by
    # criterion -> (best value, best epoch, state_dict) of every criterion tracked on validation
    snapshots: dict[str, tuple[float, int, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def for_criterion(self, criterion: str) -> FitResult:
        """This fit as selected by another tracked criterion (a copy of the net at that epoch)."""
        if criterion == self.criterion:
            return self
        if criterion not in self.snapshots:
            raise EjcError(f"criterion {criterion!r} was not tracked in this fit (tracked: {sorted(self.snapshots)})")
        value, epoch, state = self.snapshots[criterion]
        net = copy.deepcopy(self.net)
        net.load_state_dict(state)
        net.eval()
        rec = next((r for r in self.history if r["epoch"] == epoch), {})
        return FitResult(net, self.spec, self.epochs, epoch, rec.get("val_loss", float("nan")), self.half_life, self.history, self.seconds, value, rec, criterion, self.snapshots)


def names_of(fitted: FitResult | Trainer) -> list[str]:
    """The type names a model's probabilities run over (its vocabulary without ``<pad>``/``<unk>``)."""
    return list(fitted.spec.vocab.itos[2:])


Progress = Callable[[str], None]  # receives one line per stage / epoch (the CLI prints it to stderr)


def pretrain_cases(cfg: Config, train: list[EventSequence], seed: int = 0, progress: Progress | None = None) -> Trainer:
    """JEPA-pretrain (the model's own objective, ``cfg.train.steps`` steps) on ``train`` + END events."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    cfg = copy.deepcopy(cfg)
    cfg.train.seed = seed
    cases = [with_end(s) for s in train]
    spec = DataSpec.from_sequences(cases, cfg.model.max_types)
    trainer = Trainer(cfg, spec, make_windows(cases, cfg.train.max_len, cfg.train.stride), "cpu")
    every = max(1, cfg.train.steps // 4)
    for i in range(1, cfg.train.steps + 1):
        parts = trainer.step()
        if progress is not None and (i % every == 0 or i == cfg.train.steps):
            progress(f"JEPA pretraining (seed {seed}, {len(train)} sequences): step {i}/{cfg.train.steps}, loss {parts['loss']:.4f} ({time.perf_counter() - t0:.0f} s)")
    return trainer


def recency_weights(train: list[EventSequence], half_life: float | None) -> np.ndarray:
    """``[n]`` case weights ``2 ** -(age / half_life)``; age = (latest start - start) / start-time span.

    ``None`` weighs every case 1. Logs drift: recent cases say more about what comes next.
    """
    if half_life is None:
        return np.ones(len(train))
    if half_life <= 0:
        raise EjcError(f"recency half-life must be positive (a fraction of the training time span), got {half_life}")
    u = np.array([start_time(s) for s in train])
    scale = TimeScale.fit(train)
    age = np.where(np.isfinite(u), (np.nanmax(u) - u) / scale.span, 0.0) if np.isfinite(u).any() else np.zeros(len(train))
    return np.power(2.0, -age / half_life)


def fit_next_event(
    cfg: Config,
    train: list[EventSequence],
    val: list[EventSequence] | None,
    opts: FineTuneOptions,
    epochs: int | None = None,
    seed: int = 0,
    pretrained: Trainer | None = None,
    half_life: float | None = None,
    progress: Progress | None = None,
) -> FitResult:
    """Fine-tune next-event heads on ``train``; with ``val``, stop early on its loss and keep the best epoch.

    ``pretrained``: a :func:`pretrain_cases` result on the same ``train`` (copied, not changed);
    pretrained here when not given. Without ``val``, trains exactly ``epochs`` epochs (the refit
    on all training cases). ``half_life``: recency weighting of the loss (:func:`recency_weights`).
    ``progress`` gets one line per epoch.
    """
    t0 = time.perf_counter()
    trainer = copy.deepcopy(pretrained) if pretrained is not None else pretrain_cases(cfg, train, seed, progress)
    torch.manual_seed(seed)
    cfg, spec = trainer.cfg, trainer.spec
    end_id = int(spec.vocab.encode([END])[0])
    weights_of_case = recency_weights(train, half_life)
    windows: list[EventSequence] = []
    window_weight: list[float] = []
    for ci, s in enumerate(train):
        for w in window_sequence(with_end(s), cfg.train.max_len, cfg.train.stride or max(1, cfg.train.max_len // 2)):
            windows.append(w)
            window_weight.append(float(weights_of_case[ci]))
    wts = np.asarray(window_weight)
    net = NextEventNet(trainer.model, TimeScale.fit(train))
    net.use_median = opts.median_weight > 0
    pad = trainer.pad_multiple
    opt = torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed + 1)

    def tensors(seqs: list[EventSequence]) -> BatchTensors:
        return to_tensors(spec.collate(seqs, cfg.train.max_len, pad))

    val_batches = [tensors([with_end(val[i]) for i in idx]) for idx in _batches(len(val), 256, None)] if val else []
    val_t = prefix_targets(val) if val else None
    names = names_of(trainer)
    n_epochs = opts.max_epochs if epochs is None else epochs
    steps_per_epoch = math.ceil(len(windows) / opts.batch_size)
    total_steps = max(1, n_epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    criteria = list(dict.fromkeys([opts.select, *(c for c in (opts.gap_select, opts.cont_select) if c)]))
    best: dict[str, tuple[float, int, dict[str, Any]]] = {}
    step = 0
    use_jepa = opts.jepa_weight > 0 and cfg.objective.jepa
    for epoch in range(1, n_epochs + 1):
        net.train()
        for idx in _batches(len(windows), opts.batch_size, rng):
            for g in opt.param_groups:  # cosine decay over the planned steps
                g["lr"] = opts.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))
            bt = tensors([windows[i] for i in idx])
            loss, _ = net.supervised_loss(bt, opts.gap_weight, end_id, torch.as_tensor(wts[idx], dtype=torch.float32), opts.median_weight)
            if use_jepa:
                loss = loss + opts.jepa_weight * net.jepa.jepa_loss(bt, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
            opt.step()
            if use_jepa:
                net.jepa.update_target(ema_at(cfg, cfg.train.steps))
            step += 1
        rec: dict[str, float] = {"epoch": epoch}
        if val_batches:
            net.eval()
            with torch.no_grad():
                losses = [net.supervised_loss(bt, opts.gap_weight, end_id, median_weight=opts.median_weight) for bt in val_batches]
            weights = [int(bt.valid.sum()) for bt in val_batches]
            rec["val_loss"] = float(np.average([float(lo) for lo, _ in losses], weights=weights))
            rec["val_type"] = float(np.average([p["type"] for _, p in losses], weights=weights))
            vp, vg = _raw_predictions(net, spec, val, val_t, names)
            rec.update({f"val_{k}": v for k, v in scores_of_probs(vp, vg[:, 0], val_t, names).items()})
            for c in criteria:  # keep each criterion's best epoch; stop when none improved for `patience`
                v = selection_value(rec, c)
                if c not in best or v < best[c][0] - 1e-6:
                    best[c] = (v, epoch, copy.deepcopy(net.state_dict()))
            stop = all(epoch - best[c][1] >= opts.patience for c in criteria)
            if progress is not None:
                progress(f"fine-tune (half-life {half_life}, seed {seed}) epoch {epoch}/{n_epochs}: val accuracy {rec['val_accuracy']:.4f}, "
                         f"excl. END {rec['val_accuracy_excl_end']:.4f}, time MAE {rec['val_time_mae_days']:.3f} d ({time.perf_counter() - t0:.0f} s){', early stop' if stop else ''}")
            if stop:
                history.append(rec)
                break
        elif progress is not None:
            progress(f"refit (half-life {half_life}, seed {seed}) on {len(train)} cases: epoch {epoch}/{n_epochs} ({time.perf_counter() - t0:.0f} s)")
        history.append(rec)
    net.eval()
    out = FitResult(net, spec, len(history), n_epochs, float("nan"), half_life, history, time.perf_counter() - t0, criterion=opts.select, snapshots=best)
    if best:
        value, epoch, state = best[opts.select]
        net.load_state_dict(state)
        rec = next(r for r in history if r["epoch"] == epoch)
        out.best_epoch, out.best_val_loss, out.best_value, out.best_record = epoch, rec["val_loss"], value, rec
    return out


@torch.no_grad()
def _raw_predictions(net: NextEventNet, spec: DataSpec, cases: list[EventSequence], targets: PrefixTargets, names: list[str], quantiles: tuple[float, ...] = (0.5,), batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``(probs [N, V'] over names, gap quantiles [N, Q] seconds)`` of one model for every prefix in ``targets``."""
    was_training = net.training
    net.eval()
    cfg = net.jepa.cfg
    n = len(targets)
    probs = np.zeros((n, len(names)))
    gaps = np.zeros((n, len(quantiles)))
    row_of = {(int(c), int(k)): j for j, (c, k) in enumerate(zip(targets.case, targets.length))}
    cols = np.array([spec.vocab.stoi.get(t, 1) for t in names])
    pad = 2 ** (cfg.model.num_levels - 1) if cfg.model.encoder == "hierarchical" else 1
    for idx in _batches(len(cases), batch, None):
        seqs = [strip_vectors(cases[i]) for i in idx]
        # every prefix of a case reads its state at its last position (the encoder is causal);
        # cases longer than train.max_len are cut into windows of stride max_len // 2, and a
        # prefix is read from the earliest window that holds its last event (the most context)
        L = cfg.train.max_len
        jobs: list[tuple[int, int, EventSequence]] = []
        for ci, s in zip(idx, seqs):
            for lo in range(0, max(1, len(s) - L // 2), max(1, L // 2)) if len(s) > L else [0]:
                jobs.append((int(ci), lo, s[lo : lo + L]))
        bt = to_tensors(spec.collate([j[2] for j in jobs], None, pad))
        h = net.states(bt)
        prob = torch.softmax(net.type_logits(h), -1).numpy()
        flat = h.reshape(-1, h.shape[-1])
        if net.use_median:  # the median head (one value whatever the quantiles asked)
            qs = np.repeat(net.median_gap(h).numpy()[..., None], len(quantiles), -1)
        else:
            qs = np.stack([net.jepa.heads.gap.quantile(flat, q).reshape(h.shape[:2]).numpy() for q in quantiles], -1)  # type: ignore[union-attr]
        done: set[int] = set()
        for bi, (ci, lo, s) in enumerate(jobs):
            for pos in range(len(s)):
                j = row_of.get((ci, lo + pos + 1))
                if j is None or j in done:
                    continue
                done.add(j)
                probs[j] = prob[bi, pos, cols]
                gaps[j] = qs[bi, pos]
    net.train(was_training)
    return probs, gaps


RawCache = dict[tuple[int, tuple[str, ...]], tuple[np.ndarray, np.ndarray]]  # (id(FitResult), names) -> its (probs over names, gap quantiles) on one set of prefixes


def predict_prefixes(
    models: list[FitResult], cases: list[EventSequence], targets: PrefixTargets, batch: int = 128, quantile: float = 0.5,
    gap_models: list[FitResult] | None = None, cache: RawCache | None = None, names: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Predictions for every prefix in ``targets`` (built from ``cases``).

    Returns ``(types [N] object, gaps [N] seconds, probs [N, V'] , names [V'])``: the most
    likely next type (END included), the predicted gap (the ``quantile`` of the gap
    distribution, averaged over ``models``), and the type probabilities (averaged over
    ``models``) over the type names ``names`` (default: the first model's vocabulary without
    ``<pad>``/``<unk>``; models fitted on other cases order their vocabularies differently, so
    predictions that are combined must be made over one ``names``). ``gap_models``: other models
    for the gaps (default: ``models``).
    ``cache``: one forward pass per distinct model across calls on the *same* ``cases`` /
    ``targets`` / ``quantile`` (a fresh one per call when not given).
    """
    names = names_of(models[0]) if names is None else list(names)
    gap_models = models if gap_models is None else gap_models
    raw: RawCache = {} if cache is None else cache

    def of(fr: FitResult) -> tuple[np.ndarray, np.ndarray]:
        key = (id(fr), tuple(names))
        if key not in raw:
            raw[key] = _raw_predictions(fr.net, fr.spec, cases, targets, names, (quantile,), batch)
        return raw[key]

    probs = sum(of(fr)[0] for fr in models) / len(models)
    gaps = np.stack([of(fr)[1][:, 0] for fr in gap_models], 1)
    return most_likely_types(probs, names), gaps.mean(1), probs, names


def next_event_scores(types: np.ndarray, gaps: np.ndarray, targets: PrefixTargets, continuation: np.ndarray) -> dict[str, float]:
    """The next-event metrics of predictions ``types`` / ``gaps`` (seconds) and ``continuation``
    (the most likely type other than END), each ``[N]`` over ``targets``:

    - ``accuracy``: ``types`` on every target, END included;
    - ``accuracy_excl_end``: ``continuation`` on the targets that are not END — the measure of the
      data README's table (its bigram's 0.742 and the recent n-gram's 0.834 are reproduced by it)
      and of EasyTPP's one-step evaluation, whose models have no END class;
    - ``time_mae_days``: ``gaps`` on the targets that are not END;
    - ``accuracy_excl_end_as_predicted``: ``types`` on the targets that are not END, so predicting
      END where the case went on counts as wrong (stricter).
    """
    from ejc.eval.metrics import accuracy, mean_absolute_error

    going_on = ~targets.is_end
    return {
        "accuracy": accuracy(types, targets.types),
        "accuracy_excl_end": accuracy(continuation, targets.types, going_on),
        "time_mae_days": mean_absolute_error(gaps, targets.gaps, going_on) / 86400.0,
        "accuracy_excl_end_as_predicted": accuracy(types, targets.types, going_on),
    }


__all__ = ["FineTuneOptions", "FitResult", "NextEventNet", "TimeScale", "fit_next_event", "pretrain_cases", "recency_weights", "next_event_scores", "predict_prefixes", "strip_vectors", "with_end"]


# ----------------------------------------------------------------------------------------------
# the task


@dataclass
class NextEventRun:
    """Everything a next-event evaluation measured; :meth:`metrics` is what the report shows."""

    targets: PrefixTargets
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]  # method -> (types [N], gaps [N] s)
    probs: np.ndarray  # [N, V] ejc type probabilities (the blend when blending)
    names: list[str]
    details: dict[str, Any]
    train_seconds: float
    # method -> [N] most likely type among the non-END ones (the prediction "given the case goes on",
    # scored by ``accuracy_excl_end``)
    continuation: dict[str, np.ndarray]
    model_probs: np.ndarray | None = None  # [N, V] the model's own type probabilities (before any blend)

    def metrics(self) -> dict[str, dict[str, float]]:
        """:func:`next_event_scores` of every method (``accuracy``, ``accuracy_excl_end``,
        ``time_mae_days``, ``accuracy_excl_end_as_predicted``)."""
        return {name: next_event_scores(types, gaps, self.targets, self.continuation[name]) for name, (types, gaps) in self.predictions.items()}


def _baseline_predictions(model: Any, cases: list[EventSequence], t: PrefixTargets) -> tuple[np.ndarray, np.ndarray]:
    preds = [model.predict(type_list(cases[c])[:k]) for c, k in zip(t.case, t.length)]
    return np.array([p[0] for p in preds], dtype=object), np.array([p[1] for p in preds], np.float64)


def _baseline_continuation(model: Any, cases: list[EventSequence], t: PrefixTargets) -> np.ndarray:
    return np.array([model.predict(type_list(cases[c])[:k], allow_end=False)[0] for c, k in zip(t.case, t.length)], dtype=object)


def most_likely_types(probs: np.ndarray, names: list[str]) -> np.ndarray:
    """``[N]`` the most likely type (END included) from ``probs [N, V]`` over ``names``."""
    return np.array([names[i] for i in probs.argmax(1)], dtype=object)


def continuation_types(probs: np.ndarray, names: list[str]) -> np.ndarray:
    """``[N]`` the most likely type other than :data:`END` from ``probs [N, V]`` over ``names``."""
    p = np.array(probs, np.float64, copy=True)
    if END in names:
        p[:, names.index(END)] = -np.inf
    return most_likely_types(p, names)


def scores_of_probs(probs: np.ndarray, gaps: np.ndarray, targets: PrefixTargets, names: list[str], cont_probs: np.ndarray | None = None) -> dict[str, float]:
    """:func:`next_event_scores` of type probabilities ``probs [N, V]`` over ``names`` and ``gaps [N]``;
    the continuation types come from ``cont_probs`` (default: ``probs``)."""
    return next_event_scores(most_likely_types(probs, names), gaps, targets, continuation_types(probs if cont_probs is None else cont_probs, names))


BLEND_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass
class Blend:
    """A convex blend of the model with the drift-aware n-gram, weights chosen on validation.

    Types: ``(1 - type_weight) * p_model + type_weight * p_ngram``; gaps: ``(1 - gap_weight) *
    gap_model + gap_weight * gap_ngram`` (the model's gap where the n-gram has none). A weight
    of 0 is the model alone.
    """

    type_weight: float = 0.0
    gap_weight: float = 0.0
    cont_weight: float = 0.0  # the same for the continuation probabilities (accuracy_excl_end)
    val_accuracy: dict[str, float] = field(default_factory=dict)  # weight -> validation accuracy incl. END
    val_mae_days: dict[str, float] = field(default_factory=dict)  # weight -> validation time MAE
    val_accuracy_excl_end: dict[str, float] = field(default_factory=dict)  # weight -> validation accuracy_excl_end

    def probs(self, p_model: np.ndarray, p_ngram: np.ndarray) -> np.ndarray:
        return (1 - self.type_weight) * p_model + self.type_weight * p_ngram

    def cont_probs(self, p_model: np.ndarray, p_ngram: np.ndarray) -> np.ndarray:
        return (1 - self.cont_weight) * p_model + self.cont_weight * p_ngram

    def gaps(self, g_model: np.ndarray, g_ngram: np.ndarray) -> np.ndarray:
        g_ngram = np.where(np.isfinite(g_ngram), g_ngram, g_model)
        return (1 - self.gap_weight) * g_model + self.gap_weight * g_ngram


def choose_blend(
    p_model: np.ndarray, g_model: np.ndarray, p_ngram: np.ndarray, g_ngram: np.ndarray, targets: PrefixTargets, names: list[str],
    weights: tuple[float, ...] = BLEND_WEIGHTS, p_cont: np.ndarray | None = None,
) -> Blend:
    """The type weight with the best validation accuracy (incl. END), the gap weight with the
    lowest validation time MAE and the continuation weight with the best validation
    ``accuracy_excl_end`` (of ``p_cont``, the continuation models' probabilities; ``p_model``
    when not given), each over ``weights`` (ties: the smaller weight, i.e. more model)."""
    out = Blend()
    p_cont = p_model if p_cont is None else p_cont
    best_acc, best_mae, best_cont = -1.0, float("inf"), -1.0
    for w in weights:
        b = Blend(w, w, w)
        sc = scores_of_probs(b.probs(p_model, p_ngram), b.gaps(g_model, g_ngram), targets, names, b.cont_probs(p_cont, p_ngram))
        cont = sc["accuracy_excl_end"]
        out.val_accuracy[str(w)], out.val_mae_days[str(w)], out.val_accuracy_excl_end[str(w)] = sc["accuracy"], sc["time_mae_days"], cont
        if sc["accuracy"] > best_acc + 1e-12:
            best_acc, out.type_weight = sc["accuracy"], w
        if sc["time_mae_days"] < best_mae - 1e-12:
            best_mae, out.gap_weight = sc["time_mae_days"], w
        if cont > best_cont + 1e-12:
            best_cont, out.cont_weight = cont, w
    return out


def ngram_predictions(model: Any, cases: list[EventSequence], t: PrefixTargets, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(probs [N, V] over names, gaps [N] seconds)`` of an n-gram model for every prefix."""
    probs = np.stack([model.distribution(type_list(cases[c])[:k], names) for c, k in zip(t.case, t.length)]) if len(t) else np.zeros((0, len(names)))
    return probs, _baseline_predictions(model, cases, t)[1]


def run_next_event(split: Any, cfg: Config, opts: FineTuneOptions, max_n: int = 6, progress: Progress | None = None) -> NextEventRun:
    """Baselines and ejc on a :class:`~ejc.eval.protocol.Split`, scored on every test prefix.

    Selection (early stopping, recency half-life, n of the n-gram) uses ``split.fit`` /
    ``split.val`` only: the half-life grid is tried with the first seed; further ensemble members
    (other seeds) train at the chosen half-life, stopped early on ``val``. With ``opts.refit``
    each member is then refitted on all training cases for its best number of epochs. The test
    cases are touched once, to score. ``progress`` gets a line per stage and per epoch.
    """
    from ejc.eval.baselines import LastEventPredictor, NGramPredictor, choose_ngram, choose_recent_ngram, most_recent
    from ejc.eval.ceiling import ceiling_details
    types_of = lambda ss: [type_list(s) for s in ss]  # noqa: E731
    gaps_of = lambda ss: [s.gaps() if s.timestamps is not None else np.full(len(s), np.nan) for s in ss]  # noqa: E731
    targets = prefix_targets(split.test)
    n, n_scores = choose_ngram(types_of(split.fit), types_of(split.val), max_n, gaps_of(split.fit))
    ngram = NGramPredictor(n).fit(types_of(split.train), gaps_of(split.train))
    last = LastEventPredictor().fit(types_of(split.train), gaps_of(split.train))
    # the drift-aware n-gram: only the most recent fraction of the (time-ordered) training cases
    rf, rn, r_scores = choose_recent_ngram(types_of(split.fit), types_of(split.val), max_n, gaps_of(split.fit))
    recent = NGramPredictor(rn).fit(most_recent(types_of(split.train), rf), most_recent(gaps_of(split.train), rf))

    t0 = time.perf_counter()
    val_t = prefix_targets(split.val)
    # the half-life grid and the epochs are chosen once, with the first seed, on fit / val:
    # for the types by opts.select, for the gaps by opts.gap_select (None: the same model)
    gap_select = opts.gap_select or opts.select
    criteria = {"type": opts.select, "gap": gap_select, "cont": opts.cont_select or opts.select}  # role -> its validation criterion
    say = progress or (lambda _: None)
    say(f"baselines fitted (n-gram n={n}, drift-aware n-gram n={rn} on the latest {rf:.0%}); model: half-lives {list(opts.half_lives)}, {opts.ensemble} ensemble member(s)")
    pre = pretrain_cases(cfg, split.fit, opts.seed, progress)
    tried = [fit_next_event(cfg, split.fit, split.val, opts, seed=opts.seed, pretrained=pre, half_life=hl, progress=progress) for hl in opts.half_lives]
    chosen = {role: min((fr.for_criterion(c) for fr in tried), key=lambda fr: fr.best_value) for role, c in criteria.items()}
    selection = {
        "select": opts.select,
        "gap_select": gap_select,
        "cont_select": criteria["cont"],
        **{f"{role}_{k}": v for role, fr in chosen.items() for k, v in (("half_life", fr.half_life), ("best_epoch", fr.best_epoch))},
        "by_half_life": {str(fr.half_life): {c: {"epoch": e, "value": v} for c, (v, e, _) in fr.snapshots.items()} for fr in tried},
        "history_by_half_life": {str(fr.half_life): fr.history for fr in tried},
    }
    members: dict[str, list[FitResult]] = {role: [fr] for role, fr in chosen.items()}
    for m in range(1, opts.ensemble):  # more seeds at the chosen half-lives, stopped early on val
        seed = opts.seed + 1000 * m
        say(f"ensemble member {m + 1}/{opts.ensemble} (seed {seed})")
        extra = {hl: fit_next_event(cfg, split.fit, split.val, opts, seed=seed, half_life=hl, progress=progress) for hl in dict.fromkeys(fr.half_life for fr in chosen.values())}
        for role, c in criteria.items():
            members[role].append(extra[chosen[role].half_life].for_criterion(c))
    val_names = names_of(chosen["type"])  # the validation predictions' columns (every member was fitted on split.fit)
    on_val: RawCache = {}  # every member's validation predictions, computed once
    val_metrics = []
    for tm, gm, cm in zip(members["type"], members["gap"], members["cont"]):
        vt, vg, _, _ = predict_prefixes([tm], split.val, val_t, quantile=opts.quantile, gap_models=[gm], cache=on_val, names=val_names)
        vc = predict_prefixes([cm], split.val, val_t, quantile=opts.quantile, cache=on_val, names=val_names)[2]
        val_metrics.append({**next_event_scores(vt, vg, val_t, continuation_types(vc, val_names)),
                            **{f"{role}_{k}": v for role, fr in (("type", tm), ("gap", gm), ("cont", cm)) for k, v in (("epoch", fr.best_epoch), ("half_life", fr.half_life))}})
    vt, vg, vprobs, _ = predict_prefixes(members["type"], split.val, val_t, quantile=opts.quantile, gap_models=members["gap"], cache=on_val, names=val_names)
    vcprobs = predict_prefixes(members["cont"], split.val, val_t, quantile=opts.quantile, cache=on_val, names=val_names)[2]
    val_ensemble = next_event_scores(vt, vg, val_t, continuation_types(vcprobs, val_names))
    blend = Blend()
    if opts.blend:  # the model beside the drift-aware n-gram as chosen on fit / val
        recent_fit = NGramPredictor(rn).fit(most_recent(types_of(split.fit), rf), most_recent(gaps_of(split.fit), rf))
        blend = choose_blend(vprobs, vg, *ngram_predictions(recent_fit, split.val, val_t, val_names), val_t, val_names, p_cont=vcprobs)
    finals = members
    if opts.refit:  # each member again on all training cases, for its own best number of epochs
        finals = {role: [] for role in members}
        for m in range(len(members["type"])):
            seed = opts.seed + 1000 * m
            refits: dict[tuple[float | None, int], FitResult] = {}  # one refit per (half-life, epochs) of this seed
            for role in members:
                fr = members[role][m]
                key = (fr.half_life, max(1, fr.best_epoch))
                if key not in refits:
                    refits[key] = fit_next_event(cfg, split.train, None, opts, epochs=key[1], seed=seed, half_life=fr.half_life, progress=progress)
                finals[role].append(refits[key])
    train_seconds = time.perf_counter() - t0
    say(f"trained in {train_seconds:.0f} s; scoring {len(targets)} test prefixes")
    on_test: RawCache = {}  # a refit shared by several roles runs once
    # the test predictions' columns: the final models' vocabulary (a refit on split.train orders its
    # types by their counts there, which can differ from split.fit's, and may hold types fit lacks)
    names = names_of(finals["type"][0])
    m_types, m_gaps, m_probs, _ = predict_prefixes(finals["type"], split.test, targets, quantile=opts.quantile, gap_models=finals["gap"], cache=on_test, names=names)
    c_probs = predict_prefixes(finals["cont"], split.test, targets, quantile=opts.quantile, cache=on_test, names=names)[2]
    ng_probs, ng_gaps = ngram_predictions(recent, split.test, targets, names)
    probs, gaps = blend.probs(m_probs, ng_probs), blend.gaps(m_gaps, ng_gaps)
    types = most_likely_types(probs, names)
    details = {
        "split": {**split.sizes(), "test_targets": len(targets), "test_targets_excl_end": int((~targets.is_end).sum())},
        "ngram_n": n,
        "ngram_val_accuracy": n_scores,
        "ngram_recent": {"fraction": rf, "n": rn, "val_accuracy_by_fraction": r_scores},
        "ejc_selection": selection,
        "ejc_validation": val_metrics,
        "ejc_validation_ensemble": val_ensemble,
        "ejc_blend": {"with": "ngram_recent", "type_weight": blend.type_weight, "gap_weight": blend.gap_weight, "cont_weight": blend.cont_weight,
                      "val_accuracy_by_weight": blend.val_accuracy, "val_mae_days_by_weight": blend.val_mae_days, "val_accuracy_excl_end_by_weight": blend.val_accuracy_excl_end} if opts.blend else None,
        "ensemble": opts.ensemble,
        "refit": opts.refit,
        "ceiling": ceiling_details(split.test, targets),
    }
    preds = {
        "ejc": (types, gaps),
        **({"ejc_model": (m_types, m_gaps)} if opts.blend else {}),
        "ngram": _baseline_predictions(ngram, split.test, targets),
        "ngram_recent": _baseline_predictions(recent, split.test, targets),
        "last_event": _baseline_predictions(last, split.test, targets),
    }
    continuation = {
        "ejc": continuation_types(blend.cont_probs(c_probs, ng_probs), names),
        **({"ejc_model": continuation_types(c_probs, names)} if opts.blend else {}),
        "ngram": _baseline_continuation(ngram, split.test, targets),
        "ngram_recent": _baseline_continuation(recent, split.test, targets),
        "last_event": _baseline_continuation(last, split.test, targets),
    }
    return NextEventRun(targets, preds, probs, names, details, train_seconds, continuation, m_probs)


__all__ += ["BLEND_WEIGHTS", "Blend", "NextEventRun", "Progress", "choose_blend", "continuation_types", "most_likely_types", "names_of", "ngram_predictions", "run_next_event", "scores_of_probs"]
