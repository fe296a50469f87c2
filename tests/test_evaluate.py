"""`ejc evaluate`: metrics, baselines, protocols and the four commands on hand-checkable inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from ejc.cli import main
from ejc.eval.anomaly import empirical_pvalues, fisher_combine, leave_one_out_pvalues
from ejc.eval.baselines import CountVectorNN, NGramPredictor, UnseenEventDetector, UnseenNgramFraction, choose_ngram
from ejc.eval.metrics import accuracy, auroc, best_f1, mean_absolute_error, mean_reciprocal_rank, precision_recall_f1, ranks_of_truth, recall_at_k, roc_curve
from ejc.errors import EjcError
from ejc.eval.protocol import END, chronological_split, load_log, prefix_targets

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FAST = ["--config", "tiny", "-o", "train.steps=2", "finetune.max_epochs=2", "finetune.patience=1", "finetune.half_lives=[null, 0.5]", "finetune.ensemble=2"]


# ----------------------------------------------------------------------------------------------
# metrics


def test_auroc_roc_and_f1_on_known_scores():
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    labels = np.array([1, 1, 0, 0, 0])
    # pairs (pos, neg): 0.9 beats all 3; 0.8 beats 2 and ties 1 -> (3 + 2 + 0.5) / 6
    assert auroc(scores, labels) == pytest.approx(5.5 / 6)
    fpr, tpr, thr = roc_curve(scores, labels)
    assert thr.tolist() == [np.inf, 0.9, 0.8, 0.3, 0.1]
    assert tpr.tolist() == [0, 0.5, 1, 1, 1] and fpr.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 1])
    assert precision_recall_f1(scores > 0.5, labels) == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8})
    assert best_f1(scores, labels) == pytest.approx(0.8)  # 0.9 alone: p=1, r=0.5 -> 0.667
    assert auroc(-scores, labels) == pytest.approx(0.5 / 6)


def test_accuracy_mae_and_retrieval_ranks_by_hand():
    assert accuracy(np.array(["a", "b", "c"]), np.array(["a", "x", "c"])) == pytest.approx(2 / 3)
    assert accuracy(np.array(["a", "b"]), np.array(["a", "x"]), np.array([False, True])) == 0.0
    assert mean_absolute_error(np.array([1.0, 5.0, 9.0]), np.array([2.0, np.nan, 5.0])) == pytest.approx(2.5)
    scores = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.2], [0.9, 0.05, 0.05]])
    ranks = ranks_of_truth(scores, np.array([2, 1, -1]))
    assert ranks.tolist() == [2, 2, 4]  # ties rank pessimistically; a missing truth ranks C + 1
    assert recall_at_k(ranks, 2) == pytest.approx(2 / 3) and recall_at_k(ranks, 1) == 0.0
    assert mean_reciprocal_rank(ranks, 3) == pytest.approx((0.5 + 0.5 + 0) / 3)


def test_empirical_pvalues_and_fisher():
    cal = np.array([1.0, 2.0, 3.0, 4.0])
    assert empirical_pvalues(cal, np.array([0.0, 2.5, 4.0, 9.0])).tolist() == pytest.approx([1.0, 3 / 5, 2 / 5, 1 / 5])
    f = fisher_combine(np.stack([cal, cal], 1), np.array([[9.0, 0.0]]))
    assert f[0] == pytest.approx(-2 * (np.log(0.2) + np.log(1.0)))
    # calibration rows against the others: the top score has no other score above it
    assert leave_one_out_pvalues(np.array([1.0, 2.0, 2.0, 4.0])).tolist() == pytest.approx([1.0, 3 / 4, 3 / 4, 1 / 4])
    own = fisher_combine(np.stack([cal, cal[::-1]], 1))
    assert own.tolist() == pytest.approx([-2 * (np.log(1.0) + np.log(0.25)), -2 * (np.log(0.75) + np.log(0.5)), -2 * (np.log(0.5) + np.log(0.75)), -2 * (np.log(0.25) + np.log(1.0))])


def test_leave_one_out_calibration_matches_new_normal_scores():
    # each calibration row is scored exactly as a new score against the other rows would be
    rng = np.random.default_rng(0)
    cal = np.round(rng.normal(size=(60, 2)), 1)  # with ties
    own = fisher_combine(cal)
    for i in range(len(cal)):
        assert own[i] == pytest.approx(fisher_combine(np.delete(cal, i, 0), cal[i : i + 1])[0])
    # so the false-alarm rate at the calibrated 0.99 quantile is ~1% on new normal scores
    from ejc.eval.anomaly import threshold_from

    rates = []
    for seed in range(4):
        r = np.random.default_rng(seed)
        c, new = r.normal(size=(1200, 2)), r.normal(size=(100_000, 2))
        rates.append(float(np.mean(fisher_combine(c, new) > threshold_from(fisher_combine(c), 0.99))))
    assert 0.007 < float(np.mean(rates)) < 0.013


# ----------------------------------------------------------------------------------------------
# baselines and protocol


def test_ngram_backoff_and_choice_by_hand():
    cases = [["a", "b", "c"]] * 3 + [["a", "b", "d"]]
    m = NGramPredictor(2).fit(cases, [[0, 10, 20]] * 3 + [[0, 10, 50]])
    assert m.predict(["a"]) == ("b", 10.0)
    assert m.predict(["a", "b"]) == ("c", 20.0)  # c 3 times, d once; median gap after b = 20
    assert m.predict(["a", "b", "c"])[0] == END
    # an unseen context backs off to the unigram: b and END tie 4:4 (and in frequency): "<end>" < "b"
    assert m.predict(["zzz"])[0] == END
    # given that the case goes on: after c only END was seen, so back off to the unigram (b 4, c 3, d 1)
    assert m.predict(["a", "b", "c"], allow_end=False)[0] == "b" and m.predict(["zzz"], allow_end=False)[0] == "b"
    assert m.predict(["a", "b"], allow_end=False)[0] == "c"
    n, scores = choose_ngram(cases, [["a", "b", "c"]], max_n=3)
    assert n == 2 and scores[2] == 1.0 and scores[1] < 1.0


def test_recent_ngram_follows_a_drifting_log():
    from ejc.eval.baselines import choose_recent_ngram, most_recent

    assert most_recent(list(range(10)), 0.2) == [8, 9] and most_recent(list(range(10)), 0.25) == [7, 8, 9]
    assert most_recent(list(range(3)), 0.1) == [2] and most_recent(list(range(3)), 1.0) == [0, 1, 2]
    # 30 old cases a -> b, then 10 recent ones a -> c; validation (later still) goes a -> c
    fit = [["a", "b"]] * 30 + [["a", "c"]] * 10
    f, n, scores = choose_recent_ngram(fit, [["a", "c"]] * 5, max_n=2)
    assert scores["1.0"] == pytest.approx(0.5)  # a -> b (30 vs 10) wrong, END after c right
    # the last 20 cases: b and c tie 10:10 (and in frequency), b < c wins: wrong again
    assert scores["0.5"] == pytest.approx(0.5)
    assert scores["0.3"] == scores["0.2"] == scores["0.1"] == pytest.approx(1.0)  # 12 recent cases: c 10 vs b 2
    assert (f, n) == (0.3, 2)  # ties go to the larger fraction; a unigram would always say END


def test_continuation_accuracy_by_hand():
    from ejc.eval.metrics import continuation_types, next_event_scores
    from ejc.eval.protocol import PrefixTargets

    names = ["a", "b", END]
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    assert continuation_types(probs, names).tolist() == ["b", "a", "b"]
    t = PrefixTargets(case=np.array([0, 0, 0]), length=np.array([1, 2, 3]), types=np.array(["b", "b", END], dtype=object),
                      gaps=np.array([10.0, 20.0, np.nan]))
    m = next_event_scores(np.array([END, "a", END], dtype=object), np.array([0.0, 0.0, 0.0]), t, continuation_types(probs, names))
    # as predicted: END, a, END -> 1 of 3 incl. END (the last), 0 of 2 excl. END; given it goes on: b, a -> 1 of 2
    assert (m["accuracy"], m["accuracy_excl_end_as_predicted"], m["accuracy_excl_end"]) == pytest.approx((1 / 3, 0.0, 0.5))
    assert m["time_mae_days"] == pytest.approx(15.0 / 86400)


def test_prefix_ceiling_by_hand():
    from ejc.data.sequence import EventSequence
    from ejc.eval.ceiling import cell_ceiling, ceiling_details, prefix_ceiling

    def case(types, gaps_h, cid):
        return EventSequence(embeddings=None, timestamps=1.7e9 + 3600.0 * np.cumsum([0.0, *gaps_h]), event_types=types, id=cid)

    cases = [case(["a", "b"], [1], "c0"), case(["a", "b"], [3], "c1"), case(["a", "c"], [2], "c2"),
             case(["b", "a"], [4], "c3"), case(["a", "b", "c"], [5, 1], "c4")]
    t = prefix_targets(cases)
    # prefixes -> what followed: (a) b b c b = b 3 of 4, gaps 1 3 2 5 h: median 2.5 -> |err| 1.5 0.5 0.5 2.5
    # (a b) END END c = END 2 of 3 (c the only going-on one: 1 of 1, gap 1 h: 0); (a c) END, (b) a 4 h: 0,
    # (b a) END, (a b c) END: accuracy 3 + 2 + 1 + 1 + 1 + 1 = 9 of 11 targets; excl. END 3 + 1 + 1 of 6
    c = prefix_ceiling(cases, t)
    assert len(t) == 11 and c == pytest.approx({"accuracy": 9 / 11, "accuracy_excl_end": 5 / 6, "time_mae_days": (1.5 + 0.5 + 0.5 + 2.5) / 6 / 24, "cells": 6})
    # the last type only: (.. a) b b c b END -> b 3 of 5 (3 of 4 going on); (.. b) END END a c -> END 2 of 4, a or c 1 of 2;
    # (.. c) END END -> 2 of 2
    last = prefix_ceiling(cases, t, last=1)
    assert (last["accuracy"], last["accuracy_excl_end"], last["cells"]) == pytest.approx((7 / 11, 4 / 6, 3))
    assert last["accuracy"] <= c["accuracy"] and last["accuracy_excl_end"] <= c["accuracy_excl_end"]
    # a finer cell (prefix and whether the last gap exceeds 2 h) can only score as well or better
    fine = cell_ceiling(cases, t, lambda types, ts: (tuple(types), len(ts) > 1 and ts[-1] - ts[-2] > 7200))
    assert fine["accuracy"] >= c["accuracy"] and fine["cells"] == 7
    d = ceiling_details(cases, t)
    assert d["prefix_types"] == c and d["last_type"] == last and "optimistic" in d["note"]
    with pytest.raises(ValueError, match="last must be at least 1"):
        prefix_ceiling(cases, t, last=0)


def test_blend_weights_chosen_on_validation_by_hand():
    from ejc.eval.protocol import PrefixTargets
    from ejc.infer.predictor import Blend, choose_blend

    names = ["a", "b", END]
    t = PrefixTargets(case=np.zeros(3, int), length=np.array([1, 2, 3]), types=np.array(["a", "b", END], dtype=object), gaps=np.array([100.0, 100.0, np.nan]))
    # the model is right on the first target only, the n-gram on the last two; a blend of both is right on all three
    p_model = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.5, 0.0, 0.5]])
    p_ngram = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    g_model, g_ngram = np.array([0.0, 200.0, 0.0]), np.array([200.0, np.nan, 0.0])
    b = choose_blend(p_model, g_model, p_model, p_ngram, g_ngram, t, names, weights=(0.0, 0.3, 0.5, 1.0))
    # 0: a, a, a|END tie -> a (argmax first) -> 1/3; 0.3: a (.63 vs .37), b (.42 vs .58), END -> 1; 0.5: b wins first -> 2/3; 1: 2/3
    assert b.holdout["accuracy"] == pytest.approx({"0.0": 1 / 3, "0.3": 1.0, "0.5": 2 / 3, "1.0": 2 / 3})
    assert b.type_weight == 0.3
    # continuation (non-END targets a, b; END never the answer): 0 -> a, a (1/2); 0.3 -> a, b (1)
    assert b.holdout["accuracy_excl_end"]["0.0"] == pytest.approx(0.5) and b.cont_weight == 0.3
    # gaps: w -> |200 w - 100| on the first target, the model's 200 where the n-gram has none -> 100 on the second
    # (the second target's error is 100 whatever the weight): the mean is (|200 w - 100| + 100) / 2, least at w = 0.5
    assert b.holdout["time_mae_days"]["0.5"] == pytest.approx(50 / 86400) and b.holdout["time_mae_days"]["1.0"] == pytest.approx(100 / 86400) and b.gap_weight == 0.5
    assert np.allclose(Blend().probs(p_model, p_ngram, 0.0), p_model)
    assert Blend(0.5, 1.0).gaps(g_model, g_ngram).tolist() == [200.0, 200.0, 0.0]


def test_anomaly_baselines_by_hand():
    train = [["a", "b", "c"], ["a", "b", "c", "c"]]
    test = [["a", "b", "x"], ["a", "b"], ["a", "b", "c"]]
    assert UnseenEventDetector().fit(train).score(test).tolist() == pytest.approx([1 / 3, 0, 0])
    # count vectors over (a, b, c, unseen): [1,1,0,1] vs nearest [1,1,1,0] -> sqrt 2; [1,1,0,0] -> 1
    assert CountVectorNN().fit(train).score(test).tolist() == pytest.approx([np.sqrt(2), 1.0, 0.0])
    # 3-grams with <bos> <bos> ... <end>: "a b" ends early -> (a, b, <end>) unseen: 1 of 3
    assert UnseenNgramFraction(3).fit(train).score(test).tolist() == pytest.approx([2 / 4, 1 / 3, 0.0])


@pytest.mark.skipif(not (DATA / "process" / "helpdesk_tax.csv").is_file(), reason="../shared/data is not available")
def test_tax_split_sizes_on_helpdesk():
    log = load_log(DATA / "process" / "helpdesk_tax.csv")
    assert (log.events, len(log.sequences), log.quarantined) == (13710, 3804, 0)
    split = chronological_split(log.sequences)
    assert split.sizes() == {"fit_cases": 2029, "val_cases": 507, "test_cases": 1268}
    starts = [s.timestamps[0] for s in split.train + split.test]
    assert starts == sorted(starts)
    t = prefix_targets(split.test)
    assert len(t) == 4143 and int((~t.is_end).sum()) == 2875


# ----------------------------------------------------------------------------------------------
# commands on a tiny log


def tiny_log(path: Path) -> Path:
    """24 cases, one a day: ``a b c`` (b 1 h after a, c 2 h after b), every 4th ``a b d`` (d 5 h after b)."""
    rows = ["case,activity,time"]
    for i in range(24):
        t0 = 1_600_000_000 + i * 86400
        last = ("d", 5 * 3600) if i % 4 == 3 else ("c", 2 * 3600)
        for typ, t in (("a", t0), ("b", t0 + 3600), (last[0], t0 + 3600 + last[1])):
            rows.append(f"c{i},{typ},{t}")
    path.write_text("\n".join(rows) + "\n")
    return path


def run_cli(argv: list[str], capsys, stderr: list[str] | None = None) -> dict:
    """Run ``ejc`` in-process; its last stdout line parsed. ``stderr``: gets the progress lines."""
    assert main(argv) == 0
    captured = capsys.readouterr()
    if stderr is not None:
        stderr.extend(captured.err.strip().splitlines())
    return json.loads(captured.out.strip().splitlines()[-1])


def test_next_event_command_baselines_by_hand_and_repeatable(tmp_path, capsys):
    src = tiny_log(tmp_path / "log.csv")
    argv = ["evaluate", "next-event", str(src), *FAST, "--out", str(tmp_path / "r.json"), "--plot", str(tmp_path / "plots")]
    err: list[str] = []
    res = run_cli(argv, capsys, err)
    assert set(res) >= {"task", "dataset", "metrics", "train_seconds", "machine"}
    assert res["task"] == "next_event" and res["dataset"] == "log.csv"
    # progress on stderr: the recipe's pretraining on its own fit cases (13 of the 16 training
    # cases: it holds out the latest 3), every fine-tuning epoch of every half-life, the members
    assert any(line.startswith("ejc evaluate: JEPA pretraining (seed 0, 13 sequences): step 2/2, loss ") for line in err)
    epochs = [line for line in err if "fine-tune (half-life" in line]
    assert epochs and all(" holdout accuracy " in line and " excl. END " in line for line in epochs)
    assert any(line.startswith("ejc evaluate: fine-tune (half-life None, seed 0) epoch 1/2: ") for line in epochs)
    assert any("ensemble member 2/2 (seed 1000)" in line for line in err)
    # then the table for people (the record is the only stdout line): every method and the ceilings
    table = err[err.index("| method | accuracy | accuracy_excl_end | time_mae_days | accuracy_excl_end_as_predicted |") - 2:]
    assert table[0].startswith("**log.csv** (next_event; ejc training ")
    # the figures asserted above, to 4 places: 22/24, 14/16, 2 x 3 h / 16 targets; 0, 0, (8 + 6 + 2 x 7) x 30 min / 16
    assert "| ngram | 0.9167 | 0.8750 | 0.0156 | 0.8750 |" in table and "| last_event | 0.0000 | 0.0000 | 0.0365 | 0.0000 |" in table
    assert "| ceiling: prefix types (in-sample bound) | 0.9167 | 0.8750 | 0.0156 | n/a |" in table
    rows = [line.split(" |")[0] for line in table[4:]]
    assert rows == ["| ejc", "| ejc_nets", "| ejc_single", "| gbt", "| ngram", "| ngram_recent", "| last_event", "| ceiling: prefix types (in-sample bound)", "| ceiling: last type (in-sample bound)"]
    assert json.loads((tmp_path / "r.json").read_text()) == res
    d = res["details"]
    assert d["split"] == {"fit_cases": 13, "val_cases": 3, "test_cases": 8, "test_targets": 24, "test_targets_excl_end": 16}
    assert d["ngram_n"] == 2
    # n-gram: b (8/8), c after b (6 of 8 test cases), END (8/8); d cases' gap is off by 5 h - 2 h
    assert res["metrics"]["ngram"] == pytest.approx({"accuracy": 22 / 24, "accuracy_excl_end": 14 / 16, "accuracy_excl_end_as_predicted": 14 / 16, "time_mae_days": 2 * 3 * 3600 / 16 / 86400}, abs=1e-6)
    r = res["metrics"]["ngram_recent"]
    assert set(r) == set(res["metrics"]["ngram"]) and 0 <= r["accuracy"] <= 1
    assert d["ngram_recent"]["fraction"] in (1.0, 0.5, 0.3, 0.2, 0.1)
    # last event repeats: never right; gap = median of 16 x 1 h, 12 x 2 h, 4 x 5 h = 1.5 h
    assert res["metrics"]["last_event"] == pytest.approx({"accuracy": 0.0, "accuracy_excl_end": 0.0, "accuracy_excl_end_as_predicted": 0.0, "time_mae_days": (8 * 1800 + 6 * 1800 + 2 * 12600) / 16 / 86400}, abs=1e-6)
    # the ceiling: every test case is a b c or a b d, so only the d cases' prefix "a b" misses (2 of 16 excl. END)
    assert d["ceiling"]["prefix_types"] == pytest.approx({"accuracy": 22 / 24, "accuracy_excl_end": 14 / 16, "time_mae_days": 2 * 3 * 3600 / 16 / 86400, "cells": 4}, abs=1e-6)
    ejc = res["metrics"]["ejc"]
    assert set(ejc) == {"accuracy", "accuracy_excl_end", "accuracy_excl_end_as_predicted", "time_mae_days"}
    assert ejc["accuracy_excl_end"] >= ejc["accuracy_excl_end_as_predicted"]  # same targets, END no longer a wrong answer
    assert 0 <= ejc["accuracy"] <= 1 and ejc["time_mae_days"] >= 0
    assert (tmp_path / "plots" / "next_event_confusion.png").stat().st_size > 1000
    # the ejc row is the saved model: scoring the directory again through the facade gives the same figures
    from ejc.eval.next_event import score_test_prefixes

    model_dir = Path(d["ejc"]["model_dir"])
    assert model_dir == tmp_path / "r.models" / "model" and (model_dir / "card.json").is_file()
    split = chronological_split(load_log(src).sequences)
    rescored = score_test_prefixes(model_dir, split.test)
    assert {k: rescored[k] for k in ejc} == pytest.approx(ejc, abs=1e-6)  # the record rounds to 6 places
    assert {m["seed"] for m in d["ejc"]["card"]["members"]} == {0, 1000}
    # a second run refuses to overwrite the first one's models, and is identical elsewhere
    assert main(argv) == 2 and "not empty" in capsys.readouterr().err
    again = run_cli([*argv, "--work", str(tmp_path / "again")], capsys)
    assert again["metrics"] == res["metrics"]


def test_retrieval_command_ranks_by_hand(tmp_path, capsys):
    src = tiny_log(tmp_path / "log.csv")
    res = run_cli(["evaluate", "retrieval", str(src), *FAST, "--out", str(tmp_path / "r.json")], capsys)
    assert res["task"] == "retrieval" and res["details"]["candidates"] == 5  # a b c d END
    m = res["metrics"]
    assert m["ngram"]["recall_at_10"] == 1.0
    # n-gram ranks: b, c, END first; d second after b -> (8 + 6 + 2 / 2 + 8) / 24
    assert m["ngram"]["mrr"] == pytest.approx(23 / 24, abs=1e-6)
    # popularity (next-event counts b 16, END 16, c 12, d 4): ties rank pessimistically
    assert m["popularity"]["mrr"] == pytest.approx((8 / 2 + 6 / 3 + 2 / 4 + 8 / 2) / 24, abs=1e-6)
    assert 0 < m["ejc"]["mrr"] <= 1 and set(m) == {"ejc", "ngram", "ngram_recent", "popularity"}
    rec = res["details"]["ngram_recent"]
    if rec["fraction"] == 1.0 and rec["n"] == res["details"]["ngram_n"]:  # the same model on all training cases
        assert m["ngram_recent"] == m["ngram"]


FAST_ANOMALY = ["--config", "tiny", "-o", "train.steps=2", "finetune.max_epochs=2", "finetune.patience=1", "finetune.half_lives=[null]", "finetune.ensemble=1"]


def test_anomaly_command_separate_files_by_hand(tmp_path, capsys):
    (tmp_path / "train").write_text("".join(f"n{i},a b c{' c' * (i % 2)}\n" for i in range(10)))
    (tmp_path / "normal").write_text("".join(f"t{i},a b c\n" for i in range(4)))
    (tmp_path / "abnormal").write_text("x0,a b x\nx1,a b c\nx2,y\n")
    res = run_cli(
        ["evaluate", "anomaly", "--train", str(tmp_path / "train"), "--test-normal", str(tmp_path / "normal"), "--test-abnormal", str(tmp_path / "abnormal"),
         *FAST_ANOMALY, "--out", str(tmp_path / "a.json"), "--plot", str(tmp_path / "plots")],
        capsys,
    )
    assert res["task"] == "anomaly"
    d = res["details"]
    # the recipe holds out the last 2 of the 10 (untimed: file order); the baselines use the same split
    assert (d["train_normal"], d["fit"], d["holdout"]) == (10, 8, 2)
    ue = res["metrics"]["unseen_event"]
    # positives score 1/3, 0, 1; negatives 0 x 4 -> (4 + 4 * 0.5 + 4) / 12; threshold (holdout scores 0, 0) 0 flags 2 of 3
    assert ue["auroc"] == pytest.approx(10 / 12) and ue["threshold"] == 0.0
    assert (ue["precision"], ue["recall"], ue["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))
    assert set(res["metrics"]) == {"ejc", "ejc_model", "unseen_event", "count_vector_nn", "unseen_ngram", "counts_3gram_fisher"}
    for m in res["metrics"].values():
        assert set(m) == {"auroc", "precision", "recall", "f1", "best_f1", "threshold"}
    # the ejc row's threshold is the shipped model's own
    from ejc.infer.event_jepa import EventJEPA

    model = EventJEPA.from_pretrained(d["model_dir"])
    assert res["metrics"]["ejc"]["threshold"] == pytest.approx(model.detector.threshold, abs=1e-6) == pytest.approx(d["card"]["detector"]["threshold"], abs=1e-6)
    seq = load_log(tmp_path / "abnormal", "sequences").sequences[2]
    r = model.anomaly_scores(seq)
    assert r.sequence_threshold == model.detector.threshold and r.sequence_score == pytest.approx(float(model.sequence_anomaly_scores([seq])[0]))
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"anomaly_roc.png", "anomaly_scores.png"}


def test_anomaly_command_label_column_trains_on_normal_rows_only(tmp_path, capsys):
    rows = ["Sequence,label"] + [f"a b c{' c' * (i % 2)},0" for i in range(10)] + ["z z z,1"] * 3
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("Sequence,label\na b c,0\na b c c,0\nz z,1\na q,1\n")
    res = run_cli(["evaluate", "anomaly", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"), "--label-col", "label",
                   *FAST_ANOMALY, "--out", str(tmp_path / "a.json")], capsys)
    d = res["details"]
    assert d["train_normal"] == 10 and d["test_anomalous"] == 2 and d["train_anomalous"] == 3
    # z was only in anomalous training rows: unseen for detectors trained on normal rows
    ue = res["metrics"]["unseen_event"]
    assert ue["auroc"] == 1.0 and ue["threshold"] == 0.0
    # z z (all unseen) and a q (half unseen) are above the holdout's 0; the normals are not
    assert (ue["precision"], ue["recall"], ue["f1"]) == pytest.approx((1.0, 1.0, 1.0))
    # the training-anomaly F1 is the saved model's threshold applied to its holdout vs those anomalies
    from ejc.eval.metrics import precision_recall_f1
    from ejc.infer.detector import fisher_combine
    from ejc.infer.event_jepa import EventJEPA

    model = EventJEPA.from_pretrained(d["model_dir"])
    from ejc.data.sequence import EventSequence

    anomalous = [EventSequence(embeddings=None, event_types=["z", "z", "z"], id=f"a{i}") for i in range(3)]  # the 3 labelled rows
    hold, a = fisher_combine(model.detector.calibration), model.sequence_anomaly_scores(anomalous)
    want = precision_recall_f1(np.r_[hold, a] > model.detector.threshold, np.r_[np.zeros(len(hold)), np.ones(len(a))])["f1"]
    assert d["train_anomalous_f1"]["ejc"] == pytest.approx(want, abs=1e-6)


def test_probe_command(tmp_path, capsys):
    rows = ["Sequence,label"] + ["a b a b a b,x"] * 6 + ["c c d c c d,y"] * 6
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    res = run_cli(["evaluate", "probe", str(tmp_path / "p.csv"), "--label-col", "label", *FAST[:4], "--out", str(tmp_path / "p.json")], capsys)
    assert res["task"] == "probe" and res["details"]["classes"] == {"x": 6, "y": 6}
    assert res["metrics"]["type_counts"]["accuracy"] == 1.0
    assert set(res["metrics"]) == {"ejc", "random_encoder", "type_counts"}


def test_bad_input_gives_clear_errors(tmp_path, capsys):
    src = tiny_log(tmp_path / "log.csv")
    assert main(["evaluate", "anomaly", "--train", str(src), "--out", str(tmp_path / "x.json")]) == 2
    assert "--test" in capsys.readouterr().err
    assert main(["evaluate", "next-event", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["evaluate", "probe", str(src), "--out", str(tmp_path / "x.json")]) == 2
    assert "--label-col" in capsys.readouterr().err


@pytest.mark.integration
def test_job_runs_the_task_on_ray_and_writes_out(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    src = tiny_log(tmp_path / "log.csv")
    out = tmp_path / "job.json"
    cmd = [sys.executable, str(root / "jobs" / "evaluate.py"), "--num-cpus", "2", "next-event", str(src), *FAST, "--out", str(out)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_DISABLE_USAGE_STATS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == res
    assert res["task"] == "next_event" and res["metrics"]["ngram"]["accuracy"] == pytest.approx(22 / 24, abs=1e-6)
    assert "ejc evaluate: JEPA pretraining (seed 0, 13 sequences): step 2/2" in proc.stderr  # the task's progress reaches the job log
    assert "| ngram | 0.9167 | 0.8750 | 0.0156 | 0.8750 |" in proc.stderr.splitlines()  # and the driver prints the table


# ----------------------------------------------------------------------------------------------
# next-event selection: recency weights, criteria, options


def _timed_case(cid: str, t0: float, types: list[str]):
    from ejc.data.sequence import EventSequence

    return EventSequence(embeddings=None, timestamps=np.array([t0 + 3600.0 * i for i in range(len(types))]), event_types=types, id=cid)


def test_recency_weights_by_hand():
    from ejc.train.finetune import recency_weights

    cases = [_timed_case(f"c{i}", 1_600_000_000 + 86400.0 * d, ["a", "b"]) for i, d in enumerate([0, 50, 100])]
    # ages 1, 0.5, 0 of the start-time span
    assert recency_weights(cases, None).tolist() == [1.0, 1.0, 1.0]
    assert recency_weights(cases, 0.5).tolist() == pytest.approx([0.25, 0.5, 1.0])
    assert recency_weights(cases, 0.02).tolist() == pytest.approx([2.0**-50, 2.0**-25, 1.0])
    with pytest.raises(Exception, match="positive"):
        recency_weights(cases, 0.0)


def test_selection_value_orders_records():
    from ejc.train.finetune import selection_value

    a = {"val_loss": 1.9, "val_accuracy": 0.80, "val_time_mae_days": 3.0}
    b = {"val_loss": 2.0, "val_accuracy": 0.81, "val_time_mae_days": 3.1}
    c = {"val_loss": 1.8, "val_accuracy": 0.81, "val_time_mae_days": 3.1}
    assert selection_value(a, "loss") < selection_value(b, "loss")
    assert selection_value(b, "accuracy") < selection_value(a, "accuracy")  # one more hit beats any loss
    assert selection_value(c, "accuracy") < selection_value(b, "accuracy")  # equal accuracy: lower loss
    assert selection_value(a, "mae") < selection_value(c, "mae") < selection_value(b, "mae")
    assert selection_value(a, "accuracy") == pytest.approx(-0.80, abs=1e-6)
    with pytest.raises(Exception, match="unknown selection"):
        selection_value(a, "f1")


def test_recipe_selection_members_and_card(tmp_path):
    """The recipe's choices are made on its holdout, recorded in the card, and shipped as chosen."""
    from ejc.config import load_config
    from ejc.infer.event_jepa import EventJEPA
    from ejc.train.recipe import fit_recipe, holdout_split, save_model

    cases = chronological_split(load_log(tiny_log(tmp_path / "log.csv")).sequences).train
    cfg = load_config("tiny", ["train.steps=2", "finetune.max_epochs=4", "finetune.patience=4", "finetune.half_lives=[null, 0.5]", "finetune.ensemble=2", "train.device=cpu"])
    fit, val = holdout_split(cases, 0.2)
    assert [s.id for s in fit + val] == [s.id for s in cases] and len(val) == 3  # the latest 3 by start time
    res = fit_recipe(cfg, cases)
    ch = res.card["choices"]
    assert set(ch["by_half_life"]) == {"None", "0.5"} and all(set(v) == {"accuracy", "mae", "continuation"} for v in ch["by_half_life"].values())
    for role, crit in (("type", "accuracy"), ("gap", "mae"), ("cont", "continuation")):
        # each role's net: the (half-life, epoch) with the best holdout value over the grid
        best = min(v[crit]["value"] for v in ch["by_half_life"].values())
        assert ch["by_half_life"][str(ch[f"{role}_half_life"])][crit] == {"epoch": ch[f"{role}_epochs"], "value": best}
    pred = res.predictor
    # per seed one net per distinct (half-life, epochs); every role has one member per seed
    assert all(len(pred.roles[r]) == 2 for r in ("type", "gap", "cont"))
    assert {m["seed"] for m in res.card["members"]} == {0, 1000} and all(m["trained_on"] == "all" for m in res.card["members"])
    for role in ("type", "gap", "cont"):
        for i in pred.roles[role]:
            m = res.card["members"][i]
            assert (m["half_life"], m["epochs"]) == (ch[f"{role}_half_life"], max(1, ch[f"{role}_epochs"])) and role in m["roles"]
    assert set(res.card["holdout"]["shipped"]) == {"accuracy", "accuracy_excl_end", "time_mae_days", "accuracy_excl_end_as_predicted"}
    out = save_model(res, tmp_path / "model", cfg, cases, command=["test"])
    card = json.loads((out / "card.json").read_text())
    assert card["command"] == ["test"] and card["calibration"]["sequences"] == 16 and card["config"]["finetune"]["ensemble"] == 2
    with pytest.raises(EjcError, match="not empty"):
        save_model(res, out, cfg)
    # what was shipped is what loads
    m = EventJEPA.from_pretrained(out)
    assert m.predictor is not None and m.predictor.roles == pred.roles and m.predictor.blend.type_weight == pred.blend.type_weight
    a, b = pred.predict(cases), m.predictor.predict(cases)
    assert np.array_equal(a.probs, b.probs) and np.array_equal(a.gaps, b.gaps) and np.array_equal(a.cont_probs, b.cont_probs)


