"""The supervised next-event stage of the training recipe (after JEPA pretraining).

Shape legend: ``b`` cases in a batch, ``L`` padded length, ``d`` model width, ``V`` type vocabulary.

:func:`pretrain_cases` JEPA-pretrains the Event-JEPA model on the entities (with an END event
after each when ``finetune.ends``); :func:`fit_next_event` wraps it in a
:class:`~ejc.model.next_event.NextEventNet` and trains its next-event heads with the supervised
loss (type cross-entropy incl. END, gap NLL of the log-normal mixture excl. END), the JEPA loss
kept as an auxiliary term weighted by ``finetune.jepa_weight``. The loss can weigh recent
entities more (:func:`recency_weights`, a half-life). With holdout entities every epoch is
scored on them (loss, accuracy incl./excl. END, time MAE); the best epoch of each tracked
criterion is kept (:func:`selection_value`), and training stops when none improved for
``finetune.patience`` epochs. Without holdout it trains a fixed number of epochs (the refit on
all entities).
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

from ejc.config import SELECTIONS, Config
from ejc.data.sequence import END, EventSequence, window_sequence
from ejc.errors import EjcError
from ejc.eval.metrics import scores_of_probs
from ejc.eval.protocol import PrefixTargets, prefix_targets, start_time, type_list
from ejc.model.encoder import to_tensors
from ejc.model.next_event import NextEventNet, TimeScale
from ejc.train.data import DataSpec, make_windows
from ejc.train.loop import Trainer, ema_at

Progress = Callable[[str], None]  # receives one line per stage / epoch (the CLI prints it to stderr)


def with_end(seq: EventSequence) -> EventSequence:
    """``seq`` followed by an :data:`~ejc.data.sequence.END` event at its last event's time (no vector)."""
    types = type_list(seq)
    if END in types:
        raise EjcError(f"sequence {seq.id!r} already has an event of type {END!r}, which names the end of a case here; rename that type")
    n = len(seq)
    vecs = [seq.vector_at(i) for i in range(n)] + [None]
    ts = None if seq.timestamps is None else np.append(seq.timestamps, seq.timestamps[-1])
    return EventSequence(embeddings=vecs, timestamps=ts, modality=list(seq.modalities) + [seq.modalities[-1]], event_types=types + [END], id=seq.id)


def case_starts(seqs: list[EventSequence]) -> np.ndarray:
    """``[n]`` first-event times (NaN for untimed entities)."""
    return np.array([start_time(s) for s in seqs], np.float64)


def selection_value(rec: dict[str, float], select: str) -> float:
    """The early-stopping / model-selection criterion of a holdout record (lower is better).

    ``loss``: the holdout loss (type cross-entropy + weighted gap NLL). ``accuracy``: minus the
    accuracy incl. END; ``mae``: the time MAE (days, excl. END); ``continuation``: minus the
    accuracy of the most likely non-END type on the targets that are not END
    (``accuracy_excl_end``). For the last three a lower loss only breaks exact ties.
    """
    if select == "loss":
        return rec["val_loss"]
    if select == "accuracy":
        return -rec["val_accuracy"] + 1e-6 * math.tanh(rec["val_loss"])
    if select == "mae":
        mae = rec["val_time_mae_days"]
        return (mae if math.isfinite(mae) else 0.0) + 1e-6 * math.tanh(rec["val_loss"])
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
    best_epoch: int  # epoch chosen by ``criterion`` (== epochs without holdout)
    half_life: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    best_value: float = float("nan")  # the selection criterion at the best epoch (lower is better)
    best_record: dict[str, float] = field(default_factory=dict)  # the holdout record of the best epoch
    criterion: str = "loss"  # the criterion ``net`` / ``best_*`` were selected by
    seed: int = 0
    # criterion -> (best value, best epoch, state_dict) of every criterion tracked on the holdout
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
        return FitResult(net, self.spec, self.epochs, epoch, self.half_life, self.history, self.seconds, value, rec, criterion, self.seed, self.snapshots)

    @property
    def names(self) -> list[str]:
        """The type names the net's probabilities run over (its vocabulary without ``<pad>``/``<unk>``)."""
        return list(self.spec.vocab.itos[2:])


