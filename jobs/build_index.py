"""Build a sharded vector index with Ray tasks (``ray job submit -- python jobs/build_index.py ...``).

    python jobs/build_index.py --embeddings DIR --out DIR [--shards N] [--modality M]
        [--metric cosine|ip|l2] [--kind auto|flat|ivf|hnsw|ivfpq] [--option KEY=VALUE ...]
        [--model-version V] [--keep N] [--num-cpus N] [--use-gpu]

Wiring only (the build lives in :func:`ejc.cube.sharded.build_sharded_index`): its two task
lists — one scatter task per input file, one build task per (modality, shard) — run as Ray
tasks, the shard builds with one GPU each when ``--use-gpu`` is given or the cluster has GPUs
(FAISS trains and searches on a GPU there). The result is published atomically: a failed or
killed build leaves the previous version served. On a multi-node cluster ``--embeddings`` and
``--out`` must be on shared storage.

With no ``RAY_ADDRESS`` the job starts a local Ray with explicit resources (``--num-cpus``).
Prints one JSON line: version, counts, kinds, seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--embeddings", required=True, help="directory of embeddings Parquet files (entity_id, embedding[, modality][, hierarchy columns])")
    p.add_argument("--out", required=True, help="index root (versions/ + CURRENT)")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--modality", default=None)
    p.add_argument("--metric", default="cosine", choices=("cosine", "ip", "l2"))
    p.add_argument("--kind", default="auto", choices=("auto", "flat", "ivf", "hnsw", "ivfpq"))
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="VectorIndex option (repeatable)")
    p.add_argument("--model-version", default=None)
    p.add_argument("--keep", type=int, default=2, help="published versions to keep")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray started when no cluster address is set")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per shard build task (default: when the cluster has GPUs)")
    return p.parse_args(argv)


def ray_map(build_gpus: float = 0.0) -> Callable[[Callable[..., Any], list[dict[str, Any]]], list[Any]]:
    """A ``map_fn`` for :func:`build_sharded_index`: each task a Ray task (shard builds may take a GPU)."""
    import ray

    from ejc.cube.sharded import build_shard

    def run(fn: Callable[..., Any], items: list[dict[str, Any]]) -> list[Any]:
        gpus = build_gpus if fn is build_shard else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(fn)
        return ray.get([task.remote(**kw) for kw in items])

    return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import ray

    from ejc.cube.cli import parse_options
    from ejc.cube.sharded import build_sharded_index
    from ejc.errors import EjcError
    from jobs.ray_env import ensure_ray

    try:
        options = parse_options(args.option)
    except EjcError as e:
        print(f"build_index: error: {e}", file=sys.stderr)
        return 2
    started = ensure_ray(args.num_cpus, log_to_driver=False)
    try:
        gpus = 1.0 if args.use_gpu or ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        summary = build_sharded_index(args.embeddings, args.out, args.shards, args.modality, metric=args.metric, kind=args.kind, options=options,
                                      model_version=args.model_version, map_fn=ray_map(gpus), keep=args.keep)
    except EjcError as e:
        print(f"build_index: error: {e}", file=sys.stderr)
        return 2
    finally:
        if started:
            ray.shutdown()
    print(json.dumps({**summary, "ray": {"build_gpus_per_task": gpus}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
