"""The Ray Data ingest pipeline on a real local Ray cluster (one per module)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ejc.data.sequence import sequences_from_table
from pipelines.batches import windows_to_sequences

from helpers import random_table

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("logs")
    table = random_table(num=30, seed=7, min_len=5, max_len=50)
    # three Parquet files split across entities, plus a CSV with bad rows for the same log
    n = table.num_rows
    for i, (a, b) in enumerate([(0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n)]):
        pq.write_table(table.slice(a, b - a), d / f"part-{i}.parquet")
    return d, table


def test_pipeline_accounts_validates_and_windows(ray_local, source, tmp_path):
    from pipelines.ingest import run_ingest

    src, table = source
    bad = src / "part-3.parquet"
    bad_tab = pa.table({"entity_id": ["x", None, "x"], "timestamp": [1.0, 2.0, float("inf")], "embedding": [[0.0] * 8, [0.0] * 8, [1.0] * 7]})
    pq.write_table(bad_tab, bad)
    try:
        report = run_ingest(src, tmp_path / "out", window_length=16, window_stride=8, min_events=6, num_partitions=4)
    finally:
        bad.unlink()
    assert report["read"] == table.num_rows + 3
    assert report["read"] == report["accepted"] + report["quarantined"]
    assert report["quarantined"] == 2 and report["reasons"] == {"missing_entity_id": 1, "unparsable_timestamp": 1}
    assert report["dims"] == {"default": 8}
    events = pq.read_table(tmp_path / "out" / "events")
    assert events.num_rows == table.num_rows + 1
    q = pq.read_table(tmp_path / "out" / "quarantine")
    assert sorted(q.column("row").to_pylist()) == [1, 2] and set(q.column("source").to_pylist()) == {str(bad)}
    # windows equal windowing done locally on the original table
    win = pq.read_table(tmp_path / "out" / "windows")
    expected = 0
    for seq in sequences_from_table(table):
        n = len(seq)
        if n < 6:
            continue
        expected += 1 if n <= 16 else len(range(0, n - 16 + 1, 8)) + (1 if (n - 16) % 8 else 0)
    x_windows = win.filter(pc.equal(win.column("entity_id"), "x")).num_rows
    assert win.num_rows - x_windows == expected and report["windows"] == win.num_rows
    by_id = {s.id: s for s in sequences_from_table(table)}
    for seq in windows_to_sequences(win.filter(pc.not_equal(win.column("entity_id"), "x"))):
        ent, w = seq.id.split("#")
        full = by_id[ent]
        start = int(np.searchsorted(full.timestamps, seq.timestamps[0]))
        assert np.array_equal(full.timestamps[start : start + len(seq)], seq.timestamps)
        assert np.allclose(full.vectors("default")[start : start + len(seq)], seq.vectors("default"))
    assert json.loads((tmp_path / "out" / "report.json").read_text())["read"] == report["read"]


def test_pipeline_embeds_in_an_actor_pool(ray_local, tmp_path):
    from pipelines.ingest import run_ingest

    src = tmp_path / "log.csv"
    src.write_text("case,time,activity\n" + "".join(f"c{i % 4},2024-01-01 00:{i:02d}:00,act{i % 3}\n" for i in range(40)))
    report = run_ingest(src, tmp_path / "out", embed="types", embed_concurrency=1, window_length=8, min_events=2, num_partitions=2)
    assert report["read"] == report["accepted"] == 40
    assert report["dims"] == {"types": 64}
    assert report["embed"] == {"embedder": "types", "modality": "types", "dim": 64, "actors": 1, "gpus_per_actor": 0.0}  # no GPU here
    events = pq.read_table(tmp_path / "out" / "events")
    assert set(events.column("modality").to_pylist()) == {"types"}
    assert {len(v) for v in events.column("embedding").to_pylist()} == {64}
    win = pq.read_table(tmp_path / "out" / "windows")
    assert sum(win.column("num_events").to_pylist()) >= 40


def test_an_unreadable_file_fails_the_job_with_its_name(ray_local, tmp_path):
    from ejc.errors import ReaderError
    from pipelines.ingest import estimate_rows, list_sources, run_ingest

    table = random_table(num=3, seed=1, min_len=3, max_len=5)
    src = tmp_path / "logs"
    src.mkdir()
    for i in range(9):  # more than the 8 files sampled on the driver: the bad one is read in a task
        pq.write_table(table, src / f"p{i}.parquet")
    (src / "p9.parquet").write_bytes((src / "p0.parquet").read_bytes()[:100])
    with pytest.raises(ReaderError, match=r"p9\.parquet: not a readable Parquet file"):
        estimate_rows(list_sources(src), "auto")
    with pytest.raises(ReaderError, match=r"p9\.parquet: not a readable Parquet file") as err:
        run_ingest(src, tmp_path / "out")
    assert type(err.value) is ReaderError  # the plain error, not Ray's wrapper with a traceback
