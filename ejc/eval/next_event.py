"""Next-event evaluation through the product path: train with ``ejc train``'s recipe, save, reload, predict.

Shape legend: ``N`` test prefixes, ``V`` type names (END included).

:func:`run_next_event` fits the baselines on the training cases (n-gram with back-off, the
drift-aware n-gram, last event, gradient-boosted trees on prefix features), trains the model
with :func:`ejc.train.recipe.train_model` on the same training cases (its own choices on its
own chronological holdout of them: the recipe never sees the test cases), writes MODEL/, loads
it with :meth:`EventJEPA.from_pretrained <ejc.infer.event_jepa.EventJEPA.from_pretrained>` and
scores every test prefix through :meth:`~ejc.infer.event_jepa.EventJEPA.predict_next_batch`
(:func:`score_test_prefixes`): the figure of the ``ejc`` row is what a user of that directory
gets. Beside it, from the same directory: ``ejc_nets`` (the shipped nets without the n-gram
blend) and ``ejc_single`` (the seed-0 nets alone, no blend). With ``ablations`` the recipe runs
again with JEPA off (``objective.jepa=false``, ``finetune.jepa_weight=0``, same steps) and with
other seeds; each is its own saved and reloaded model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ejc.config import Config, apply_overrides
from ejc.data.sequence import END, EventSequence
from ejc.errors import EjcError
from ejc.eval.metrics import continuation_types, most_likely_types, next_event_scores
from ejc.eval.protocol import PrefixTargets, Split, prefix_targets, type_list
from ejc.train.finetune import Progress


def prefixes(cases: list[EventSequence], targets: PrefixTargets) -> list[EventSequence]:
    """The prefix sequence of every target (``cases[c][:k]``)."""
    return [cases[c][:k] for c, k in zip(targets.case, targets.length)]


@dataclass
class FacadePredictions:
    types: np.ndarray  # [N] predicted next type, END included
    continuation: np.ndarray  # [N] most likely type given the case goes on
    gaps: np.ndarray  # [N] seconds
    probs: np.ndarray  # [N, V] over names
    names: list[str]
    seconds: float  # wall time of predict_next_batch over all prefixes


def facade_predictions(model: Any, cases: list[EventSequence], targets: PrefixTargets, batch: int = 1024) -> FacadePredictions:
    """Every prefix through ``model.predict_next_batch`` (a loaded :class:`~ejc.infer.event_jepa.EventJEPA`)."""
    if model.predictor is None:
        raise EjcError("this model has no shipped next-event predictor (trained with `ejc pretrain`?); train it with `ejc train`")
    names = model.predictor.names
    seqs = prefixes(cases, targets)
    t0 = time.perf_counter()
    events = []
    for i in range(0, len(seqs), batch):
        events.extend(p[0] for p in model.predict_next_batch(seqs[i : i + batch], num_steps=1, top_k=len(names)))
    seconds = time.perf_counter() - t0
    col = {n: j for j, n in enumerate(names)}
    probs = np.zeros((len(events), len(names)))
    for r, ev in enumerate(events):
        for t, p in ev.type_probs.items():
            probs[r, col[t]] = p
    return FacadePredictions(
        np.array([ev.event_type for ev in events], dtype=object),
        np.array([ev.if_continuing for ev in events], dtype=object),
        np.array([ev.gap for ev in events], np.float64),
        probs, names, seconds,
    )


def score_test_prefixes(model_dir: str | Path, test: list[EventSequence]) -> dict[str, Any]:
    """Load MODEL/ from disk and score every prefix of ``test`` through the facade (metrics + prefixes/s)."""
    from ejc.infer.event_jepa import EventJEPA

    model = EventJEPA.from_pretrained(model_dir)
    t = prefix_targets(test, with_end=model.config.finetune.ends)
    fp = facade_predictions(model, test, t)
    out = {**next_event_scores(fp.types, fp.gaps, t, fp.continuation), "prefixes": len(t), "prefixes_per_second": len(t) / max(fp.seconds, 1e-9)}
    if model.predictor is not None:  # the latency cost of the ensemble: the seed-0 nets, no n-gram, same prefixes
        p = model.predictor
        one = p.subset([i for i, m in enumerate(p.members) if m.get("seed") == model.config.train.seed], blend=False)
        seqs = prefixes(test, t)
        t0 = time.perf_counter()
        for i in range(0, len(seqs), 1024):
            one.predict(seqs[i : i + 1024])
        out["seed0_nets_no_blend_prefixes_per_second"] = len(t) / max(time.perf_counter() - t0, 1e-9)
    ng = model.predictor.ngram if model.predictor is not None else None
    if ng is not None:  # the n-gram alone (the count part of the same directory), for scale
        names = model.predictor.names
        t0 = time.perf_counter()
        for s in prefixes(test, t):
            tl = type_list(s)
            ng.distribution(tl, names), ng.predict(tl)
        out["ngram_prefixes_per_second"] = len(t) / max(time.perf_counter() - t0, 1e-9)
    return out


def _part_scores(predictor: Any, cases: list[EventSequence], t: PrefixTargets, members: list[int] | None) -> dict[str, float]:
    """Scores of the shipped nets without the blend (``members``: only those nets per role)."""
    out = predictor.subset(members, blend=False).predict(prefixes(cases, t))
    return next_event_scores(most_likely_types(out.probs, out.names), out.gaps, t, continuation_types(out.cont_probs, out.names))


@dataclass
class NextEventRun:
    """Everything a next-event evaluation measured; :meth:`metrics` is what the report shows."""

    targets: PrefixTargets
    scores: dict[str, dict[str, float]]  # method -> next_event_scores
    predictions: dict[str, np.ndarray]  # method -> [N] predicted types (for plots)
    probs: np.ndarray  # [N, V] the shipped model's type probabilities
    names: list[str]
    details: dict[str, Any]
    train_seconds: float

    def metrics(self) -> dict[str, dict[str, float]]:
        return self.scores


def _baseline_scores(model: Any, cases: list[EventSequence], t: PrefixTargets) -> tuple[dict[str, float], np.ndarray]:
    preds = [model.predict(type_list(cases[c])[:k]) for c, k in zip(t.case, t.length)]
    cont = np.array([model.predict(type_list(cases[c])[:k], allow_end=False)[0] for c, k in zip(t.case, t.length)], dtype=object)
    types = np.array([p[0] for p in preds], dtype=object)
    return next_event_scores(types, np.array([p[1] for p in preds], np.float64), t, cont), types


def run_next_event(split: Split, cfg: Config, work_dir: str | Path, progress: Progress | None = None, ablations: bool = False, seeds: tuple[int, ...] = (1, 2)) -> NextEventRun:
    """Baselines and the shipped model on a :class:`~ejc.eval.protocol.Split`, scored on every test prefix.

    The model trains on ``split.train`` only (its recipe holds out its own most recent cases;
    ``split.fit`` / ``split.val`` are used for the baselines' choices), is written to
    ``work_dir/model`` and scored after reloading it from there. The test cases are touched
    once, to score.
    """
    from ejc.eval.baselines import LastEventPredictor, NGramPredictor, choose_ngram, choose_recent_ngram, most_recent
    from ejc.eval.ceiling import ceiling_details
    from ejc.infer.event_jepa import EventJEPA
    from ejc.train.recipe import train_model

    say = progress or (lambda _: None)
    work = Path(work_dir)
    ft = cfg.finetune
    types_of = lambda ss: [type_list(s) for s in ss]  # noqa: E731
    gaps_of = lambda ss: [s.gaps() if s.timestamps is not None else np.full(len(s), np.nan) for s in ss]  # noqa: E731
    targets = prefix_targets(split.test, with_end=ft.ends)
    n, n_scores = choose_ngram(types_of(split.fit), types_of(split.val), ft.max_n, gaps_of(split.fit))
    ngram = NGramPredictor(n).fit(types_of(split.train), gaps_of(split.train))
    last = LastEventPredictor().fit(types_of(split.train), gaps_of(split.train))
    rf, rn, r_scores = choose_recent_ngram(types_of(split.fit), types_of(split.val), ft.max_n, gaps_of(split.fit))
    recent = NGramPredictor(rn).fit(most_recent(types_of(split.train), rf), most_recent(gaps_of(split.train), rf))
    scores: dict[str, dict[str, float]] = {}
    base: dict[str, dict[str, float]] = {}  # the baselines, reported after the model's rows
    predictions: dict[str, np.ndarray] = {}
    details: dict[str, Any] = {}
    from ejc.eval.gbt import fit_gbt_baseline

    if all(s.timestamps is not None for s in split.train):
        t0 = time.perf_counter()
        gbt, choice = fit_gbt_baseline(split.fit, split.val, split.train)
        names_g = sorted({*(t for tl in types_of(split.train) for t in tl), *([END] if ft.ends else [])})
        gp, gg = gbt.predict(split.test, targets, names_g)
        base["gbt"] = next_event_scores(most_likely_types(gp, names_g), gg, targets, continuation_types(gp, names_g))
        details["gbt"] = {**choice.to_dict(), "seconds": round(time.perf_counter() - t0, 1)}
        say(f"gradient-boosted trees fitted ({details['gbt']['seconds']} s)")
    say(f"baselines fitted (n-gram n={n}, drift-aware n-gram n={rn} on the latest {rf:.0%}); training the model with the `ejc train` recipe")

    t0 = time.perf_counter()
    model_dir = train_model(cfg, split.train, work / "model", progress=progress, command=["ejc", "evaluate", "next-event", "(training cases of the split)"])
    train_seconds = time.perf_counter() - t0
    model = EventJEPA.from_pretrained(model_dir)  # reloaded from disk: what users load
    fp = facade_predictions(model, split.test, targets)
    scores["ejc"] = next_event_scores(fp.types, fp.gaps, targets, fp.continuation)
    predictions["ejc"] = fp.types
    pred = model.predictor
    assert pred is not None
    scores["ejc_nets"] = _part_scores(pred, split.test, targets, None)
    seed0 = [i for i, m in enumerate(pred.members) if m.get("seed") == cfg.train.seed]
    scores["ejc_single"] = _part_scores(pred, split.test, targets, seed0)
    details["ejc"] = {
        "model_dir": str(model_dir),
        "prefixes_per_second": round(len(targets) / max(fp.seconds, 1e-9), 1),
        "card": _card(model_dir),
    }
    if ablations:
        variants = {"ejc_no_jepa": ["objective.jepa=false", "finetune.jepa_weight=0"], **{f"ejc_seed{s}": [f"train.seed={s}"] for s in seeds}}
        for name, ov in variants.items():
            say(f"ablation {name}: {ov}")
            vdir = train_model(apply_overrides(cfg, ov), split.train, work / name, progress=progress, command=["ejc", "evaluate", "next-event", "--ablations", *ov])
            vm = EventJEPA.from_pretrained(vdir)
            vp = facade_predictions(vm, split.test, targets)
            scores[name] = next_event_scores(vp.types, vp.gaps, targets, vp.continuation)
        seeded = [scores["ejc"]] + [scores[f"ejc_seed{s}"] for s in seeds]
        details["seed_spread"] = {k: {"mean": float(np.mean([r[k] for r in seeded])), "std": float(np.std([r[k] for r in seeded], ddof=1)) if len(seeded) > 1 else 0.0} for k in seeded[0]}
    for name, m in (("ngram", ngram), ("ngram_recent", recent), ("last_event", last)):
        base[name], predictions[name] = _baseline_scores(m, split.test, targets)
    scores.update(base)
    details.update({
        "split": {**split.sizes(), "test_targets": len(targets), "test_targets_excl_end": int((~targets.is_end).sum())},
        "ngram_n": n,
        "ngram_val_accuracy": n_scores,
        "ngram_recent": {"fraction": rf, "n": rn, "val_accuracy_by_fraction": r_scores},
        "ceiling": ceiling_details(split.test, targets),
        "rows": {
            "ejc": "the shipped model: `ejc train` recipe on the training cases, saved, reloaded, predict_next_batch",
            "ejc_nets": "the same directory's nets without the n-gram blend",
            "ejc_single": "the same directory's seed-0 nets alone, no blend",
        },
    })
    return NextEventRun(targets, scores, predictions, fp.probs, fp.names, details, train_seconds)


def _card(model_dir: Path) -> dict[str, Any]:
    import json

    card = json.loads((Path(model_dir) / "card.json").read_text())
    return {k: card[k] for k in ("holdout", "choices", "members", "train_seconds") if k in card}


__all__ = ["FacadePredictions", "NextEventRun", "facade_predictions", "prefixes", "run_next_event", "score_test_prefixes"]
