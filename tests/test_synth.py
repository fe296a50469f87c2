"""Ground-truth generator: every planted thing is where the truth says, and measurably so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ejc.data.schema import EVENT_SCHEMA, check_event_table
from ejc.data.synth import SynthConfig, generate, summarize, truth_json, write_synth
from ejc.errors import ConfigError

N = 400
SEED = 7


@pytest.fixture(scope="module")
def data():
    table, truth = generate(N, SEED)
    cols = table.to_pydict()
    ids = np.array(cols["entity_id"], dtype=object)
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    ents = {}
    for a, b in zip(bounds[:-1], bounds[1:]):
        ents[ids[a]] = {
            "t": np.array(cols["timestamp"][a:b]),
            "type": np.array(cols["event_type"][a:b], dtype=object),
            "mod": cols["modality"][a:b],
            "emb": cols["embedding"][a:b],
            "text": cols["text"][a:b],
            "attr": cols["attributes"][a:b],
            "label": np.array(cols["label"][a:b], dtype=object),
        }
    return table, truth, ents


def _bigrams(types: np.ndarray, names: list[str]) -> np.ndarray:
    ix = {n: i for i, n in enumerate(names)}
    x = np.array([ix[t] for t in types])
    m = np.zeros((len(names), len(names)))
    np.add.at(m, (x[:-1], x[1:]), 1.0)
    return m.ravel() / max(1, len(x) - 1)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _cv_accuracy(X: np.ndarray, y: np.ndarray, method: str, folds: int = 5) -> float:
    """k-fold accuracy of a nearest-centroid or softmax-regression classifier (pure numpy)."""
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    classes = np.unique(y)
    hits = 0
    for f in range(folds):
        te = perm[f::folds]
        tr = np.setdiff1d(perm, te)
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-9
        A, Z = (X[tr] - mu) / sd, (X[te] - mu) / sd
        if method == "centroid":
            cent = np.stack([A[y[tr] == c].mean(0) for c in classes])
            pred = classes[np.argmin(((Z[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)]
        else:
            Y = (y[tr][:, None] == classes[None]).astype(float)
            W = np.zeros((A.shape[1], len(classes)))
            b = np.zeros(len(classes))
            for _ in range(300):
                logits = A @ W + b
                P = np.exp(logits - logits.max(1, keepdims=True))
                P /= P.sum(1, keepdims=True)
                G = (P - Y) / len(A)
                W -= 0.5 * (A.T @ G + 1e-3 * W)
                b -= 0.5 * G.sum(0)
            pred = classes[np.argmax(Z @ W + b, axis=1)]
        hits += int((pred == y[te]).sum())
    return hits / len(y)


# ----------------------------------------------------------------------------------------------
# table shape


def test_schema_order_and_counts(data):
    table, truth, ents = data
    assert table.schema.equals(EVENT_SCHEMA)
    check_event_table(table)
    assert len(truth["entities"]) == N
    assert table.num_rows == sum(e["num_events"] for e in truth["entities"]) == summarize(truth)["events"]
    ids = table.column("entity_id").to_pylist()
    assert ids == sorted(ids)
    assert list(ents) == [e["id"] for e in truth["entities"]]
    for e in truth["entities"]:
        t = ents[e["id"]]["t"]
        assert len(t) == e["num_events"]
        assert np.all(np.diff(t) > 0)
        assert t[0] == e["start"] and t[-1] == e["end"]
    starts = np.array([e["start"] for e in truth["entities"]])
    assert starts.min() >= 1704067200.0 and starts.max() < 1704067200.0 + 45 * 86400
    lengths = np.array([e["num_events"] for e in truth["entities"]])
    assert 170 <= lengths.mean() <= 240 and lengths.min() >= 100 and lengths.max() <= 420
    gaps = np.concatenate([np.diff(ents[i]["t"]) for i in ents])
    assert 60 <= np.median(gaps) <= 3600  # median gap: minutes
    json.loads(truth_json(truth))  # JSON-serialisable, no NaN


def test_modalities_text_and_attributes(data):
    table, truth, ents = data
    dims = truth["modalities"]
    assert dims == {"behavior": 16, "text": 24, "image": 32}
    mods = np.array(table.column("modality").to_pylist())
    lens = np.array([len(v) for v in table.column("embedding").to_pylist()])
    for m, d in dims.items():
        assert np.all(lens[mods == m] == d)
    share = {m: float(np.mean(mods == m)) for m in dims}
    assert share["image"] < share["text"] < share["behavior"]
    texts = np.array(table.column("text").to_pylist(), dtype=object)
    types = np.array(table.column("event_type").to_pylist(), dtype=object)
    assert all(t == "event " + ty for t, ty in zip(texts[mods == "text"], types[mods == "text"]))
    assert all(t is None for t in texts[mods != "text"])
    assert set(types) == set(truth["event_types"])
    n_home = 0
    for e in truth["entities"]:
        attrs = ents[e["id"]]["attr"]
        if e["home"] is None:
            assert all(a is None for a in attrs)
            continue
        n_home += 1
        xy = np.array([[float(dict(a)["x"]), float(dict(a)["y"])] for a in attrs])
        assert np.abs(xy - np.array(e["home"])).max() < 6 * 0.5
    assert 0.3 * N < n_home < 0.7 * N


def test_prototypes_and_noise(data):
    table, truth, ents = data
    protos = {m: np.array(v) for m, v in truth["prototypes"].items()}
    idx = {t: i for i, t in enumerate(truth["event_types"])}
    normal_d, other_d = [], []
    for eid in list(ents)[:40]:
        ev = ents[eid]
        for ty, m, v, lab in zip(ev["type"], ev["mod"], ev["emb"], ev["label"]):
            if lab == "normal":
                dist = np.linalg.norm(protos[m] - np.array(v), axis=1)
                normal_d.append(dist[idx[ty]])
                other_d.append(np.delete(dist, idx[ty]).min())
    assert np.max(normal_d) < 0.9 and np.min(other_d) > 0.9  # each vector is nearest its own prototype


# ----------------------------------------------------------------------------------------------
# determinism


def test_deterministic_same_seed_and_across_processes(tmp_path: Path):
    a = write_synth(tmp_path / "a", num_entities=60, seed=3)
    b = write_synth(tmp_path / "b", num_entities=60, seed=3)
    code = (
        "import sys; from ejc.data.synth import write_synth; "
        "write_synth(sys.argv[1], num_entities=60, seed=3)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], check=True, cwd=Path(__file__).parents[1])
    ta = (tmp_path / "a" / "truth.json").read_bytes()
    assert ta == (tmp_path / "b" / "truth.json").read_bytes() == (tmp_path / "c" / "truth.json").read_bytes()
    ea = pq.read_table(tmp_path / "a" / "events.parquet")
    assert ea.equals(pq.read_table(tmp_path / "b" / "events.parquet"))
    assert ea.equals(pq.read_table(tmp_path / "c" / "events.parquet"))
    assert a["events"] == ea.num_rows and a["entities"] == 60
    assert {k: v for k, v in a.items() if not k.endswith("_path")} == {k: v for k, v in b.items() if not k.endswith("_path")}
    t2, truth2 = generate(60, 4)
    assert truth_json(truth2).encode() != ta
    assert not t2.equals(ea)


def test_small_and_invalid():
    for n in (1, 3, 9):
        table, truth = generate(n, 0)
        assert len(truth["entities"]) == n and table.num_rows == sum(e["num_events"] for e in truth["entities"])
    with pytest.raises(ConfigError) as err:
        generate(10, 0, SynthConfig(num_event_types=8, class_timing=("regular",), min_gap_s=1.0))
    assert len(err.value.problems) >= 3
    with pytest.raises(ConfigError):
        generate(0, 0)


# ----------------------------------------------------------------------------------------------
# planted patterns


def _patterns(truth, kind):
    return [p for p in truth["patterns"] if p["kind"] == kind]


def test_patterns_disjoint_and_anomalies_outside(data):
    _, truth, ents = data
    per: dict[str, list] = {}
    for p in truth["patterns"]:
        t = ents[p["entity"]]["t"]
        assert t[p["start_index"]] == p["start"] and t[p["end_index"]] == p["end"]
        per.setdefault(p["entity"], []).append(p)
    for spans in per.values():
        spans.sort(key=lambda p: p["start_index"])
        for x, y in zip(spans, spans[1:]):
            assert x["end_index"] < y["start_index"] and x["end"] < y["start"]
    for a in truth["anomalous_events"]:
        for p in per.get(a["entity"], []):
            assert not p["start_index"] <= a["index"] <= p["end_index"]
    counts = summarize(truth)["patterns"]
    assert all(counts.get(k, 0) >= 15 for k in ("periodic", "burst", "cycle", "regime_change"))
    kinds_by_entity = {e["id"]: e["patterns"] for e in truth["entities"]}
    assert all(sorted(kinds_by_entity[k]) == sorted(p["kind"] for p in v) for k, v in per.items())


def test_periodic(data):
    _, truth, ents = data
    ptype = truth["special_types"]["periodic"]
    listed: dict[str, set] = {}
    periods = set()
    for p in _patterns(truth, "periodic"):
        ev = ents[p["entity"]]
        idx = np.array(p["indices"])
        assert len(idx) == p["count"] >= 5 and idx[0] == p["start_index"] and idx[-1] == p["end_index"]
        assert np.all(ev["type"][idx] == ptype)
        d = np.diff(ev["t"][idx])
        assert np.all(np.abs(d - p["period"]) <= 2 * p["jitter"] + 1e-6)
        assert p["jitter"] <= 0.011 * p["period"]
        periods.add(p["period"])
        listed[p["entity"]] = set(idx.tolist())
    assert {3600.0, 21600.0} <= periods
    for eid, ev in ents.items():  # the periodic type appears nowhere else
        assert set(np.flatnonzero(ev["type"] == ptype).tolist()) == listed.get(eid, set())


def test_bursts_dense_and_background_never_bursty(data):
    _, truth, ents = data
    cfg = truth["config"]
    window, min_events = cfg["burst_window_s"], cfg["burst_events"][0]
    in_burst: dict[str, np.ndarray] = {}
    ratios = []
    for p in _patterns(truth, "burst"):
        ev = ents[p["entity"]]
        s, e = p["start_index"], p["end_index"]
        assert e - s + 1 == p["count"] and 20 <= p["count"] <= 40
        assert p["end"] - p["start"] <= window
        burst_rate = p["count"] / (p["end"] - p["start"])
        bg_rate = (len(ev["t"]) - p["count"]) / (ev["t"][-1] - ev["t"][0])
        ratios.append(burst_rate / bg_rate)
        mask = np.zeros(len(ev["t"]), bool)
        mask[s : e + 1] = True
        in_burst[p["entity"]] = mask
    assert min(ratios) > 100  # bursts are >= 100x denser than their entity's background
    worst = 0
    for eid, ev in ents.items():
        t = ev["t"][~in_burst.get(eid, np.zeros(len(ev["t"]), bool))]
        counts = np.searchsorted(t, t + window, side="right") - np.arange(len(t))
        worst = max(worst, int(counts.max()))
    assert worst < min_events
    assert worst <= 15


def test_cycles_exact_and_no_accidental_cycles(data):
    _, truth, ents = data
    protected: dict[str, np.ndarray] = {}
    for p in _patterns(truth, "cycle"):
        ev = ents[p["entity"]]
        s, e, motif = p["start_index"], p["end_index"], p["motif"]
        L = len(motif)
        assert 3 <= L <= 4 and len(set(motif)) == L and p["repeats"] >= 5
        assert list(ev["type"][s : e + 1]) == motif * p["repeats"]
        assert ev["type"][s - 1] != ev["type"][s - 1 + L]  # the repetition does not extend
        if e + 1 < len(ev["t"]):
            assert ev["type"][e + 1] != ev["type"][e + 1 - L]
        mask = np.zeros(len(ev["t"]), bool)
        mask[s : e + 1] = True
        protected[p["entity"]] = mask
    for p in _patterns(truth, "periodic"):  # heartbeats may run back to back in quiet stretches
        mask = protected.setdefault(p["entity"], np.zeros(len(ents[p["entity"]]["t"]), bool))
        mask[p["indices"]] = True
    longest = 0
    for eid, ev in ents.items():
        x = np.array(ev["type"], dtype=object)
        x[protected.get(eid, np.zeros(len(x), bool))] = None
        for L in (3, 4):
            eq = np.array([a is not None and a == b for a, b in zip(x[L:], x[:-L])])
            run = best = 0
            for v in eq:
                run = run + 1 if v else 0
                best = max(best, run)
            longest = max(longest, (best + L) / L)  # repetitions of a period-L motif
    assert longest < 4


def test_regime_change_measured(data):
    _, truth, ents = data
    switched = 0
    for p in _patterns(truth, "regime_change"):
        ev = ents[p["entity"]]
        s, c, e = p["start_index"], p["index"], p["end_index"]
        assert ev["t"][c] == p["time"] and s < c <= e
        before, after = np.diff(ev["t"][s:c]), np.diff(ev["t"][c - 1 : e + 1])
        assert len(before) >= 29 and len(after) >= 30
        geo = np.exp(np.log(after).mean() - np.log(before).mean())
        med = np.median(after) / np.median(before)
        assert np.isclose(geo, p["gap_ratio"]) and np.isclose(med, p["median_gap_ratio"])
        if p["gap_factor"] > 1:
            assert geo >= 4 and med >= 4
        else:
            assert geo <= 0.25 and med <= 0.25
        if p["switched_transitions"]:
            switched += 1
            names = truth["background_types"]
            ix = {n: i for i, n in enumerate(names)}
            R = np.array(truth["regime_transition_matrix"])
            x = [ix[t] for t in ev["type"][c - 1 : e + 1] if t in ix]
            hits = np.mean([R[a, b] > 0.5 for a, b in zip(x, x[1:])])
            assert hits > 0.45  # the new chain's successor dominates after the change
    assert switched >= 3


# ----------------------------------------------------------------------------------------------
# anomalies


def test_anomalous_events_exact(data):
    table, truth, ents = data
    listed = {(a["entity"], a["index"]) for a in truth["anomalous_events"]}
    labels = np.array(table.column("label").to_pylist(), dtype=object)
    assert set(labels) == {"anomaly", "normal"}
    found = {(eid, int(i)) for eid, ev in ents.items() for i in np.flatnonzero(ev["label"] == "anomaly")}
    assert found == listed and len(listed) == len(truth["anomalous_events"])
    protos = {m: np.array(v) for m, v in truth["prototypes"].items()}
    rare = truth["special_types"]["rare"]
    kinds = summarize(truth)["anomalous_events"]
    assert all(kinds.get(k, 0) >= 20 for k in ("embedding", "type", "time"))
    for a in truth["anomalous_events"]:
        ev = ents[a["entity"]]
        i = a["index"]
        assert ev["t"][i] == a["timestamp"]
        if a["kind"] == "type":
            assert ev["type"][i] == rare
        elif a["kind"] == "embedding":
            d = np.linalg.norm(protos[ev["mod"][i]] - np.array(ev["emb"][i]), axis=1)
            assert d.min() >= 1.9
        else:
            gap = ev["t"][i] - ev["t"][i - 1]
            assert gap == pytest.approx(a["gap"])
            d = np.diff(ev["t"])  # d[k] is the gap before event k + 1
            local = np.median(np.delete(d[max(0, i - 11) : i + 10], min(i - 1, 10)))
            assert gap >= 50 * local or gap <= 0.1
    rare_at = {(eid, int(i)) for eid, ev in ents.items() for i in np.flatnonzero(ev["type"] == rare)}
    assert rare_at == {(a["entity"], a["index"]) for a in truth["anomalous_events"] if a["kind"] == "type"}
    n_ent = len({a["entity"] for a in truth["anomalous_events"]})
    assert 0.2 * N <= n_ent <= 0.4 * N
    per = [np.mean(ents[eid]["label"] == "anomaly") for eid in {a["entity"] for a in truth["anomalous_events"]}]
    assert 0.005 <= np.mean(per) <= 0.025


def _fit_to_classes(truth, eid: str, types: np.ndarray) -> float:
    """Best fraction of background transitions (cycles left out) that are a move of some class chain."""
    ix = {n: i for i, n in enumerate(truth["background_types"])}
    keep = np.ones(len(types), bool)
    for p in truth["patterns"]:
        if p["entity"] == eid and p["kind"] == "cycle":
            keep[p["start_index"] : p["end_index"] + 1] = False
    x = np.array([ix.get(t, -1) if k else -1 for t, k in zip(types, keep)])
    a, b = x[:-1], x[1:]
    ok = (a >= 0) & (b >= 0)
    a, b = a[ok], b[ok]
    best = 0.0
    for s in truth["transition_structures"]:
        succ, skip = np.array(s["successor"]), np.array(s["skip"])
        best = max(best, float(np.mean((succ[a] == b) | (skip[a] == b))))
    return best


def test_anomalous_sequences_follow_no_class(data):
    _, truth, ents = data
    aseq = {a["entity"]: a["kind"] for a in truth["anomalous_sequences"]}
    assert set(aseq.values()) == {"shuffled", "reversed", "foreign"} and 0.03 * N <= len(aseq) <= 0.05 * N
    switched = {p["entity"] for p in _patterns(truth, "regime_change") if p["switched_transitions"]}
    fits_bad = [_fit_to_classes(truth, e, ents[e]["type"]) for e in aseq]
    fits_ok = [_fit_to_classes(truth, e["id"], ents[e["id"]]["type"]) for e in truth["entities"]
               if not e["anomalous_sequence"] and e["id"] not in switched]
    assert max(fits_bad) < 0.35 and min(fits_ok) > 0.5  # noisy similar copies are the lowest normal ones
    for e in truth["entities"]:
        assert e["anomalous_sequence"] == (e["id"] in aseq)
        if e["anomalous_sequence"]:
            assert e["patterns"] == [] and e["num_anomalous_events"] == 0


# ----------------------------------------------------------------------------------------------
# classes: order and timing, not the bag


def _timing_features(t: np.ndarray) -> list[float]:
    lg = np.log(np.diff(t))
    q25, q50, q75 = np.percentile(lg, [25, 50, 75])
    return [q75 - q25, q50, float(np.mean(lg < np.log(300)))]


def test_classes_by_order_and_timing_not_bag(data):
    _, truth, ents = data
    names = truth["event_types"]
    mods = list(truth["modalities"])
    rows = [e for e in truth["entities"] if not e["anomalous_sequence"]]
    y = np.array([e["class"] for e in rows])
    group = np.array([truth["classes"][c]["transition_structure"] for c in y])
    bag, big, tim = [], [], []
    for e in rows:
        ev = ents[e["id"]]
        means = []
        for m in mods:
            vs = [v for v, mm in zip(ev["emb"], ev["mod"]) if mm == m]
            means.append(np.mean(vs, axis=0))
        bag.append(np.concatenate(means))
        big.append(_bigrams(ev["type"], names))
        tim.append(_timing_features(ev["t"]))
    bag, big, tim = np.array(bag), np.array(big), np.array(tim)
    acc_bag_c = _cv_accuracy(bag, y, "centroid")
    acc_bag_lr = _cv_accuracy(bag, y, "logreg")
    acc_big_group = _cv_accuracy(big, group, "centroid")
    acc_all = _cv_accuracy(np.hstack([big, tim]), y, "logreg")
    pair = np.isin(y, ["c0", "c1"])
    acc_timing_pair = _cv_accuracy(tim[pair], y[pair], "centroid")
    acc_big_pair = _cv_accuracy(big[pair], y[pair], "centroid")
    assert acc_bag_c <= 0.40 and acc_bag_lr <= 0.40  # chance is 0.25
    assert acc_big_group >= 0.95  # transition structures differ
    assert acc_all >= 0.9  # order + timing identify all four classes
    assert acc_timing_pair >= 0.95 and acc_big_pair <= 0.7  # c0/c1: same transitions, other timing


def test_subclasses_differ_subtly(data):
    _, truth, ents = data
    rows = [e for e in truth["entities"] if not e["anomalous_sequence"]]
    big = np.array([_bigrams(ents[e["id"]]["type"], truth["event_types"]) for e in rows])
    sub = np.array([e["subclass"] for e in rows])
    cls = np.array([e["class"] for e in rows])
    accs = [_cv_accuracy(big[cls == c], sub[cls == c], "centroid") for c in truth["classes"]]
    assert min(accs) >= 0.8
    for s, info in truth["subclasses"].items():
        T = np.array(info["transition_matrix"])
        assert np.allclose(T.sum(0), 1) and np.allclose(T.sum(1), 1)  # doubly stochastic
        assert truth["hierarchy"]["parent"][s] == info["class"]
    for e in truth["entities"]:
        assert e["subclass"] in truth["hierarchy"]["children"][e["class"]]


# ----------------------------------------------------------------------------------------------
# related entities


def test_relationships_measurably_related(data):
    _, truth, ents = data
    names = truth["event_types"]
    rels = truth["relationships"]
    sim = [r for r in rels if r["type"] == "similar"]
    comp = [r for r in rels if r["type"] == "complementary"]
    assert len(sim) >= 10 and len(comp) >= 10
    prof = {e: _bigrams(ev["type"], names) for e, ev in ents.items()}
    sub = {e["id"]: e["subclass"] for e in truth["entities"]}
    rng = np.random.default_rng(0)
    ids = list(ents)
    pairs = [rng.choice(ids, 2, replace=False) for _ in range(300)]
    rand_cos = [_cos(prof[a], prof[b]) for a, b in pairs]
    sim_cos = [_cos(prof[r["source"]], prof[r["target"]]) for r in sim]
    assert all(sub[r["source"]] == sub[r["target"]] for r in sim)
    assert min(sim_cos) > np.percentile(rand_cos, 75) and np.mean(sim_cos) > np.mean(rand_cos) + 0.3

    def agree(a: str, b: str) -> float:  # same type at the same position
        x, y = ents[a]["type"], ents[b]["type"]
        m = min(len(x), len(y))
        return float(np.mean(x[:m] == y[:m]))

    same_sub = [agree(a, b) for a, b in pairs if sub[a] == sub[b]]
    assert len(same_sub) >= 20
    assert min(agree(r["source"], r["target"]) for r in sim) > 0.85 > 0.3 > max(same_sub)
    for r in sim:
        a, b = ents[r["source"]]["t"], ents[r["target"]]["t"]
        assert len(a) == len(b) and b[0] - a[0] == pytest.approx(r["time_shift"])
        assert np.corrcoef(np.log(np.diff(a)), np.log(np.diff(b)))[0, 1] > 0.8

    def follow(src: str, dst: str, lo: float, hi: float) -> float:
        a, b = ents[src]["t"], ents[dst]["t"]
        j = np.searchsorted(a, b - lo, side="right") - 1  # latest source event <= b - lo
        ok = j >= 0
        ok[ok] = b[ok] - a[j[ok]] <= hi
        return float(ok.mean())

    for r in comp:
        lo, hi = r["delay_s"]
        assert follow(r["source"], r["target"], lo, hi) == 1.0
    rand = [follow(*rng.choice(ids, 2, replace=False), 5.0, 55.0) for _ in range(200)]
    assert np.mean(rand) < 0.05


def test_write_synth_summary(tmp_path: Path):
    out = write_synth(tmp_path / "s", num_entities=40, seed=1)
    truth = json.loads((tmp_path / "s" / "truth.json").read_text())
    table = pq.read_table(tmp_path / "s" / "events.parquet")
    assert table.schema.equals(EVENT_SCHEMA)
    assert out["entities"] == 40 and out["events"] == table.num_rows
    assert out["patterns"] == summarize(truth)["patterns"]
    assert sum(out["anomalous_events"].values()) == len(truth["anomalous_events"])
    assert set(truth) >= {"seed", "config", "modalities", "event_types", "classes", "entities", "patterns",
                          "anomalous_events", "anomalous_sequences", "relationships", "hierarchy"}
    assert truth["seed"] == 1 and truth["hierarchy"]["levels"] == ["class", "subclass"]