def test_a_type_only_in_the_holdout_is_predicted_and_scored(tmp_path):
    """The members are refitted on all training cases; a type only the latest cases have is in the
    shipped vocabulary and can be predicted (once crashed the blend and mislabelled types)."""
    from ejc.config import load_config
    from ejc.eval.next_event import run_next_event
    from ejc.eval.protocol import Split

    day = 86400.0
    fit = [_timed_case(f"f{i}", 1_600_000_000 + day * i, ["a", "a", "b"]) for i in range(16)]
    val = [_timed_case(f"v{i}", 1_600_000_000 + day * (16 + i), ["b"] * 8 + ["z"]) for i in range(4)]
    test = [_timed_case(f"t{i}", 1_600_000_000 + day * (20 + i), ["a", "a", "b"] if i % 2 else ["b", "b", "b"]) for i in range(6)]
    cfg = load_config("tiny", ["train.steps=2", "train.max_len=16", "train.device=cpu", "finetune.max_epochs=2", "finetune.patience=1", "finetune.half_lives=[null]", "finetune.ensemble=1"])
    run = run_next_event(Split(fit, val, test), cfg, tmp_path)
    # all training cases: b 48, a 32, <end> 20, z 4
    assert run.names == ["b", "a", END, "z"]
    assert run.probs.shape == (len(run.targets), 4) and np.allclose(run.probs.sum(1), 1.0)
    assert run.predictions["ejc"].tolist() == [run.names[i] for i in run.probs.argmax(1)]


