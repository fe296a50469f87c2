"""The MLflow adapter against a real (SQLite-backed, serverless) tracking store and registry."""

import json

import pytest

from ejc.config import load_config
from ejc.train.loop import pretrain
from ejc.train.mlflow_tracker import MLflowTracker

from helpers import random_sequences, random_table


def test_pretrain_logs_params_metrics_artifacts_and_registers(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(uri, experiment="ejc-test", run_name="t1")
    cfg = load_config("tiny", ["train.steps=4", "train.checkpoint_every=2"])
    res = pretrain(cfg, random_table(num=10, seed=4), tmp_path / "run", tracker=tracker, progress=False)
    version = tracker.register_model("ejc-tiny", tmp_path / "run" / "checkpoints" / "step_00000004")
    tracker.finish()

    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.d_model"] == "32" and run.data.params["train.steps"] == "4"
    hist = client.get_metric_history(tracker.run_id, "loss")
    assert [m.step for m in hist] == [1, 2, 3, 4]
    assert [m.value for m in hist] == pytest.approx([h["loss"] for h in res.history])
    assert client.get_metric_history(tracker.run_id, "eff_rank")
    arts = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert {"loss_curve.png", "model"} <= arts
    assert {a.path for a in client.list_artifacts(tracker.run_id, "model")} >= {"model/config.json", "model/model.safetensors"}
    mv = client.get_model_version("ejc-tiny", version)
    assert version == "1" and mv.run_id == tracker.run_id
    assert json.loads(mv.tags["config"])["model"]["d_model"] == 32
    assert "entity_id: string not null" in mv.tags["event_schema"]
    # a second registration adds a version
    t2 = MLflowTracker(uri, experiment="ejc-test")
    assert t2.register_model("ejc-tiny", tmp_path / "run" / "checkpoints" / "step_00000004") == "2"
    t2.finish()

    # the registry round trip a server uses: models:/NAME/VERSION, /latest and @alias
    from ejc.infer.event_jepa import EventJEPA
    from ejc.train.mlflow_tracker import download_registered_model

    (tmp_path / "run" / "calibration.json").write_text('{"event_threshold": 3.5, "sequence_threshold": 1.5}')
    t2.log_artifact(tmp_path / "run" / "calibration.json")
    d1, ident1 = download_registered_model("models:/ejc-tiny/1", tmp_path / "dl1", uri)
    assert ident1 == {"name": "ejc-tiny", "version": "1", "run_id": tracker.run_id}
    assert not (d1 / "calibration.json").exists()  # the first run logged none
    d2, ident2 = download_registered_model("models:/ejc-tiny/latest", tmp_path / "dl2", uri)
    assert ident2["version"] == "2" and (d2 / "calibration.json").is_file()
    client.set_registered_model_alias("ejc-tiny", "prod", "1")
    assert download_registered_model("models:/ejc-tiny@prod", tmp_path / "dl3", uri)[1]["version"] == "1"
    m1, m2 = EventJEPA.from_pretrained(d1), EventJEPA.from_pretrained(d2)
    assert m1.calibration is None and m2.calibration.event_threshold == 3.5
    seq = random_sequences(num=1, seed=9)[0]
    assert (m1.process(seq).pooled == m2.process(seq).pooled).all()  # both versions are the same checkpoint


def test_download_registered_model_explains_bad_uris(tmp_path):
    from ejc.errors import CheckpointError
    from ejc.train.mlflow_tracker import download_registered_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for bad, why in [("runs/x", "not a registry URI"), ("models:/", "not a registry URI"), ("models:/nope/latest", "no versions"), ("models:/nope/3", "cannot load")]:
        with pytest.raises(CheckpointError, match=why):
            download_registered_model(bad, tmp_path / "dl", uri)
