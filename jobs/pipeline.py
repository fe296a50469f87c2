"""The whole pipeline as one job: event log -> Ray Data ingest -> ``ejc train`` (the deployable
model) as a Ray task -> MLflow registered model -> summary (the README's main command on the
embedded default).

    python jobs/pipeline.py [--src LOG [--format F]] [--out runs/pipeline] [--config compact] [key=value ...]
        [--task-cpus 1] [--num-cpus N] [--tracking-uri URI] [--experiment E] [--register NAME] [--entities N] [--seed S]

Without ``--src`` it writes a synthetic log with known ground truth (``ejc synth``), trains with the
quickstart's budget (``ejc.quickstart.QUICKSTART_OVERRIDES``, before the command line's overrides)
and ends with a linear probe of the reloaded model's representation against the truth (beside a
random encoder and mean raw vectors, as ``ejc quickstart`` does); with ``--src`` the recipe runs
with ``ejc train``'s defaults. ``OUT/model`` is the same directory ``ejc train`` writes, registered
in MLflow, so ``serve run`` loads it by path or as ``models:/NAME/VERSION``. With no
``RAY_ADDRESS`` it starts a local Ray with ``--num-cpus`` CPUs; under ``ray job submit`` it runs on
the cluster. MLflow defaults to ``sqlite:///OUT/mlflow.db``. Prints one JSON summary as its last
line. (Data-parallel JEPA pretraining of large logs is ``jobs/pretrain.py``; the recipe's
pretraining stage runs in the one training task.)
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
    p.add_argument("--config", default="compact", help="preset (compact, tiny, small, base) or YAML file (default compact, as ejc train)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.add_argument("--task-cpus", type=float, default=1.0, help="CPUs reserved for the training task (default 1)")
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
    from ejc.quickstart import QUICKSTART_OVERRIDES

    overrides = ([] if args.src else list(QUICKSTART_OVERRIDES)) + list(args.overrides)
    try:
        cfg = load_config(args.config, [f"train.seed={args.seed}", *overrides])
    except EjcError as e:
        print(f"pipeline: error: {e}", file=sys.stderr)
        return 2
    from ejc.train.mlflow_tracker import default_tracking_uri
    from jobs.ray_env import ensure_ray, run_task
    from jobs.train import train_from_argv
    from pipelines.ingest import run_ingest

    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if (out / "model").exists():
        print(f"pipeline: error: {out / 'model'} exists; pass a new --out (a trained model is never overwritten)", file=sys.stderr)
        return 2
    summary: dict[str, Any] = {}
    src = args.src
    if src is None:
        from ejc.data.synth import write_synth

        summary["synth"] = write_synth(out / "synth", num_entities=args.entities, seed=args.seed)
        src = str(out / "synth" / "events.parquet")

    ensure_ray(args.num_cpus)
    report = run_ingest(src, out / "ingested", fmt=args.format, min_events=cfg.train.min_events)
    summary["ingest"] = {k: report[k] for k in ("read", "accepted", "quarantined", "reasons", "seconds")}
    if report["accepted"] == 0:
        print(f"pipeline: error: no event of {src} was accepted; see {out / 'ingested' / 'quarantine'} for the reasons", file=sys.stderr)
        return 2

    tracking = args.tracking_uri or default_tracking_uri(out)
    train_args = ["--events", str(out / "ingested"), "--out", str(out / "model"), "--config", args.config, *[f"train.seed={args.seed}", *overrides],
                  "--tracking-uri", tracking, "--experiment", args.experiment, "--register", args.register]
    rc, trained = run_task(train_from_argv, train_args, "pipeline", args.task_cpus)
    if rc:
        return rc
    summary["train"] = {"model": trained["model"], "data": trained["data"], "holdout": trained["holdout"], "train_seconds": trained["train_seconds"], "overrides": overrides}
    summary["mlflow"] = trained.get("mlflow")
    if args.src is None:
        summary["probe_accuracy_entity_class"] = _probe(trained["model"], out, cfg, args.seed)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary, default=str), flush=True)
    return 0


def _probe(model_dir: str, out: Path, cfg: Any, seed: int) -> dict[str, float]:
    """Probe accuracy for the synthetic entity class: pretrained vs random encoder vs mean raw vectors."""
    from ejc.eval.probe import synthetic_class_probe
    from ejc.infer.event_jepa import EventJEPA
    from ejc.train.data import load_sequences

    seqs, _ = load_sequences(out / "ingested", cfg.train.min_events)
    probe, chance = synthetic_class_probe(EventJEPA.from_pretrained(model_dir), seqs, out / "synth" / "truth.json", seed)
    return probe | {"chance": chance}


if __name__ == "__main__":
    sys.exit(main())
