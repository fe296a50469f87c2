"""The log anomaly model: line statistics, robust threshold, LRU state, train/save/load, alerts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import ANOMALY_LINE, syslog_lines

from ejc.errors import EjcError
from ejc.logs.detector import LogModel
from ejc.logs.scoring import AdaptiveThreshold, LineStats, SourceState, robust_stats


def _stats() -> LineStats:
    s = LineStats(n=2)
    ctx: tuple[str, ...] = ()
    for i in range(100):
        tid = ("A", "B")[i % 2]
        s.learn(tid, ctx, [f"10.0.0.{i % 3}"] if tid == "A" else [], 2.0)
        ctx = (tid,)
    return s.finish()


def test_line_stats_components_measure_each_kind_of_surprise():
    s = _stats()
    normal = s.components("B", ("A",), [], 2.0, None)
    assert normal["template"] == pytest.approx(-math.log((50 + 0.5) / (100 + 0.5 * 3)))
    assert normal["sequence"] == 0.0  # B always follows A
    assert normal["parameter"] == normal["gap"] == normal["severity"] == 0.0
    unseen = s.components(None, ("A",), [], 2.0, None)
    assert unseen["template"] == pytest.approx(-math.log(0.5 / 101.5))  # the unseen mass
    # A after A never happened: the sequence part is positive
    assert s.components("A", ("A",), ["10.0.0.1"], 2.0, None)["sequence"] > 0.5
    # a value never seen in a 3-valued slot seen 50 times: log(50 / 3) nats
    assert s.components("A", ("B",), ["192.168.1.1"], 2.0, None)["parameter"] == pytest.approx(math.log(50 / 3))
    assert s.components("A", ("B",), ["10.0.0.2"], 2.0, None)["parameter"] == 0.0
    # gaps were all 2 s: an hour is far out, the scale floor (0.25) keeps it finite and capped
    assert s.components("B", ("A",), [], 3600.0, None)["gap"] == 10.0
    assert s.components("B", ("A",), [], 2.0, "FATAL")["severity"] == 3.0
    assert s.components("B", ("A",), [], 2.0, "warning")["severity"] == 0.5


def test_line_stats_round_trip_gives_the_same_components():
    s = _stats()
    r = LineStats.from_dict(json.loads(json.dumps(s.to_dict())))
    for args in [("A", ("B",), ["9.9.9.9"], 50.0, "ERROR"), ("B", ("A",), [], 2.0, None), (None, (), [], None, None)]:
        assert r.components(*args) == s.components(*args)


def test_robust_stats_uses_the_tail_when_the_mad_is_zero():
    a = np.zeros(1000)
    a[-20:] = 5.0  # 2% of lines score 5, the rest 0: MAD 0, q99 = 5
    med, scale = robust_stats(a)
    assert med == 0.0 and scale == pytest.approx(5.0 / 2.326, rel=1e-3)
    assert robust_stats(np.ones(50)) == (1.0, 0.05)  # floored
    rng = np.random.default_rng(0)
    med, scale = robust_stats(rng.normal(3.0, 2.0, 200_000))
    assert med == pytest.approx(3.0, abs=0.03) and scale == pytest.approx(2.0, rel=0.03)


def test_adaptive_threshold_follows_a_drifting_log():
    rng = np.random.default_rng(1)
    thr = AdaptiveThreshold(3.0, median=0.0, scale=1.0, warmup=500, window=2000, every=100)
    assert thr.value == 3.0
    shifted = rng.normal(10.0, 1.0, 3000)  # the whole log moved up by 10
    alerts_late = 0
    for i, x in enumerate(shifted):
        if i >= 1000:
            alerts_late += x > thr.value
        thr.update(x)
    assert 12.0 < thr.value < 14.5  # median ~10 + 3 x scale ~1
    assert alerts_late / 2000 < 0.01  # back near the calibrated rate, not 100%
    fixed = AdaptiveThreshold(3.0, 0.0, 1.0, adaptive=False)
    for x in shifted:
        fixed.update(x)
    assert fixed.value == 3.0
    with pytest.raises(ValueError, match="finite"):
        AdaptiveThreshold(float("nan"), 0.0, 1.0)


def test_source_state_is_bounded_lru():
    st = SourceState(n=3, max_sources=2)
    st.push("a", "T1", 1.0)
    st.push("b", "T2", 2.0)
    st.get("a")  # a is now the most recent
    st.push("c", "T3", None)
    assert len(st) == 2
    assert st.get("b") == ((), None)  # evicted
    st.push("a", "T4", None)
    st.push("a", "T5", 5.0)
    assert st.get("a") == (("T4", "T5"), 5.0)  # last n-1 templates; the time kept when a line has none
    assert st.get("c") == (("T3",), None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    lines = syslog_lines(1500, seed=0)
    model = LogModel.train(lines)
    d = model.save(tmp_path_factory.mktemp("logmodel") / "m")
    return model, d


def test_train_summarises_and_calibrates(trained):
    model, _ = trained
    assert model.summary["lines"] == 1500 and model.summary["formats"] == {"rfc3164": 1500}
    assert model.format == "rfc3164"
    # 4 message shapes; Drain's prefix tree (depth 8) may keep a user name early in a message apart
    assert 4 <= model.summary["templates"] <= 6 and model.summary["templates"] == len(model.miner)
    assert model.summary["sessions"] == 4  # web1/web2 x sshd/CRON
    cal = model.calibration
    assert cal["ngram_order"] in (1, 2, 3, 4) and cal["scale"] >= 0.05
    assert cal["calibration_lines"] == 1200  # everything after the 20% warm-up, no severities here
    assert cal["calibration_alert_rate_at_default"] < 0.01
    assert model.summary["issues"]["invalid_utf8"] == 0 and not any(model.summary["issues"].values())  # clean lines: nothing repaired


def test_train_counts_what_it_had_to_repair_in_raw_bytes():
    lines = [ln.encode() for ln in syslog_lines(40, seed=1)]
    lines[3] = lines[3] + b" \xff\xfe"  # invalid UTF-8
    lines[7] = lines[7].replace(b" ", b"\x00 ", 1)  # a NUL
    model = LogModel.train(lines)
    assert model.summary["lines"] == 40
    assert {k: v for k, v in model.summary["issues"].items() if v} == {"invalid_utf8": 1, "control_chars": 1}


def test_saved_model_scores_like_the_trained_one_and_flags_the_odd_line(trained):
    model, d = trained
    loaded = LogModel.load(d)
    test = syslog_lines(300, seed=1, start=1_764_900_000.0)
    a, b = model.scorer(adaptive=False), loaded.scorer(adaptive=False)
    sa = [a.score_line(x).score for x in test]
    sb = [b.score_line(x).score for x in test]
    assert sa == pytest.approx(sb, abs=1e-12)
    assert sum(x > a.threshold.value for x in sa) <= 3  # a quiet log stays quiet
    odd = b.score_line(ANOMALY_LINE, 301)
    assert odd.is_alert and odd.template_id is None
    alert = odd.alert()
    assert alert["line"] == 301 and alert["source"] == "web1/kernel" and alert["raw"] == ANOMALY_LINE
    assert "never seen in training" in alert["reason"]
    assert set(alert["components"]) == {"template", "sequence", "parameter", "gap", "severity"}
    assert alert["score"] > alert["threshold"]
    # a known template with an IP never seen with it: the parameter component says so
    new_ip = test[0].replace("from 10.0.0.", "from 172.16.9.")
    s = b.score_line(new_ip, 302)
    assert s.parts["parameter"] > 0 and any(v.startswith("172.16.9.") for v in s.new_values)


def test_update_learns_templates_online(trained):
    _, d = trained
    m = LogModel.load(d)
    sc = m.scorer(adaptive=False, update=True)
    first = sc.score_line(ANOMALY_LINE).score
    for _ in range(50):
        sc.score_line(ANOMALY_LINE)
    assert sc.score_line(ANOMALY_LINE).score < first - 2.0
    n0 = len(LogModel.load(d).miner)
    assert len(m.miner) == n0 + 1  # the saved model is unchanged on disk


def test_train_refuses_bad_input(tmp_path):
    with pytest.raises(EjcError, match="at least 10 lines"):
        LogModel.train(["a line"] * 3)
    with pytest.raises(EjcError, match="warmup"):
        LogModel.train(syslog_lines(20), warmup=1.5)
    with pytest.raises(EjcError, match="not a valid regular expression"):
        LogModel.train(syslog_lines(20), session_key="blk_(")
    with pytest.raises(EjcError, match="not a log model"):
        LogModel.load(tmp_path)


def test_session_key_cuts_sequences():
    lines = [f"081109 2035{i % 60:02d} 148 INFO dfs.DataNode: Receiving block blk_{i % 7} src: /10.0.0.1:50010" for i in range(70)]
    m = LogModel.train(lines, session_key=r"blk_-?\d+")
    assert m.summary["sessions"] == 7
