"""jobs/build_index.py on a real local Ray: shards built by Ray tasks answer like an exact index;
a Ray task that fails (bad input file, shard build error) leaves the previous version served."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ejc.cube.embeddings_io import write_embeddings
from ejc.cube.index import VectorIndex
from ejc.cube.sharded import ShardedIndex, build_sharded_index, current_version
from ejc.errors import SchemaError, VectorIndexError

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
N, D = 800, 16
RNG = np.random.default_rng(3)
X = (RNG.normal(size=(20, D))[RNG.integers(20, size=N)] + 0.4 * RNG.normal(size=(N, D))).astype(np.float32)
IDS = [f"u{i}" for i in range(N)]


@pytest.fixture(scope="module")
def job():
    import ray

    # workers import this checkout's ejc (the editable install may point elsewhere)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    spec = importlib.util.spec_from_file_location("build_index_job", ROOT / "jobs" / "build_index.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod
    ray.shutdown()


def write_dir(path: Path, x: np.ndarray = X, files: int = 4) -> Path:
    for f, rows in enumerate(np.array_split(np.arange(N), files)):
        write_embeddings(path / f"p{f}.parquet", [IDS[r] for r in rows], x[rows], modality="behaviour")
    return path


def test_ray_job_builds_four_shards_equal_to_exact_search_and_failures_keep_previous(tmp_path, job, capsys):
    emb = write_dir(tmp_path / "emb")
    assert job.main(["--embeddings", str(emb), "--out", str(tmp_path / "idx"), "--shards", "4", "--model-version", "r1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["modalities"]["behaviour"]["count"] == N and summary["files"] == 4 and summary["ray"]["build_gpus_per_task"] == 0.0
    v1 = current_version(tmp_path / "idx")
    index = ShardedIndex.load(tmp_path / "idx")
    exact = VectorIndex(D, kind="flat")
    exact.upsert(IDS, X)
    q = X[::50] + 0.03
    before = index.search(q, 10)
    assert [[i for i, _ in r] for r in before] == [[i for i, _ in r] for r in exact.search(q, 10)]

    # a Ray scatter task fails on a corrupt file: nothing is published
    bad = write_dir(tmp_path / "emb2", x=X * 2)
    write_embeddings(bad / "p9.parquet", ["zz"], np.ones((1, D + 1)), modality="behaviour")
    with pytest.raises(SchemaError, match="16-dimensional vectors .* but 17-dimensional"):
        build_sharded_index(bad, tmp_path / "idx", shards=4, map_fn=job.ray_map())
    # a Ray shard-build task raises (PQ sub-quantizers that do not divide the dimension)
    with pytest.raises(VectorIndexError, match="pq_m=5 must divide the dimension 16"):
        build_sharded_index(write_dir(tmp_path / "emb3", x=X * 3), tmp_path / "idx", shards=4, kind="ivfpq", options={"pq_m": 5}, map_fn=job.ray_map())
    assert current_version(tmp_path / "idx") == v1
    assert ShardedIndex.load(tmp_path / "idx").search(q, 10) == before
    assert [p.name for p in (tmp_path / "idx" / "versions").iterdir()] == [v1]
    # the job reports bad input as an error line and exit status 2
    assert job.main(["--embeddings", str(tmp_path / "nowhere"), "--out", str(tmp_path / "idx")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert os.environ.get("RAY_ADDRESS") is None
