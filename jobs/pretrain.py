"""Distributed JEPA pretraining with Ray Train (``ray job submit -- python jobs/pretrain.py ...``).

    python jobs/pretrain.py --events DIR --config PRESET_OR_YAML [key=value ...] [--num-workers N]
        [--use-gpu] [--tracking-uri URI] [--experiment NAME] [--out DIR] [--name NAME]
        [--debug-steps N] [--max-failures N] [--data-order stream|global] [--no-track]

Wiring only (model logic lives in ``ejc``): the event table (Parquet file or directory) is read
with Ray Data, hash-partitioned by entity, sorted and cut into windows
(:func:`ejc.data.windows.windows_batch`) — or, with ``--windows DIR``, the windows the ingest
pipeline already cut (``pipelines.ingest.run_ingest(..., window_length=train.max_len)``, the
scalable path for large logs) are read as they are; the type vocabulary and modality widths are computed
with Ray Data aggregations on the driver; a ``TorchTrainer`` runs :class:`ejc.train.loop.Trainer`
on every worker under DDP (gloo on CPU, nccl + bf16 autocast on GPU), fed by
``get_dataset_shard("train")``. ``train.batch_size`` is the global batch. Checkpoints go through
``ray.train.report`` (rank 0 writes them); a restarted worker group resumes from the latest one
(``FailureConfig``), and re-running with the same ``--out`` and ``--name`` resumes the run. The
driver opens the MLflow run and logs params; rank 0 logs step metrics and the loss-curve plot;
the driver registers the final checkpoint in the MLflow model registry.

With no ``RAY_ADDRESS`` the job starts a local Ray with explicit resources (``--num-cpus``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", required=True, help="event table: a Parquet file or a directory of them (ejc ingest / pipelines output)")
    p.add_argument("--config", default="base", help="preset (tiny, small, base) or YAML file")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray started when no cluster address is set")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///mlflow.db in the working directory)")
    p.add_argument("--experiment", default="ejc")
    p.add_argument("--register", default="ejc-event-jepa", help="registered model name")
    p.add_argument("--no-track", action="store_true")
    p.add_argument("--out", default="runs/ray", help="Ray Train storage path (shared storage on a multi-node cluster)")
    p.add_argument("--name", default="pretrain", help="run name under --out; the same name resumes")
    p.add_argument("--debug-steps", type=int, default=None, help="stop after this many steps (smoke run)")
    p.add_argument("--max-failures", type=int, default=2, help="worker-group restarts allowed (FailureConfig)")
    p.add_argument("--num-partitions", type=int, default=8, help="entity hash partitions for windowing")
    p.add_argument("--calibration-windows", type=int, default=2000,
                   help="training windows (a seeded sample) the finished model's anomaly thresholds are calibrated on, on the driver (0: skip)")
    p.add_argument("--windows", default=None, help="training windows cut by the ingest pipeline (its OUT/windows); their length must be train.max_len. "
                   "Default: window --events here")
    p.add_argument(
        "--data-order",
        choices=("stream", "global"),
        default="stream",
        help="stream: each worker streams its split of the windows (any data size); global: every worker holds all windows and "
        "takes its rows of one seeded global batch order (same run for any worker count, exact resume; windows must fit in a worker's memory)",
    )
    return p.parse_args(argv)


def data_spec_from_dataset(ds: Any, max_types: int) -> Any:
    """Modality widths and the type vocabulary of an event dataset, by Ray Data aggregation."""
    from collections import Counter

    from ejc.train.data import data_spec_from_summaries, modality_dims_batch, type_counts_batch

    dim_rows = ds.map_batches(modality_dims_batch, batch_format="pyarrow").take_all()
    # per-block partial counts summed on the driver: no hash shuffle (a groupby spins up 200
    # aggregators by default, minutes of overhead on a small machine)
    counts: Counter[str] = Counter()
    for b in ds.map_batches(type_counts_batch, batch_format="pyarrow").iter_batches(batch_size=None, batch_format="pyarrow"):
        counts.update(dict(zip(b.column("event_type").to_pylist(), b.column("count").to_pylist())))
    return data_spec_from_summaries(dim_rows, counts, max_types)


def _global_windows(shard: Any) -> list[Any]:
    """Every window of the (unsplit) dataset in a fixed order: entity id, then window number."""
    import pyarrow as pa

    from ejc.data.windows import windows_to_sequences

    batches = list(shard.iter_batches(batch_size=4096, batch_format="pyarrow"))
    if not batches:
        raise RuntimeError("the training dataset holds no windows; check --events and train.min_events")
    table = pa.concat_tables(batches).sort_by([("entity_id", "ascending"), ("window", "ascending")])
    return windows_to_sequences(table)


def train_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker.

    ``data_order="stream"``: each worker streams its own split of the windows (scales to data
    larger than a worker's memory; the order depends on the split and restarts on resume).
    ``data_order="global"``: every worker holds all windows and takes its rows of one global,
    seeded batch order; the run is the same for any number of workers and resumes the exact
    data order (see :class:`ejc.train.loop.Trainer`).
    Step metrics are sent to MLflow only once the checkpoint covering them is reported, and a
    restarted worker group skips steps an earlier attempt already logged, so no step is logged
    twice.
    """
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    from ejc.config import Config
    from ejc.data.windows import windows_to_sequences
    from ejc.train.checkpoint import load_checkpoint
    from ejc.train.data import DataSpec
    from ejc.train.loop import Trainer, plot_loss_curves
    from ejc.train.tracking import NullTracker

    cfg = Config.from_dict(config["config"])
    spec = DataSpec.from_dict(config["spec"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    per_worker = max(1, cfg.train.batch_size // world)
    global_order = config.get("data_order", "stream") == "global"

    def wrap(m: Any) -> Any:
        return ray.train.torch.prepare_model(m, parallel_strategy_kwargs={"find_unused_parameters": True}) if world > 1 else m.to(device)

    shard = ray.train.get_dataset_shard("train")
    windows = _global_windows(shard) if global_order else None
    trainer = Trainer(cfg, spec, windows, device, wrap=wrap, shard=(rank, world) if global_order else (0, 1))
    ckpt = ray.train.get_checkpoint()
    resumed_from = 0
    if ckpt is not None:
        with ckpt.as_directory() as d:
            _, _, state, tstate, _ = load_checkpoint(d)
            trainer.load_state_dict(state, tstate)
        resumed_from = trainer.step_no
    if not global_order:  # different masks per worker, and fresh ones after a resume
        trainer.mask_gen.manual_seed(cfg.train.seed + 1 + rank + 7919 * resumed_from)
    tracker: Any = NullTracker()
    logged_until = 0
    if rank == 0 and config.get("run_id"):
        from ejc.train.mlflow_tracker import MLflowTracker

        tracker = MLflowTracker(config["tracking_uri"], run_id=config["run_id"])
        if resumed_from:
            tracker.log_metrics({"resumed_from_step": float(resumed_from)}, resumed_from)
            # Ray Train registers a reported checkpoint asynchronously: a worker that died right
            # after a report may have logged steps past the checkpoint it is restored from. Those
            # steps keep their first values (identical with --data-order global) and are not
            # logged again.
            history = tracker.client.get_metric_history(tracker.run_id, "loss")
            logged_until = max((m.step for m in history), default=0)

    def stream_batches():  # noqa: ANN202
        while True:
            got = False
            for b in shard.iter_batches(batch_size=per_worker, batch_format="pyarrow"):
                got = True
                yield windows_to_sequences(b)
            if not got:
                raise RuntimeError(f"worker {rank} received no training windows; use fewer workers or more data")

    it = None if global_order else stream_batches()
    end = cfg.train.steps if config.get("stop_after") is None else min(cfg.train.steps, trainer.step_no + int(config["stop_after"]))
    history: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    while trainer.step_no < end:
        parts = trainer.step(None if it is None else next(it))
        s = trainer.step_no
        if rank == 0 and (s % cfg.train.log_every == 0 or s == end):
            pending.append({"step": s, **parts})
        if s % cfg.train.checkpoint_every == 0 or s == end:
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint = Checkpoint.from_directory(str(trainer.save(tmp))) if rank == 0 else None
                ray.train.report({"step": s, "loss": parts["loss"], "eff_rank": parts.get("eff_rank", float("nan")), "resumed_from_step": resumed_from}, checkpoint=checkpoint)
            for row in pending:
                if row["step"] > logged_until:
                    tracker.log_metrics({k: v for k, v in row.items() if k != "step"}, row["step"])
            history.extend(pending)
            pending = []
    if rank == 0 and history:
        with tempfile.TemporaryDirectory() as tmp:
            tracker.log_artifact(plot_loss_curves(history, Path(tmp) / "loss_curve.png"))
            tracker.log_metrics({"train_seconds": time.perf_counter() - t0, "workers": float(world)}, trainer.step_no)


def calibrate_final(model_dir: Path, windows: Any, n: int, seed: int) -> dict[str, Any]:
    """Fit the anomaly thresholds of the model in ``model_dir`` on a seeded sample of ``n`` training
    windows and write its ``calibration.json`` there (so the registered model and Serve report
    calibrated thresholds, as ``ejc pretrain`` does). Returns the thresholds and the sample size."""
    from ejc.data.windows import windows_to_sequences
    from ejc.infer.event_jepa import EventJEPA

    import pyarrow as pa

    model = EventJEPA.from_pretrained(model_dir)
    if model.model.heads is None:
        return {"skipped": "the model has no next-event heads (objective.future=false)"}
    total = windows.count()
    if total == 0:
        return {"skipped": "no training windows"}
    sample = windows.random_sample(min(1.0, 1.2 * n / total), seed=seed).limit(n) if total > n else windows
    tables = [b for b in sample.iter_batches(batch_size=None, batch_format="pyarrow") if b.num_rows]
    if not tables:  # a random sample can come out empty on tiny data
        tables = [b for b in windows.limit(n).iter_batches(batch_size=None, batch_format="pyarrow")]
    seqs = windows_to_sequences(pa.concat_tables(tables))
    cal = model.calibrate(seqs, save_to=model_dir)
    return {"event_threshold": cal.event_threshold, "sequence_threshold": cal.sequence_threshold, "windows": len(seqs)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ejc.config import load_config
    from ejc.errors import EjcError

    try:
        cfg = load_config(args.config, args.overrides)  # every config problem before any work
    except EjcError as e:
        print(f"pretrain: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(run(args, cfg), default=str), flush=True)
    return 0


def run(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    """The job with parsed ``args`` and a resolved config; returns its summary."""
    import ray
    import ray.data
    from ray.train import DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ejc.data.windows import windows_batch
    from jobs.ray_env import ensure_ray

    ensure_ray(args.num_cpus)
    t0 = time.perf_counter()
    events = ray.data.read_parquet(args.events).select_columns(["entity_id", "timestamp", "event_type", "modality", "embedding", "label"])
    spec = data_spec_from_dataset(events, cfg.model.max_types)
    if args.windows:
        windows = ray.data.read_parquet(args.windows)
        longest = windows.max("num_events") if windows.count() else 0
        if longest > cfg.train.max_len:
            raise SystemExit(f"pretrain: error: --windows {args.windows} holds windows of {longest} events but train.max_len is {cfg.train.max_len}; "
                             "cut them with window_length=train.max_len or raise train.max_len")
        windows = windows.materialize()
    else:
        windows = events.repartition(args.num_partitions, keys=["entity_id"]).map_batches(
            windows_batch,
            fn_kwargs={"length": cfg.train.max_len, "stride": cfg.train.stride, "min_events": cfg.train.min_events},
            batch_size=None,
            batch_format="pyarrow",
        ).materialize()
    tracker = None
    if not args.no_track:
        from ejc.train.mlflow_tracker import MLflowTracker

        tracker = MLflowTracker(args.tracking_uri, experiment=args.experiment, run_name=args.name)
        tracker.log_params({**cfg.flat(), "data.modalities": spec.modalities, "data.types": len(spec.vocab), "data.windows": windows.count(), "ray.num_workers": args.num_workers, "ray.use_gpu": args.use_gpu})
    storage = str(Path(args.out).resolve()) if "://" not in args.out else args.out
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "config": cfg.to_dict(),
            "spec": spec.to_dict(),
            "stop_after": args.debug_steps,
            "data_order": args.data_order,
            "run_id": tracker.run_id if tracker else None,
            "tracking_uri": tracker.tracking_uri if tracker else None,
        },
        scaling_config=ScalingConfig(num_workers=args.num_workers, use_gpu=args.use_gpu),
        run_config=RunConfig(storage_path=storage, name=args.name, failure_config=FailureConfig(max_failures=args.max_failures)),
        datasets={"train": windows},
        dataset_config=DataConfig(datasets_to_split=[] if args.data_order == "global" else "all"),
    )
    status = "FAILED"
    summary: dict[str, Any] = {}
    try:
        result = trainer.fit()
        summary = {
            "steps": int(result.metrics.get("step", 0)),
            "loss": result.metrics.get("loss"),
            "eff_rank": result.metrics.get("eff_rank"),
            "resumed_from_step": int(result.metrics.get("resumed_from_step", 0)),
            "data_order": args.data_order,
            "checkpoint": result.checkpoint.path if result.checkpoint else None,
        }
        if result.checkpoint is not None:
            final = Path(storage) / args.name / "model"
            shutil.rmtree(final, ignore_errors=True)
            with result.checkpoint.as_directory() as d:
                shutil.copytree(d, final)
            summary["model_dir"] = str(final)
            if summary["steps"] >= cfg.train.steps and args.calibration_windows > 0:
                summary["calibration"] = calibrate_final(final, windows, args.calibration_windows, cfg.train.seed)
                if tracker is not None and "event_threshold" in summary["calibration"]:
                    from ejc.infer.event_jepa import CALIBRATION_FILE

                    tracker.log_artifact(final / CALIBRATION_FILE)
            if tracker is not None and summary["steps"] >= cfg.train.steps:
                summary["mlflow_model"] = {"name": args.register, "version": tracker.register_model(args.register, final)}
        status = "FINISHED"
    finally:
        if tracker is not None:
            tracker.finish(status)
            summary["mlflow_run_id"] = tracker.run_id
            summary["tracking_uri"] = tracker.tracking_uri
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["workers"] = args.num_workers
    return summary


if __name__ == "__main__":
    sys.exit(main())
