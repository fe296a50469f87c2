"""The local quickstart: synthetic data -> ingest -> short JEPA pretraining -> linear-probe result.

Runs everything in one process on the CPU (GPU if present) and returns a summary dict; the
``ejc quickstart`` command prints it as JSON.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


from ejc.config import load_config
from ejc.data.ingest import ingest
from ejc.data.synth import write_synth
from ejc.eval.probe import synthetic_class_probe
from ejc.infer.event_jepa import CALIBRATION_FILE, EventJEPA
from ejc.train.data import load_sequences
from ejc.train.checkpoint import resolve_checkpoint
from ejc.train.loop import pretrain


def run_quickstart(out: str | Path, entities: int = 240, seed: int = 0, config: str = "small", overrides: list[str] | None = None, track: bool = True) -> dict[str, Any]:
    """Run the quickstart in ``out``; with ``track`` the run and model go to ``out/mlflow.db``."""
    t0 = time.perf_counter()
    out = Path(out)
    synth = write_synth(out / "synth", num_entities=entities, seed=seed)
    ing = ingest(out / "synth" / "events.parquet", out / "ingested", format="parquet")
    cfg = load_config(config, [f"train.seed={seed}", *(overrides or [])])
    run = out / "model"
    tracker = None
    if track:
        from ejc.train.mlflow_tracker import MLflowTracker, default_tracking_uri

        tracker = MLflowTracker(default_tracking_uri(out), experiment="ejc-quickstart", run_name="quickstart")
    result = pretrain(cfg, out / "ingested", run, tracker=tracker, resume=False)
    model = EventJEPA.from_pretrained(run)
    seqs, _ = load_sequences(out / "ingested", cfg.train.min_events)
    cal = model.calibrate(seqs, save_to=run)
    mlflow_info = None
    if tracker is not None:
        tracker.log_artifact(run / CALIBRATION_FILE)
        version = tracker.register_model("ejc-quickstart", resolve_checkpoint(run))
        tracker.finish()
        mlflow_info = {"tracking_uri": tracker.tracking_uri, "run_id": tracker.run_id, "model": "ejc-quickstart", "version": version}

    probe, chance = synthetic_class_probe(model, seqs, out / "synth" / "truth.json", seed)
    summary = result.summary()
    return {
        "synth": synth,
        "ingest": ing.report.to_dict(),
        "pretrain": {k: summary[k] for k in ("run_dir", "steps", "seconds", "first", "last")},
        "probe_accuracy_entity_class": probe,
        "chance": chance,
        "anomaly_thresholds": {"event": cal.event_threshold, "sequence": cal.sequence_threshold},
        "loss_curve": str(run / "loss_curve.png"),
        "mlflow": mlflow_info,
        "seconds": round(time.perf_counter() - t0, 1),
    }


__all__ = ["run_quickstart"]
