"""The gradient-boosted-trees next-event baseline (ejc.eval.gbt)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ejc.data.sequence import EventSequence
from ejc.eval.gbt import DEFAULT_GRID, GBTPredictor, Vocab, categorical_mask, choose_gbt, feature_names, fit_gbt_baseline, prefix_features
from ejc.eval.protocol import END, chronological_split, prefix_targets, type_list

MONDAY = 1704067200.0  # 2024-01-01 00:00:00 UTC, a Monday
HOUR = 3600.0
FAST = {"ks": (1, 2), "grid": DEFAULT_GRID[:1], "max_iter": 60}


def hour_cases(n: int = 240, seed: int = 0) -> list[EventSequence]:
    """``a`` at a random time of day; then ``b`` (morning start) or ``c`` (afternoon start) 1 h
    later; then ``d`` 2 h later. Only the time of day tells ``b`` from ``c``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t0 = MONDAY + 86400.0 * rng.integers(0, 60) + HOUR * rng.uniform(0, 24)
        mid = "b" if (t0 % 86400.0) < 12 * HOUR else "c"
        out.append(EventSequence(embeddings=None, timestamps=[t0, t0 + HOUR, t0 + 3 * HOUR], event_types=["a", mid, "d"], id=f"c{i}"))
    return out


def ngram_accuracy(fit: list[EventSequence], cases: list[EventSequence]) -> float:
    from ejc.eval.baselines import NGramPredictor, choose_ngram

    tl = [type_list(s) for s in fit]
    n, _ = choose_ngram(tl, [type_list(s) for s in cases], 4)
    m = NGramPredictor(n).fit(tl)
    t = prefix_targets(cases)
    return float(np.mean([m.predict(type_list(cases[c])[:k])[0] == y for c, k, y in zip(t.case, t.length, t.types)]))


def test_features_of_a_hand_made_case():
    ts = [MONDAY + 10.5 * HOUR, MONDAY + 10.5 * HOUR + 90.0, MONDAY + 86400.0 * 2 + 23.75 * HOUR]  # Mon 10:30, Mon 10:31:30, Wed 23:45
    s = EventSequence(embeddings=None, timestamps=ts, event_types=["a", "b", "a"], id="x")
    v = Vocab.of([s])
    assert v.codes == {"a": 0, "b": 1} and v.other == 2 and v.pad == 3 and v.count_types == ["a", "b"]
    origin = MONDAY
    X = prefix_features([s], (np.zeros(3, np.int64), np.array([1, 2, 3])), 2, v, origin=origin, scale=86400.0)
    assert feature_names(2, v) == ["last_1", "last_2", "count_a", "count_b", "length", "log_last_gap", "log_elapsed", "hour", "weekday", "drift"]
    assert X.shape == (3, 10)
    np.testing.assert_array_equal(X[:, :2], [[0, 3], [1, 0], [0, 1]])  # most recent first, pad before the start
    np.testing.assert_array_equal(X[:, 2:4], [[1, 0], [1, 1], [2, 1]])
    np.testing.assert_array_equal(X[:, 4], [1, 2, 3])
    assert math.isnan(X[0, 5])
    np.testing.assert_allclose(X[1:, 5], np.log1p([90.0, ts[2] - ts[1]]))
    np.testing.assert_allclose(X[:, 6], np.log1p([0.0, 90.0, ts[2] - ts[0]]))
    np.testing.assert_allclose(X[:, 7], [10.5, 10.525, 23.75])
    np.testing.assert_array_equal(X[:, 8], [0, 0, 2])
    np.testing.assert_allclose(X[:, 9], (np.array(ts) - origin) / 86400.0)
    np.testing.assert_array_equal(categorical_mask(2, v), [True, True] + [False] * 8)
    # unseen types are missing (NaN), no counts; PrefixTargets work as prefixes too
    u = EventSequence(embeddings=None, timestamps=None, event_types=["z", "a"], id="u")
    Xu = prefix_features([u], prefix_targets([u]), 2, v, counts=False)
    assert Xu.shape == (2, 8)  # prefixes of length 1 and 2
    assert math.isnan(Xu[0, 0]) and Xu[0, 1] == 3 and Xu[1, 0] == 0 and math.isnan(Xu[1, 1])
    assert np.isnan(Xu[:, 3:]).all() and list(Xu[:, 2]) == [1, 2]


