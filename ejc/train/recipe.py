"""``ejc train``: the one training recipe whose artifact users deploy.

Stages, every choice made on a chronological holdout of the entities given (the last
``finetune.val_fraction`` by first-event time; the recipe never sees anything else):

1. **n-gram**: the drift-aware n-gram (fitted on the most recent fraction of the entities;
   fraction and ``n`` chosen on the holdout);
2. **pretraining**: the Event-JEPA objective, ``train.steps`` steps (:func:`~ejc.train.finetune.pretrain_cases`);
3. **fine-tuning** (:func:`~ejc.train.finetune.fit_next_event`): for each recency half-life of
   ``finetune.half_lives``, supervised next-event training stopped early on the holdout; per
   role (types, gaps, continuation types) the (half-life, epoch) with the best holdout value;
4. **blend**: per role the weight of the n-gram that is best on the holdout predictions of the
   chosen nets (0 = the nets alone);
5. **members** (``finetune.ensemble`` seeds): per seed and role, a net trained at the chosen
   half-life for the chosen number of epochs, on *all* entities (``finetune.refit``: the most
   recent entities matter most when a log drifts; the n-gram too) or on the fit entities.
   Members of one seed that share (half-life, epochs) are one net.

:func:`train_model` then writes MODEL/ (:func:`save_model`): the first type member as the
checkpoint the facade loads, ``predictor/`` (every member, roles, blend, n-gram counts),
``detector.json`` (the sequence anomaly detector, :mod:`ejc.infer.detector`, calibrated on
the holdout), ``calibration.json`` (per-event surprise) and ``card.json`` (holdout metrics, data
summary, choices, command, seconds).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ejc.config import Config
from ejc.data.sequence import EventSequence
from ejc.errors import EjcError
from ejc.eval.metrics import scores_of_probs
from ejc.eval.protocol import by_start_time, prefix_targets, type_list
from ejc.infer.detector import SequenceDetector, fit_detector
from ejc.infer.predictor import ROLES, Blend, NextEventPredictor, choose_blend
from ejc.model.ngram import NGramPredictor, choose_recent_ngram, most_recent
from ejc.train.finetune import FitResult, Progress, case_starts, fit_next_event, pretrain_cases, prefix_predictions

CARD_FILE = "card.json"


def holdout_split(seqs: list[EventSequence], val_fraction: float) -> tuple[list[EventSequence], list[EventSequence]]:
    """``(fit, holdout)``: entities sorted by first-event time (untimed ones keep their order, last), the last ``val_fraction`` held out."""
    if len(seqs) < 2:
        raise EjcError(f"ejc train needs at least 2 entities (one to fit, one to hold out), got {len(seqs)}")
    ordered = by_start_time(seqs)
    n_val = min(len(seqs) - 1, max(1, int(round(val_fraction * len(seqs)))))
    return ordered[: len(seqs) - n_val], ordered[len(seqs) - n_val :]


@dataclass
class RecipeResult:
    predictor: NextEventPredictor
    detector: SequenceDetector | None = None
    card: dict[str, Any] = field(default_factory=dict)  # holdout metrics, choices, data summary, seconds


def _gaps_of(seqs: list[EventSequence]) -> list[np.ndarray]:
    return [s.gaps() if s.timestamps is not None else np.full(len(s), np.nan) for s in seqs]


def fit_recipe(cfg: Config, seqs: list[EventSequence], seed: int | None = None, progress: Progress | None = None) -> RecipeResult:
    """Run the recipe on ``seqs`` (all the entities the user gave); return the predictor and its card."""
    ft = cfg.finetune
    seed = cfg.train.seed if seed is None else seed
    say = progress or (lambda _: None)
    t0 = time.perf_counter()
    for s in seqs:
        type_list(s)  # every entity needs event types
    fit, val = holdout_split(seqs, ft.val_fraction)
    train = fit + val  # in time order
    types_of = lambda ss: [type_list(s) for s in ss]  # noqa: E731
    val_t = prefix_targets(val, with_end=ft.ends)

    timed = bool(np.isfinite(case_starts(fit)).any())
    rf, rn, r_scores = choose_recent_ngram(types_of(fit), types_of(val), ft.max_n, _gaps_of(fit))
    say(f"{len(fit)} entities to fit, {len(val)} held out; drift-aware n-gram: n={rn} on the latest {rf:.0%}; half-lives {list(ft.half_lives) if timed else [None]}, {ft.ensemble} member(s)")
    # untimed entities have no gaps to predict: the gap role is served by the type role's net
    criteria = {"type": ft.select, "gap": ft.gap_select if timed else ft.select, "cont": ft.cont_select}
    pretrained: dict[tuple[str, int], Any] = {}  # (entities, seed) -> its pretraining: deterministic, so run once

    def pre(which: str, s_m: int) -> Any:
        if (which, s_m) not in pretrained:
            pretrained[(which, s_m)] = pretrain_cases(cfg, fit if which == "fit" else train, s_m, progress)
        return pretrained[(which, s_m)]

    # recency weights need times: on untimed entities every half-life is the unweighted fit
    half_lives = list(ft.half_lives) if timed else [None]
    tried = [fit_next_event(cfg, fit, val, seed=seed, pretrained=pre("fit", seed), half_life=hl, progress=progress) for hl in half_lives]
    chosen = {role: min((fr.for_criterion(c) for fr in tried), key=lambda fr: fr.best_value) for role, c in criteria.items()}
    # holdout predictions of the chosen (seed-0) members: the blend weights and the card's metrics
    names = chosen["type"].names
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def on_val(fr: FitResult) -> tuple[np.ndarray, np.ndarray]:
        if id(fr) not in cache:
            cache[id(fr)] = prefix_predictions(fr.net, fr.spec, val, val_t, names, ft.quantile)
        return cache[id(fr)]

    vp, vg, vc = on_val(chosen["type"])[0], on_val(chosen["gap"])[1], on_val(chosen["cont"])[0]
    holdout_nets = scores_of_probs(vp, vg, val_t, names, vc)
    recent_fit = NGramPredictor(rn).fit(most_recent(types_of(fit), rf), most_recent(_gaps_of(fit), rf), with_end=ft.ends)
    blend = Blend()
    holdout_blend = holdout_nets
    if ft.blend:
        p_ng = np.stack([recent_fit.distribution(type_list(val[c])[:k], names) for c, k in zip(val_t.case, val_t.length)]) if len(val_t) else np.zeros((0, len(names)))
        g_ng = np.array([recent_fit.predict(type_list(val[c])[:k])[1] for c, k in zip(val_t.case, val_t.length)], np.float64)
        blend = choose_blend(vp, vg, vc, p_ng, g_ng, val_t, names)
        holdout_blend = scores_of_probs(blend.probs(vp, p_ng, blend.type_weight), blend.gaps(vg, g_ng), val_t, names, blend.probs(vc, p_ng, blend.cont_weight))

    # the sequence anomaly detector, calibrated on the holdout by the holdout-stage net (never saw it)
    detector = fit_detector(chosen["type"].net, chosen["type"].spec, fit, val, train if ft.refit else fit, ft.anomaly_quantile, ft.ends)

    # the members: per seed, one net per distinct (half-life, epochs) of the chosen roles, trained
    # on all entities (refit) or on the fit entities, for the chosen number of epochs
    final_on = train if ft.refit else fit
    nets: list[FitResult] = []
    roles: dict[str, list[int]] = {r: [] for r in ROLES}
    info: list[dict[str, Any]] = []
    for m in range(ft.ensemble):
        s_m = seed + 1000 * m
        if m:
            say(f"ensemble member {m + 1}/{ft.ensemble} (seed {s_m})")
        made: dict[tuple[float | None, int], int] = {}
        for role in ROLES:
            fr = chosen[role]
            key = (fr.half_life, max(1, fr.best_epoch))
            if key not in made:
                if m == 0 and not ft.refit:
                    net = fr  # the holdout-chosen net itself
                else:
                    net = fit_next_event(cfg, final_on, None, epochs=key[1], seed=s_m, pretrained=pre("all" if ft.refit else "fit", s_m), half_life=fr.half_life, progress=progress)
                nets.append(net)
                info.append({"seed": s_m, "half_life": fr.half_life, "epochs": key[1], "trained_on": "all" if ft.refit else "fit", "roles": []})
                made[key] = len(nets) - 1
            roles[role].append(made[key])
            info[made[key]]["roles"].append(role)
        pretrained.pop(("all", s_m), None)
    pretrained.clear()
    specs = {json.dumps(fr.spec.to_dict(), sort_keys=True) for fr in nets}
    if len(specs) != 1:
        raise EjcError("internal: the ensemble members were fitted with different vocabularies")
    ngram = NGramPredictor(rn).fit(most_recent(types_of(train if ft.refit else fit), rf), most_recent(_gaps_of(train if ft.refit else fit), rf), with_end=ft.ends) if ft.blend else None
    predictor = NextEventPredictor([fr.net for fr in nets], roles, nets[0].spec, ngram, blend, ft.quantile, info)
    seconds = time.perf_counter() - t0
    say(f"trained in {seconds:.0f} s: {len(nets)} net(s); blend weights types {blend.type_weight}, gaps {blend.gap_weight}, continuation {blend.cont_weight}")
    card = {
        "holdout": {
            "entities": len(val),
            "targets": len(val_t),
            "shipped": holdout_blend,
            "nets_without_blend": holdout_nets,
            "note": "metrics of the seed-0 fit-stage nets (before any refit and ensemble) on the holdout they were chosen on: optimistic for the choices, not a test figure",
        },
        "data": {"entities": len(seqs), "fit_entities": len(fit), "holdout_entities": len(val), "events": int(sum(len(s) for s in seqs)), "types": len(names) - (1 if ft.ends else 0)},
        "choices": {
            "ngram": {"n": rn, "recent_fraction": rf, "holdout_accuracy_by_fraction": r_scores},
            **{f"{role}_half_life": fr.half_life for role, fr in chosen.items()},
            **{f"{role}_epochs": fr.best_epoch for role, fr in chosen.items()},
            "blend": {"type_weight": blend.type_weight, "gap_weight": blend.gap_weight, "cont_weight": blend.cont_weight, "holdout": blend.holdout},
            "by_half_life": {str(fr.half_life): {c: {"epoch": e, "value": v} for c, (v, e, _) in fr.snapshots.items()} for fr in tried},
        },
        "members": info,
        "train_seconds": round(seconds, 1),
    }
    card["detector"] = {"holdout_sequences": len(val), "quantile": ft.anomaly_quantile, "threshold": detector.threshold}
    return RecipeResult(predictor, detector, card)


def save_model(result: RecipeResult, out: str | os.PathLike[str], cfg: Config, calibration_seqs: list[EventSequence] | None = None, command: list[str] | None = None) -> Path:
    """Write MODEL/: checkpoint (the first type member), ``predictor/``, ``calibration.json``, ``card.json``.

    The directory is assembled under a temporary name and renamed into place, so a crash never
    leaves a half-written model where one is expected.
    """
    import shutil

    from ejc.infer.event_jepa import EventJEPA
    from ejc.train.checkpoint import save_checkpoint

    final = Path(out)
    if final.exists() and any(final.iterdir()):
        raise EjcError(f"{final} exists and is not empty; pass a new --out directory (ejc train never overwrites a model)")
    tmp = final.parent / f".{final.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    pred = result.predictor
    first = pred.first
    save_checkpoint(tmp, first.jepa, cfg, pred.spec, cfg.train.steps)
    pred.save(tmp)
    if result.detector is not None:
        result.detector.save(tmp)
    card = dict(result.card)
    if calibration_seqs:
        model = EventJEPA.from_pretrained(tmp)
        cal = model.calibrate(calibration_seqs, save_to=tmp)
        card["calibration"] = {"sequences": len(calibration_seqs), "event_threshold": cal.event_threshold, "sequence_threshold": cal.sequence_threshold}
    card["command"] = command if command is not None else list(sys.argv)
    card["config"] = cfg.to_dict()
    (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, default=_json_default))
    if final.exists():
        final.rmdir()
    os.replace(tmp, final)
    return final


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def track_model(tracker: Any, model_dir: str | os.PathLike[str], cfg: Config, register: str | None = None) -> dict[str, Any]:
    """Log a finished MODEL/ to an MLflow tracker: config params, the card's holdout metrics,
    ``card.json`` / ``calibration.json`` as artifacts; register the directory under
    ``register`` (None: not registered). The one way every entry point finishes a tracked run."""
    d = Path(model_dir)
    card = json.loads((d / CARD_FILE).read_text())
    tracker.log_params({**cfg.flat(), **{f"data.{k}": v for k, v in card.get("data", {}).items()}})
    tracker.log_metrics({f"holdout.{k}": float(v) for k, v in card["holdout"]["shipped"].items() if isinstance(v, (int, float)) and np.isfinite(v)}, 0)
    for name in (CARD_FILE, "calibration.json"):
        if (d / name).is_file():
            tracker.log_artifact(d / name)
    out: dict[str, Any] = {}
    if register:
        out["model"] = {"name": register, "version": tracker.register_model(register, d)}
    return out


def train_model(cfg: Config, seqs: list[EventSequence], out: str | os.PathLike[str], progress: Progress | None = None, command: list[str] | None = None, calibrate: bool = True) -> Path:
    """The recipe on ``seqs``, written to ``out`` (see the module doc); returns the model directory."""
    result = fit_recipe(cfg, seqs, progress=progress)
    return save_model(result, out, cfg, seqs if calibrate else None, command)


__all__ = ["CARD_FILE", "RecipeResult", "fit_recipe", "holdout_split", "save_model", "track_model", "train_model"]
