"""``ejc evaluate log-anomaly`` on BGL_2k: the ejc row is what `ejc logs process` wrote, and every
figure can be recomputed from the files the run leaves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ejc.cli import main
from ejc.eval.cli import evaluate_from_argv
from ejc.eval.log_anomaly import binary_scores, labels_from_truth
from ejc.errors import EjcError

BGL = Path(__file__).resolve().parents[2] / "shared" / "data" / "logs" / "loghub_2k"


@pytest.mark.skipif(not (BGL / "BGL_2k.log").is_file(), reason="../shared/data is absent")
def test_evaluate_log_anomaly_scores_the_shipped_commands(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["evaluate", "log-anomaly", "--input", str(BGL / "BGL_2k.log"), "--truth", str(BGL / "BGL_2k.log_structured.csv"), "--out", str(out), "--no-event-model"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res == json.loads(out.read_text())
    assert res["task"] == "log-anomaly" and set(res["metrics"]) == {"ejc", "drain3_unseen", "rare_template", "severity_keyword", "deeplog_topg"}
    work = tmp_path / "r.work"
    y = labels_from_truth(BGL / "BGL_2k.log_structured.csv", 2000)[1000:]
    assert y.sum() == 47  # the data README: 47 alert lines in the last 1,000
    with open(work / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    again = binary_scores(y, np.array([r["is_anomaly"] == "1" for r in rows]), np.array([float(r["score"]) for r in rows]))
    ejc = res["metrics"]["ejc"]
    for k in ("precision", "recall", "f1", "auroc"):
        assert ejc[k] == pytest.approx(again[k], abs=1e-6)
    assert ejc["alerts"] == len(json.loads((work / "anomalies.json").read_text()))
    # the figures RESULTS records for this split (deterministic: counts, no randomness)
    assert ejc["f1"] == pytest.approx(0.4301, abs=1e-3) and ejc["auroc"] == pytest.approx(0.9738, abs=1e-3)
    kw = res["metrics"]["severity_keyword"]
    assert kw["recall"] == 1.0 and kw["f1"] == pytest.approx(0.5165, abs=1e-3)
    assert res["details"]["train"]["lines"] == 1000 and res["details"]["process"]["lines"] == 1000
    # jobs/evaluate.py's entry point runs the same task and returns the same figures
    rerun = evaluate_from_argv(["log-anomaly", "--input", str(BGL / "BGL_2k.log"), "--truth", str(BGL / "BGL_2k.log_structured.csv"), "--out", str(tmp_path / "r2.json"), "--no-event-model"])
    quality = ("precision", "recall", "f1", "auroc", "alerts")
    assert {k: rerun["metrics"]["ejc"][k] for k in quality} == pytest.approx({k: ejc[k] for k in quality})
    assert rerun["metrics"]["severity_keyword"]["f1"] == pytest.approx(kw["f1"])


def test_labels_must_fit_the_log(tmp_path):
    t = tmp_path / "t.csv"
    t.write_text("LineId,Label\n1,-\n2,APPREAD\n")
    assert labels_from_truth(t, 2).tolist() == [False, True]
    with pytest.raises(EjcError, match="2 rows but the log has 3 lines"):
        labels_from_truth(t, 3)
    t.write_text("LineId,Content\n1,x\n")
    with pytest.raises(EjcError, match="Label"):
        labels_from_truth(t, 1)
