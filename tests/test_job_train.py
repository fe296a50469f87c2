"""`jobs/train.py`: the `ejc train` recipe as a Ray task on a local Ray, the same MODEL/ as the
CLI, logged to a SQLite MLflow store and registered; the registered version loads with the
predictor and detector the Serve app uses and predicts exactly what the directory does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--config", "tiny", "train.steps=4", "train.min_events=1", "finetune.max_epochs=2", "finetune.patience=1", "finetune.half_lives=[null]", "finetune.ensemble=2"]


def test_job_trains_registers_and_the_registry_copy_predicts_the_same(tmp_path):
    from ejc.cli import main
    from ejc.eval.protocol import load_log
    from ejc.infer.event_jepa import EventJEPA
    from serve.loading import load_model

    rows = ["case,activity,time"] + [f"c{i},{t},{1_600_000_000 + i * 86400 + k * 3600}" for i in range(30) for k, t in enumerate(["a", "b", "c" if i % 3 else "d"])]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    assert main(["ingest", str(tmp_path / "log.csv"), "--out", str(tmp_path / "events")]) == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, str(ROOT / "jobs" / "train.py"), "--num-cpus", "2", "--events", str(tmp_path / "events"), "--out", str(tmp_path / "model"),
           "--tracking-uri", uri, "--register", "ejc-job", *FAST]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_DISABLE_USAGE_STATS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["model"] == str(tmp_path / "model") and summary["mlflow"]["model"] == {"name": "ejc-job", "version": "1"}
    assert "ejc train: trained in " in proc.stderr  # the task's progress reaches the job log
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    assert card["command"][:3] == ["ejc", "train", "--events"]
    local = EventJEPA.from_pretrained(tmp_path / "model")
    served, info = load_model("models:/ejc-job/1", uri)
    assert served.predictor is not None and served.detector is not None and info.version == "ejc-job/1"
    qs = [s[:k] for s in load_log(tmp_path / "log.csv").sequences[-5:] for k in (1, 2, 3)]
    a, b = local.predict_next_batch(qs), served.predict_next_batch(qs)
    assert [p[0].event_type for p in a] == [p[0].event_type for p in b] and [p[0].gap for p in a] == [p[0].gap for p in b]
    assert np.allclose(local.sequence_anomaly_scores(qs), served.sequence_anomaly_scores(qs))
    # bad arguments fail on the driver, before any cluster work
    bad = subprocess.run([sys.executable, str(ROOT / "jobs" / "train.py"), "--out", str(tmp_path / "m2")], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "--events" in bad.stderr