def test_evaluation_run_is_tracked_and_its_model_registered(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from serve.loading import load_model

    (tmp_path / "train").write_text("".join(f"n{i},a b c{' c' * (i % 2)}\n" for i in range(10)))
    (tmp_path / "normal").write_text("".join(f"t{i},a b c\n" for i in range(4)))
    (tmp_path / "abnormal").write_text("x0,a b x\nx2,y\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    err: list[str] = []
    res = run_cli(["evaluate", "anomaly", "--train", str(tmp_path / "train"), "--test-normal", str(tmp_path / "normal"), "--test-abnormal", str(tmp_path / "abnormal"),
                   *FAST_ANOMALY, "--out", str(tmp_path / "a.json"), "--tracking-uri", uri, "--register", "ejc-eval"], capsys, err)
    run_id = next(line for line in err if "logged to MLflow run" in line).split("run ")[1].split(" ")[0]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["task"] == "anomaly"
    for method, vals in res["metrics"].items():
        assert run.data.metrics[f"{method}.auroc"] == pytest.approx(vals["auroc"])
    assert {a.path for a in client.list_artifacts(run_id)} >= {"a.json", "card.json", "model"}
    model, info = load_model("models:/ejc-eval/1", uri)  # registered only because --register asked
    assert info.version == "ejc-eval/1" and model.detector is not None and model.detector.threshold == pytest.approx(res["metrics"]["ejc"]["threshold"], abs=1e-6)
