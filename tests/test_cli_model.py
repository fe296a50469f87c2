"""`ejc pretrain` and `ejc quickstart` through the real command line."""

import json
import subprocess
import sys

from ejc.cli import main

from helpers import random_table


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_pretrain_cli_trains_resumes_and_calibrates(tmp_path, capsys):
    import pyarrow.parquet as pq

    events = tmp_path / "events.parquet"
    pq.write_table(random_table(num=12, seed=2), events)
    out = tmp_path / "run"
    args = ["pretrain", "--events", str(events), "--config", "tiny", "train.steps=4", "train.checkpoint_every=2", "--out", str(out), "--no-track"]
    assert main(args + ["--debug-steps", "2"]) == 0
    first = _last_json(capsys.readouterr().out)
    assert first["steps"] == 2 and "calibration" not in first  # not finished: no calibration yet
    assert main(args) == 0
    done = _last_json(capsys.readouterr().out)
    assert done["steps"] == 4
    assert done["calibration"]["event_threshold"] > done["calibration"]["sequence_threshold"]
    assert (out / "calibration.json").is_file() and (out / "loss_curve.png").is_file()


def test_pretrain_cli_reports_every_config_problem_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ejc.cli", "pretrain", "--events", str(tmp_path), "--config", "tiny", "model.d_modl=3", "objective.mask_ratio=2", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("ejc: error: invalid configuration (2 problem(s))") and "d_modl" in line and "mask_ratio" in line


def test_quickstart_trains_the_deployable_model_end_to_end(tmp_path, capsys):
    from ejc.infer.event_jepa import EventJEPA

    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--entities", "24", "--config", "tiny", "train.steps=6", "finetune.max_epochs=2", "finetune.patience=1", "--no-track"]) == 0
    res = _last_json(capsys.readouterr().out)
    assert res["ingest"]["read"] == res["synth"]["events"] == res["ingest"]["accepted"]
    # the same recipe as `ejc train`: MODEL/ with the shipped predictor, detector and card
    card = json.loads((out / "model" / "card.json").read_text())
    assert res["model"] == str(out / "model") and res["train"]["pretrain_steps"] == 6 == card["config"]["train"]["steps"]
    assert card["config"]["finetune"]["half_lives"] == [None] and card["config"]["finetune"]["ensemble"] == 1 and card["config"]["finetune"]["max_epochs"] == 2
    assert res["train"]["holdout"] == card["holdout"]["shipped"] and 0.0 <= res["train"]["holdout"]["accuracy"] <= 1.0
    model = EventJEPA.from_pretrained(out / "model")
    assert model.predictor is not None and model.detector is not None
    assert res["anomaly_thresholds"]["detector"] == model.detector.threshold
    probe = res["probe_accuracy_entity_class"]
    assert set(probe) == {"ejc_jepa", "random_encoder", "mean_raw_embedding"}
    assert all(0.0 <= v <= 1.0 for v in probe.values())
    assert res["chance"] == 0.25
    assert res["mlflow"] is None


def test_pretrain_cli_tracks_and_registers(tmp_path, capsys):
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    events = tmp_path / "events.parquet"
    pq.write_table(random_table(num=8, seed=5), events)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    args = ["pretrain", "--events", str(events), "--config", "tiny", "train.steps=3", "--out", str(tmp_path / "run"), "--tracking-uri", uri, "--experiment", "cli", "--register", "cli-model"]
    assert main(args) == 0
    res = _last_json(capsys.readouterr().out)
    assert res["mlflow"]["model"] == {"name": "cli-model", "version": "1"}
    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(res["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["loss"] == res["last"]["loss"]
    assert "calibration.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