def pretrain_cases(cfg: Config, train: list[EventSequence], seed: int = 0, progress: Progress | None = None) -> Trainer:
    """JEPA-pretrain (the model's own objective, ``cfg.train.steps`` steps) on ``train`` (+ END events when ``finetune.ends``)."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    cfg = copy.deepcopy(cfg)
    cfg.train.seed = seed
    cases = [with_end(s) for s in train] if cfg.finetune.ends else list(train)
    spec = DataSpec.from_sequences(cases, cfg.model.max_types)
    trainer = Trainer(cfg, spec, make_windows(cases, cfg.train.max_len, cfg.train.stride), "cpu")
    every = max(1, cfg.train.steps // 4)
    for i in range(1, cfg.train.steps + 1):
        parts = trainer.step()
        if progress is not None and (i % every == 0 or i == cfg.train.steps):
            progress(f"JEPA pretraining (seed {seed}, {len(train)} sequences): step {i}/{cfg.train.steps}, loss {parts['loss']:.4f} ({time.perf_counter() - t0:.0f} s)")
    return trainer


def recency_weights(train: list[EventSequence], half_life: float | None) -> np.ndarray:
    """``[n]`` entity weights ``2 ** -(age / half_life)``; age = (latest start - start) / start-time span.

    ``None`` weighs every entity 1. Logs drift: recent entities say more about what comes next.
    """
    if half_life is None:
        return np.ones(len(train))
    if half_life <= 0:
        raise EjcError(f"recency half-life must be positive (a fraction of the training time span), got {half_life}")
    u = case_starts(train)
    if not np.isfinite(u).any():
        return np.ones(len(train))
    scale = TimeScale.fit(u)
    age = np.where(np.isfinite(u), (np.nanmax(u) - u) / scale.span, 0.0)
    return np.power(2.0, -age / half_life)


def fit_next_event(
    cfg: Config,
    train: list[EventSequence],
    val: list[EventSequence] | None,
    epochs: int | None = None,
    seed: int = 0,
    pretrained: Trainer | None = None,
    half_life: float | None = None,
    progress: Progress | None = None,
) -> FitResult:
    """Fine-tune next-event heads on ``train``; with ``val``, stop early on it and keep each criterion's best epoch.

    ``pretrained``: a :func:`pretrain_cases` result on the same ``train`` (copied, not changed);
    pretrained here when not given. Without ``val``, trains exactly ``epochs`` epochs.
    ``half_life``: recency weighting of the loss (:func:`recency_weights`).
    """
    ft = cfg.finetune
    t0 = time.perf_counter()
    trainer = copy.deepcopy(pretrained) if pretrained is not None else pretrain_cases(cfg, train, seed, progress)
    torch.manual_seed(seed)
    tcfg, spec = trainer.cfg, trainer.spec
    end_id = int(spec.vocab.encode([END])[0]) if ft.ends else None
    close = with_end if ft.ends else (lambda s: s)
    weights_of_case = recency_weights(train, half_life)
    windows: list[EventSequence] = []
    window_weight: list[float] = []
    for ci, s in enumerate(train):
        for w in window_sequence(close(s), tcfg.train.max_len, tcfg.train.stride or max(1, tcfg.train.max_len // 2)):
            windows.append(w)
            window_weight.append(float(weights_of_case[ci]))
    wts = np.asarray(window_weight)
    net = NextEventNet(trainer.model, TimeScale.fit(case_starts(train)), drift=ft.drift)
    pad = trainer.pad_multiple
    opt = torch.optim.AdamW(net.parameters(), lr=ft.lr, weight_decay=ft.weight_decay)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed + 1)

    def tensors(seqs: list[EventSequence]):  # noqa: ANN202
        return to_tensors(spec.collate(seqs, tcfg.train.max_len, pad))

    val_batches = [tensors([close(val[i]) for i in idx]) for idx in _batches(len(val), 256, None)] if val else []
    val_t = prefix_targets(val, with_end=ft.ends) if val else None
    names = list(spec.vocab.itos[2:])
    n_epochs = ft.max_epochs if epochs is None else epochs
    total_steps = max(1, n_epochs * math.ceil(len(windows) / ft.batch_size))
    history: list[dict[str, float]] = []
    criteria = list(dict.fromkeys([ft.select, ft.gap_select, ft.cont_select]))
    best: dict[str, tuple[float, int, dict[str, Any]]] = {}
    step = 0
    use_jepa = ft.jepa_weight > 0 and tcfg.objective.jepa
    for epoch in range(1, n_epochs + 1):
        net.train()
        for idx in _batches(len(windows), ft.batch_size, rng):
            for g in opt.param_groups:  # cosine decay over the planned steps
                g["lr"] = ft.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))
            bt = tensors([windows[i] for i in idx])
            loss, _ = net.supervised_loss(bt, ft.gap_weight, end_id, torch.as_tensor(wts[idx], dtype=torch.float32))
            if use_jepa:
                loss = loss + ft.jepa_weight * net.jepa.jepa_loss(bt, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), tcfg.train.grad_clip)
            opt.step()
            if use_jepa:
                net.jepa.update_target(ema_at(tcfg, tcfg.train.steps))
            step += 1
        rec: dict[str, float] = {"epoch": epoch}
        stop = False
        if val_batches:
            assert val is not None and val_t is not None
            net.eval()
            with torch.no_grad():
                losses = [net.supervised_loss(bt, ft.gap_weight, end_id) for bt in val_batches]
            counts = [int(bt.valid.sum()) for bt in val_batches]
            rec["val_loss"] = float(np.average([float(lo) for lo, _ in losses], weights=counts))
            rec["val_type"] = float(np.average([p["type"] for _, p in losses], weights=counts))
            vp, vg = prefix_predictions(net, spec, val, val_t, names, ft.quantile)
            rec.update({f"val_{k}": v for k, v in scores_of_probs(vp, vg, val_t, names).items()})
            for c in criteria:  # keep each criterion's best epoch; stop when none improved for `patience`
                v = selection_value(rec, c)
                if c not in best or v < best[c][0] - 1e-6:
                    best[c] = (v, epoch, copy.deepcopy(net.state_dict()))
            stop = all(epoch - best[c][1] >= ft.patience for c in criteria)
            if progress is not None:
                progress(f"fine-tune (half-life {half_life}, seed {seed}) epoch {epoch}/{n_epochs}: holdout accuracy {rec['val_accuracy']:.4f}, "
                         f"excl. END {rec['val_accuracy_excl_end']:.4f}, time MAE {rec['val_time_mae_days']:.3f} d ({time.perf_counter() - t0:.0f} s){', early stop' if stop else ''}")
        elif progress is not None:
            progress(f"refit (half-life {half_life}, seed {seed}) on {len(train)} sequences: epoch {epoch}/{n_epochs} ({time.perf_counter() - t0:.0f} s)")
        history.append(rec)
        if stop:
            break
    net.eval()
    out = FitResult(net, spec, len(history), len(history), half_life, history, time.perf_counter() - t0, criterion=ft.select, seed=seed, snapshots=best)
    if best:
        value, epoch, state = best[ft.select]
        net.load_state_dict(state)
        out.best_epoch, out.best_value = epoch, value
        out.best_record = next(r for r in history if r["epoch"] == epoch)
    return out


@torch.no_grad()
def prefix_predictions(net: NextEventNet, spec: DataSpec, cases: list[EventSequence], targets: PrefixTargets, names: list[str], quantile: float = 0.5, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``(probs [N, V'] over names, gaps [N] seconds)`` of one net for every prefix in ``targets``.

    One causal pass per case serves all its prefixes (position ``k - 1`` sees events ``< k``);
    cases longer than ``train.max_len`` are cut into windows of stride ``max_len // 2``, and a
    prefix is read from the earliest window that holds its last event. Used for the holdout
    scores during training; the shipped predictor reads one prefix at a time
    (:class:`~ejc.infer.predictor.NextEventPredictor`), which agrees with this up to float
    rounding on prefixes no longer than ``max_len``.
    """
    was_training = net.training
    net.eval()
    cfg = net.jepa.cfg
    n = len(targets)
    probs = np.zeros((n, len(names)))
    gaps = np.zeros(n)
    row_of = {(int(c), int(k)): j for j, (c, k) in enumerate(zip(targets.case, targets.length))}
    cols = np.array([spec.vocab.stoi.get(t, 1) for t in names])
    pad = 2 ** (cfg.model.num_levels - 1) if cfg.model.encoder == "hierarchical" else 1
    L = cfg.train.max_len
    for idx in _batches(len(cases), batch, None):
        jobs: list[tuple[int, int, EventSequence]] = []
        for ci in idx:
            s = cases[ci]
            for lo in range(0, max(1, len(s) - L // 2), max(1, L // 2)) if len(s) > L else [0]:
                jobs.append((int(ci), lo, s[lo : lo + L]))
        bt = to_tensors(spec.collate([j[2] for j in jobs], None, pad))
        h = net.states(bt)
        prob = torch.softmax(net.type_logits(h), -1).numpy()
        qs = net.gap_quantile(h.reshape(-1, h.shape[-1]), quantile).reshape(h.shape[:2]).numpy()
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


__all__ = ["FitResult", "Progress", "case_starts", "fit_next_event", "prefix_predictions", "pretrain_cases", "recency_weights", "selection_value", "with_end"]
