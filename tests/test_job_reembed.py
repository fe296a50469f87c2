"""jobs/reembed.py on a real local Ray: incremental, idempotent, index rebuilt and published,
counts in a real SQLite MLflow store."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import random_table

from ejc.cube import reembed as rb

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def job():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    spec = importlib.util.spec_from_file_location("ejc_job_reembed", ROOT / "jobs" / "reembed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        yield mod
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from ejc.infer.event_jepa import EventJEPA

    out = tmp_path_factory.mktemp("model")
    EventJEPA.fit(random_table(num=10, seed=1), out, config="tiny", overrides=["train.steps=2", "finetune.max_epochs=1", "finetune.half_lives=[null]", "finetune.ensemble=1"], progress=False, calibrate=False)
    return out


def _run(job, capsys, argv):
    assert job.main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_reembed_is_incremental_idempotent_and_publishes_the_index(job, model_dir, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from ejc.cube.sharded import ShardedIndex
    from ejc.infer.event_jepa import EventJEPA

    events = tmp_path / "events"
    events.mkdir()
    base = random_table(num=12, seed=3, min_len=8, max_len=30)
    pq.write_table(base, events / "day-1.parquet")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--events", str(events), "--model", str(model_dir), "--state", str(tmp_path / "state"), "--index", str(tmp_path / "index"),
            "--shards", "2", "--tracking-uri", uri]

    first = _run(job, capsys, argv)
    assert first["entities"] == 12 and first["reembedded"] == 12 and first["new"] == 12 and first["events_read"] == base.num_rows
    assert first["index"]["rebuilt"] and first["index"]["count"] == 12
    idx = ShardedIndex.load(tmp_path / "index")
    model = EventJEPA.from_pretrained(model_dir)
    seqs = list(__import__("ejc").sequences_from_table(base))
    want = model.embed_sequences(seqs)
    got = idx.get([s.id for s in seqs], "behaviour")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # the index holds the model's vectors
    assert idx.search(want[:1], k=1, modality="behaviour")[0][0][0] == seqs[0].id

    second = _run(job, capsys, argv)
    assert second["reembedded"] == 0 and second["unchanged"] == 12 and second["files_written"] == []
    assert second["index"] == {"rebuilt": False, "version": first["index"]["version"]}
    assert json.loads((tmp_path / "state" / "watermark.json").read_text())["runs"] == 2

    # new events (one of them late: an old timestamp) for exactly three entities
    ids = sorted({s.id for s in seqs})[:3]
    t_late = float(np.nanmin(base.column("timestamp").to_numpy()))
    extra = pa.concat_tables([random_table(num=1, seed=40 + i, min_len=3, max_len=4).set_column(0, "entity_id", pa.array([e] * 3, pa.string()))
                              for i, e in enumerate(ids)]).cast(base.schema)
    ts = extra.column("timestamp").to_numpy().copy()
    ts[0] = t_late
    extra = extra.set_column(extra.schema.get_field_index("timestamp"), "timestamp", pa.array(ts))
    pq.write_table(extra, events / "day-2.parquet")
    third = _run(job, capsys, argv)
    assert third["reembedded"] == 3 and third["changed"] == 3 and third["new"] == 0 and third["unchanged"] == 9
    assert sorted(pq.read_table(third["files_written"][0]).column("entity_id").to_pylist()) == ids
    assert third["index"]["rebuilt"] and third["index"]["version"] != first["index"]["version"]
    assert ShardedIndex.load(tmp_path / "index").count("behaviour") == 12

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ejc-reembed").experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.metrics["reembedded"] for r in runs] == [12.0, 0.0, 3.0]


def test_plan_and_fingerprints_by_hand():
    t = pa.table({"entity_id": ["a", "a", "b", "c"], "timestamp": [1.0, 5.0, None, 2.0]})
    fp = rb.combine_fingerprints([rb.fingerprints(t.slice(0, 2)), rb.fingerprints(t.slice(2))])
    assert fp.column("entity_id").to_pylist() == ["a", "b", "c"]
    assert fp.column("num_events").to_pylist() == [2, 1, 1]
    last = fp.column("last_timestamp").to_pylist()
    assert last[0] == 5.0 and np.isnan(last[1]) and last[2] == 2.0
    stored = fp
    grown = rb.combine_fingerprints([fp, pa.table({"entity_id": ["b", "d"], "num_events": [1, 1], "last_timestamp": [float("nan"), 9.0]}, schema=rb.FINGERPRINT_SCHEMA)])
    p = rb.plan(grown, stored, "v1", "v1")
    assert p["reembed"] == ["b", "d"] and (p["new"], p["changed"], p["unchanged"]) == (1, 1, 2)
    assert rb.plan(fp, stored, "v1", "v1")["reembed"] == []
    p = rb.plan(fp, stored, "v2", "v1")
    assert p["model_changed"] and p["reembed"] == ["a", "b", "c"]


def test_unreadable_state_is_refused_with_a_clear_error(tmp_path):
    (tmp_path / "watermark.json").write_text("{not json")
    with pytest.raises(Exception, match="re-embedding state is unreadable"):
        rb.load_state(tmp_path)