def test_gbt_beats_ngram_when_the_time_of_day_decides():
    split = chronological_split(hour_cases())
    model, choice = fit_gbt_baseline(split.fit, split.val, **FAST)
    assert set(choice.val_accuracy) and set(choice.val_mae_days) and choice.type_k in (1, 2)
    t = prefix_targets(split.test)
    names = ["a", "b", "c", "d", END]
    probs, gaps = model.predict(split.test, t, names)
    acc = float(np.mean(np.array(names, dtype=object)[probs.argmax(1)] == t.types))
    ng = ngram_accuracy(split.train, split.test)
    assert acc >= 0.97
    assert ng <= 0.9 and acc - ng >= 0.1
    going = ~t.is_end
    assert np.mean(np.abs(gaps[going] - t.gaps[going])) / 86400.0 < 0.01  # 1 h or 2 h, exactly learnable
    # the choice is deterministic
    again = choose_gbt(split.fit, split.val, **FAST).to_dict()
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in choice.to_dict().items() if k != "seconds"}


def test_probs_cover_names_unseen_types_zero_and_deterministic():
    cases = hour_cases(120, seed=1)
    t = prefix_targets(cases)
    names = ["zzz", "d", END, "c", "b", "a"]
    runs = [GBTPredictor(random_state=3).fit(cases, k=2, max_iter=20).predict(cases, t, names) for _ in range(2)]
    (p, g), (p2, g2) = runs
    assert p.shape == (len(t), len(names)) and g.shape == (len(t),)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert (p[:, 0] == 0).all() and (p[:, 1:] >= 0).all()
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(g, g2)
    # names that leave out a class: renormalised over the rest
    p3, _ = GBTPredictor(random_state=3).fit(cases, k=2, max_iter=20).predict(cases, t, ["a", "b"])
    np.testing.assert_allclose(p3.sum(1), 1.0)


def test_untimed_cases_work():
    rng = np.random.default_rng(0)
    cases = [EventSequence(embeddings=None, timestamps=None, event_types=["a", str(rng.choice(["b", "c"], p=[0.8, 0.2])), "d"], id=f"u{i}") for i in range(90)]
    split = chronological_split(cases)
    model, choice = fit_gbt_baseline(split.fit, split.val, **FAST)
    assert math.isnan(choice.gap_val_mae_days)
    t = prefix_targets(split.test)
    probs, gaps = model.predict(split.test, t, ["a", "b", "c", "d", END])
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert np.isnan(gaps).all()
    assert (probs.argmax(1)[t.length == 1] == 1).all()  # "b" after "a"
    # a mix of timed and untimed prefixes predicts too
    mixed = [*hour_cases(40), *cases[:20]]
    m = GBTPredictor().fit(mixed, k=1, max_iter=10)
    p, g = m.predict(mixed, prefix_targets(mixed), m.names)
    assert np.isfinite(g).all() and np.allclose(p.sum(1), 1.0)


def test_single_class_and_bad_k():
    cases = [EventSequence(embeddings=None, timestamps=[0.0], event_types=["a"], id=f"s{i}") for i in range(5)]
    m = GBTPredictor().fit(cases, k=1)
    p, g = m.predict(cases, prefix_targets(cases), ["a", END])
    np.testing.assert_array_equal(p, [[0.0, 1.0]] * 5)
    assert np.isnan(g).all()
    with pytest.raises(ValueError):
        prefix_features(cases, prefix_targets(cases), 0, m.vocab)
