"""jobs/pretrain.py on a real local Ray (2 DDP workers) with a real SQLite MLflow store."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import random_table

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


def test_two_worker_job_checkpoints_tracks_registers_and_loads(tmp_path):
    from mlflow.tracking import MlflowClient

    from ejc.infer.event_jepa import EventJEPA

    events = tmp_path / "events.parquet"
    pq.write_table(random_table(num=24, seed=9, min_len=20, max_len=60), events)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, str(ROOT / "jobs" / "pretrain.py"), "--events", str(events), "--config", "tiny", "train.steps=4", "train.checkpoint_every=2",
           "--num-workers", "2", "--num-cpus", "2", "--out", str(tmp_path / "ray"), "--tracking-uri", uri, "--experiment", "job", "--register", "job-model"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_DISABLE_USAGE_STATS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["steps"] == 4 and res["workers"] == 2
    assert res["mlflow_model"] == {"name": "job-model", "version": "1"}
    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(res["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["ray.num_workers"] == "2" and run.data.params["model.d_model"] == "32"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4]
    assert "loss_curve.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    model = EventJEPA.from_pretrained(res["model_dir"])
    seq = next(iter(__import__("ejc").sequences_from_table(pq.read_table(events))))
    assert model.process(seq).pooled.shape == (32,)
