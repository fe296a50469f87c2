"""Nightly re-embedding (``ray job submit -- python jobs/reembed.py ...``): entities whose events
changed since the last run get new behaviour vectors from the current model, then the sharded
cube index is rebuilt and published atomically.

    python jobs/reembed.py --events DIR --model (CHECKPOINT_DIR | models:/NAME/VERSION) --state DIR
        [--index DIR [--shards N]] [--modality behaviour] [--min-events N] [--concurrency N]
        [--use-gpu] [--tracking-uri URI] [--experiment NAME] [--no-track] [--num-cpus N]

Wiring only (the logic lives in :mod:`ejc.cube.reembed` and :mod:`ejc.cube.sharded`): Ray Data
computes per-entity fingerprints of the event table, the driver compares them with the stored
state, the changed entities' events are hash-partitioned by entity and embedded by an
``EventJEPA`` actor pool (one GPU per actor when ``--use-gpu``), the vectors are appended to
``STATE/embeddings`` and the state committed, then ``--index`` is rebuilt when anything changed
(or when it has no published version yet). Running it twice changes nothing the second time.
Counts go to stdout (one JSON line) and to an MLflow run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", required=True, help="event table: a Parquet file or directory (ejc ingest / pipelines output)")
    p.add_argument("--model", required=True, help="checkpoint directory, or a registry URI models:/NAME/VERSION (NAME/latest, NAME@ALIAS)")
    p.add_argument("--state", required=True, help="state directory: embeddings/, entities.parquet, watermark.json")
    p.add_argument("--index", default=None, help="sharded index root to rebuild (ejc index query --index DIR reads it)")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--modality", default="behaviour")
    p.add_argument("--min-events", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1, help="embedding actors")
    p.add_argument("--partition-rows", type=int, default=250_000, help="events per entity hash partition (bounds an actor's batch)")
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray started when no cluster address is set")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///mlflow.db in the working directory)")
    p.add_argument("--experiment", default="ejc-reembed")
    p.add_argument("--no-track", action="store_true")
    return p.parse_args(argv)


class EmbedActor:
    """Ray Data actor: whole entities' events -> their behaviour vectors."""

    def __init__(self, model_dir: str, modality: str, min_events: int, device: str):
        from ejc.infer.event_jepa import EventJEPA

        self.model = EventJEPA.from_pretrained(model_dir, device=device)
        self.modality, self.min_events = modality, min_events

    def __call__(self, batch: Any) -> Any:
        from ejc.cube.reembed import embed_entities

        return embed_entities(batch, self.model, self.modality, self.min_events)


def _keep(batch: Any, ids_ref: Any) -> Any:
    import pyarrow.compute as pc
    import ray

    return batch.filter(pc.is_in(batch.column("entity_id"), value_set=ray.get(ids_ref)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow as pa
    import ray
    import ray.data

    from ejc.cube import reembed as rb

    t0 = time.perf_counter()
    model_dir, model_id = _resolve_model(args)
    version = rb.model_version_of(model_dir)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    from ejc.data.schema import EVENT_SCHEMA

    events = ray.data.read_parquet(args.events).select_columns(list(EVENT_SCHEMA.names))
    parts = [b for b in events.map_batches(rb.fingerprints, batch_format="pyarrow").iter_batches(batch_size=None, batch_format="pyarrow")]
    current = rb.combine_fingerprints(parts)
    stored, meta = rb.load_state(args.state)
    todo = rb.plan(current, stored, version, meta.get("model_version"))
    counts: dict[str, Any] = {
        "events_read": int(sum(current.column("num_events").to_pylist())),
        "entities": current.num_rows,
        "reembedded": 0,
        "new": todo["new"],
        "changed": todo["changed"],
        "unchanged": todo["unchanged"],
        "model_changed": todo["model_changed"],
        "vanished": len(set(stored.column("entity_id").to_pylist()) - set(current.column("entity_id").to_pylist())),
    }
    written = []
    if todo["reembed"]:
        ids_ref = ray.put(pa.array(todo["reembed"], pa.string()))
        chosen = set(todo["reembed"])
        n_events = int(sum(n for e, n in zip(current.column("entity_id").to_pylist(), current.column("num_events").to_pylist()) if e in chosen))
        vectors = (
            events.map_batches(_keep, fn_args=(ids_ref,), batch_format="pyarrow")
            .repartition(max(1, -(-n_events // args.partition_rows)), keys=["entity_id"])
            .map_batches(
                EmbedActor,
                fn_constructor_args=(str(model_dir), args.modality, args.min_events, "cuda" if args.use_gpu else "cpu"),
                batch_size=None,
                batch_format="pyarrow",
                concurrency=args.concurrency,
                num_gpus=1 if args.use_gpu else 0,
            )
        )
        for i, b in enumerate(vectors.iter_batches(batch_size=None, batch_format="pyarrow")):
            path = rb.write_vectors(args.state, b, f"{run_id}-{i:05d}")
            if path is not None:
                written.append(str(path))
                counts["reembedded"] += b.num_rows
        counts["too_short"] = len(todo["reembed"]) - counts["reembedded"]
    new_meta = rb.commit_state(args.state, current, version, meta, counts)
    summary: dict[str, Any] = {"model": model_id, "model_version": version, "watermark": new_meta["watermark"], "files_written": written, **counts}
    if args.index:
        summary["index"] = _maybe_rebuild(args, version, changed=bool(written))
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def _resolve_model(args: argparse.Namespace) -> tuple[Path, str]:
    if args.model.startswith("models:/"):
        from ejc.train.mlflow_tracker import download_registered_model

        model_dir, ident = download_registered_model(args.model, tempfile.mkdtemp(prefix="ejc-reembed-model-"), args.tracking_uri)
        return Path(model_dir), f"{args.model} (version {ident.get('version')})"
    return Path(args.model), str(Path(args.model).resolve())


def _maybe_rebuild(args: argparse.Namespace, version: str, changed: bool) -> dict[str, Any]:
    from ejc.cube.sharded import build_sharded_index, current_version
    from ejc.errors import EjcError
    from jobs.build_index import ray_map

    try:
        published = current_version(args.index)
    except EjcError:
        published = None
    if not changed and published is not None:
        return {"rebuilt": False, "version": published}
    built = build_sharded_index(Path(args.state) / "embeddings", args.index, args.shards, args.modality, model_version=version, map_fn=ray_map(1.0 if args.use_gpu else 0.0))
    return {"rebuilt": True, "version": built["version"], "count": built["modalities"][args.modality]["count"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import ray

    from ejc.errors import EjcError
    from jobs.ray_env import ensure_ray

    started = ensure_ray(args.num_cpus, log_to_driver=False)
    tracker = None
    status = "FAILED"
    try:
        if not args.no_track:
            from ejc.train.mlflow_tracker import MLflowTracker

            tracker = MLflowTracker(args.tracking_uri, experiment=args.experiment, run_name="reembed")
            tracker.log_params({"events": args.events, "model": args.model, "state": args.state, "index": args.index, "modality": args.modality, "shards": args.shards})
        summary = run(args)
        if tracker is not None:
            keys = ("events_read", "entities", "reembedded", "new", "changed", "unchanged", "vanished", "seconds")
            tracker.log_metrics({k: float(summary[k]) for k in keys}, 0)
            summary["mlflow_run_id"] = tracker.run_id
        status = "FINISHED"
    except EjcError as e:
        print(f"reembed: error: {e}", file=sys.stderr)
        return 2
    finally:
        if tracker is not None:
            tracker.finish(status)
        if started:
            ray.shutdown()
    print(json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
