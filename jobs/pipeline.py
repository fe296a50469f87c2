"""The whole pipeline as one job: event log -> Ray Data ingest -> Ray Train pretraining -> MLflow
registered model -> summary (the README's main command on the embedded default).

    python jobs/pipeline.py [--src LOG [--format F]] [--out runs/pipeline] [--config small] [key=value ...]
        [--num-workers 2] [--use-gpu] [--tracking-uri URI] [--register NAME] [--entities N] [--seed S]

Without ``--src`` it writes a synthetic log with known ground truth (``ejc synth``) and ends
with a linear probe of the learned representation against the truth (beside a random encoder
and mean raw vectors, as ``ejc quickstart`` does). With no ``RAY_ADDRESS`` it starts a local Ray
with ``--num-cpus`` CPUs; under ``ray job submit`` it runs on the cluster. MLflow defaults to
``sqlite:///OUT/mlflow.db``. Prints one JSON summary as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", default=None, help="event log file or directory (any format `ejc ingest` reads); default: a synthetic log")
    p.add_argument("--format", default="auto")
    p.add_argument("--out", default="runs/pipeline")
    p.add_argument("--config", default="small", help="preset (tiny, small, base) or YAML file")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray started when no cluster address is set")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///OUT/mlflow.db)")
    p.add_argument("--experiment", default="ejc-pipeline")
    p.add_argument("--register", default="ejc-event-jepa")
    p.add_argument("--entities", type=int, default=240, help="entities of the synthetic log")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from ejc.config import load_config
    from ejc.errors import EjcError

    try:
        cfg = load_config(args.config, [f"train.seed={args.seed}", *args.overrides])
    except EjcError as e:
        print(f"pipeline: error: {e}", file=sys.stderr)
        return 2
    from ejc.train.mlflow_tracker import default_tracking_uri
    from jobs import pretrain as pretrain_job
    from jobs.ray_env import ensure_ray
    from pipelines.ingest import run_ingest

    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    src = args.src
    if src is None:
        from ejc.data.synth import write_synth

        summary["synth"] = write_synth(out / "synth", num_entities=args.entities, seed=args.seed)
        src = str(out / "synth" / "events.parquet")

    ensure_ray(args.num_cpus)
    # the pipeline cuts the training windows (entity buckets, sorted by time) as it ingests
    report = run_ingest(src, out / "ingested", fmt=args.format, window_length=cfg.train.max_len, window_stride=cfg.train.stride, min_events=cfg.train.min_events)
    summary["ingest"] = {k: report[k] for k in ("read", "accepted", "quarantined", "reasons", "windows", "seconds")}
    if report["accepted"] == 0:
        print(f"pipeline: error: no event of {src} was accepted; see {out / 'ingested' / 'quarantine'} for the reasons", file=sys.stderr)
        return 2
    if report["windows"] == 0:
        print(f"pipeline: error: no entity of {src} has train.min_events={cfg.train.min_events} events, so there is nothing to train on; "
              "lower train.min_events", file=sys.stderr)
        return 2

    tracking = args.tracking_uri or default_tracking_uri(out)
    job_args = pretrain_job.parse_args(
        ["--events", str(out / "ingested" / "events"), "--windows", str(out / "ingested" / "windows"), "--num-workers", str(args.num_workers), "--out", str(out / "ray"), "--name", "pretrain",
         "--tracking-uri", tracking, "--experiment", args.experiment, "--register", args.register, "--data-order", "global"]
        + (["--use-gpu"] if args.use_gpu else [])
    )
    trained = pretrain_job.run(job_args, cfg)
    summary["pretrain"] = {k: trained.get(k) for k in ("steps", "loss", "eff_rank", "seconds", "workers", "model_dir", "mlflow_model", "mlflow_run_id", "tracking_uri")}

    if args.src is None and trained.get("model_dir"):
        summary["probe_accuracy_entity_class"] = _probe(trained["model_dir"], out, cfg, args.seed)
    summary["loss_curve_artifact"] = "loss_curve.png in the MLflow run"
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary, default=str), flush=True)
    return 0


def _probe(model_dir: str, out: Path, cfg: Any, seed: int) -> dict[str, float]:
    """Probe accuracy for the synthetic entity class: pretrained vs random encoder vs mean raw vectors."""
    import pyarrow.parquet as pq

    from ejc.eval.probe import synthetic_class_probe
    from ejc.infer.event_jepa import EventJEPA
    from ejc.train.data import load_sequences

    seqs, _ = load_sequences(pq.read_table(out / "ingested" / "events"), cfg.train.min_events)
    probe, chance = synthetic_class_probe(EventJEPA.from_pretrained(model_dir), seqs, out / "synth" / "truth.json", seed)
    return probe | {"chance": chance}


if __name__ == "__main__":
    sys.exit(main())
