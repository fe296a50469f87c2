"""The cluster path end to end: `ray start --head` with token auth on 127.0.0.1, a real
`mlflow server` (SQLite backend), `ray job submit --working-dir . -- python jobs/pretrain.py`
with 2 workers; the run, its metrics and the registered model are found in the server.

Both servers run in their own process groups with their own temp dirs and ports and are
stopped at the end (``ray start --block`` tears its processes down on SIGTERM; no `ray stop`,
which would kill every Ray process of the user on the machine).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import random_table

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@pytest.fixture(scope="module")
def servers():
    home = Path(tempfile.mkdtemp(prefix="ejchome"))
    ray_tmp = tempfile.mkdtemp(prefix="ejcray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "RAY_AUTH_MODE": "token",
        "RAY_DISABLE_USAGE_STATS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    token = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, text=True, timeout=60)
    assert token.returncode == 0, token.stderr
    assert (home / ".ray" / "auth_token").is_file()

    ml_port, dash_port = _free_port(), _free_port()
    ml_dir = home / "mlflow"
    ml_dir.mkdir()
    ml_log = open(home / "mlflow.log", "w")
    mlflow = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(ml_port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{ml_dir / 'mlflow.db'}", "--artifacts-destination", str(ml_dir / "artifacts")],
        env=env, stdout=ml_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    ray_log = open(home / "ray.log", "w")
    ports = {"--port": _free_port(), "--dashboard-port": dash_port, "--ray-client-server-port": _free_port(),
             "--dashboard-agent-listen-port": _free_port(), "--metrics-export-port": _free_port()}
    ray = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
         "--num-cpus", "2", "--temp-dir", ray_tmp, *[str(x) for kv in ports.items() for x in kv]],
        env=env, stdout=ray_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait(lambda: urllib.request.urlopen(f"http://127.0.0.1:{ml_port}/health", timeout=2).status == 200, 120, "mlflow server", mlflow)
        # the job API answers only once the dashboard is up; without a token it must refuse
        _wait(lambda: subprocess.run([str(BIN / "ray"), "job", "list", "--address", f"http://127.0.0.1:{dash_port}"], env=env,
                                     capture_output=True, timeout=60).returncode == 0, 180, "ray dashboard / job server", ray)
        yield {"env": env, "home": home, "mlflow": f"http://127.0.0.1:{ml_port}", "ray": f"http://127.0.0.1:{dash_port}"}
    finally:
        _stop(ray)
        _stop(mlflow)
        ml_log.close()
        ray_log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def test_job_submission_without_the_token_is_refused(servers):
    env = {**servers["env"], "HOME": tempfile.mkdtemp(prefix="ejcnotoken")}  # no ~/.ray/auth_token here
    proc = subprocess.run([str(BIN / "ray"), "job", "list", "--address", servers["ray"]], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "token" in (proc.stdout + proc.stderr).lower()


def test_ray_job_submit_trains_tracks_and_registers(servers, tmp_path):
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    from ejc.infer.event_jepa import EventJEPA

    events = tmp_path / "events.parquet"
    pq.write_table(random_table(num=24, seed=9, min_len=20, max_len=60), events)
    out = tmp_path / "ray"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", servers["ray"], "--working-dir", str(ROOT), "--",
           "python", "jobs/pretrain.py", "--events", str(events), "--config", "tiny", "train.steps=4", "train.checkpoint_every=2",
           "--num-workers", "2", "--out", str(out), "--tracking-uri", servers["mlflow"], "--experiment", "submitted", "--register", "submitted-model"]
    proc = subprocess.run(cmd, env=servers["env"], capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-3000:])
    summary = next(json.loads(line) for line in reversed(proc.stdout.splitlines()) if line.startswith("{"))
    assert summary["steps"] == 4 and summary["workers"] == 2
    assert summary["mlflow_model"] == {"name": "submitted-model", "version": "1"}

    client = MlflowClient(servers["mlflow"], registry_uri=servers["mlflow"])
    exp = client.get_experiment_by_name("submitted")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].info.run_id == summary["mlflow_run_id"]
    assert runs[0].data.params["ray.num_workers"] == "2"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == [1, 2, 3, 4]
    assert "loss_curve.png" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    mv = client.get_model_version("submitted-model", "1")
    assert mv.run_id == summary["mlflow_run_id"] and "event_schema" in mv.tags
    source = client.get_model_version_download_uri("submitted-model", "1")
    local = download_artifacts(artifact_uri=source, dst_path=str(tmp_path / "dl"), tracking_uri=servers["mlflow"])
    model = EventJEPA.from_pretrained(local)
    seq = next(iter(__import__("ejc").sequences_from_table(pq.read_table(events))))
    assert model.process(seq).pooled.shape == (32,)
