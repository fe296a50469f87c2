"""The local quickstart: synthetic data -> ingest -> ``ejc train`` (the deployable model) -> checks.

Runs everything in one process on the CPU and returns a summary dict; the ``ejc quickstart``
command prints it as JSON. The model is trained by the same recipe as ``ejc train``
(:func:`ejc.train.recipe.train_model`), with a smaller budget by default
(:data:`QUICKSTART_OVERRIDES`: one half-life, one member, at most 15 epochs) so the whole run
takes a couple of minutes on a laptop; ``OUT/model`` is what ``EventJEPA.from_pretrained`` and
``serve run serve/config.yaml`` load. The summary reports the model's holdout metrics (from its
card) and a linear probe, on the reloaded model, of the learned representation for the synthetic
entity class.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ejc.config import load_config
from ejc.data.ingest import ingest
from ejc.data.synth import write_synth
from ejc.eval.probe import synthetic_class_probe
from ejc.infer.event_jepa import EventJEPA
from ejc.train.data import load_sequences
from ejc.train.recipe import CARD_FILE, track_model, train_model

# the quickstart's budget on top of the preset (any of them can be overridden again)
QUICKSTART_OVERRIDES = ["finetune.half_lives=[null]", "finetune.ensemble=1", "finetune.max_epochs=15"]


def run_quickstart(out: str | Path, entities: int = 240, seed: int = 0, config: str = "compact", overrides: list[str] | None = None, track: bool = True, progress: Any = None) -> dict[str, Any]:
    """Run the quickstart in ``out``; with ``track`` the run and model go to ``out/mlflow.db``
    (registered as ``ejc-quickstart``)."""
    t0 = time.perf_counter()
    out = Path(out)
    synth = write_synth(out / "synth", num_entities=entities, seed=seed)
    ing = ingest(out / "synth" / "events.parquet", out / "ingested", format="parquet")
    cfg = load_config(config, [f"train.seed={seed}", *QUICKSTART_OVERRIDES, *(overrides or [])])
    seqs, _ = load_sequences(out / "ingested", cfg.train.min_events)
    model_dir = train_model(cfg, seqs, out / "model", progress=progress, command=["ejc", "quickstart", "--out", str(out)])
    mlflow_info = None
    if track:
        from ejc.train.mlflow_tracker import MLflowTracker, default_tracking_uri

        tracker = MLflowTracker(default_tracking_uri(out), experiment="ejc-quickstart", run_name="quickstart")
        status = "FAILED"
        try:
            info = track_model(tracker, model_dir, cfg, "ejc-quickstart")
            status = "FINISHED"
        finally:
            tracker.finish(status)
        mlflow_info = {"tracking_uri": tracker.tracking_uri, "run_id": tracker.run_id, **info}

    model = EventJEPA.from_pretrained(model_dir)  # what users load: the directory on disk
    probe, chance = synthetic_class_probe(model, seqs, out / "synth" / "truth.json", seed)
    card = json.loads((model_dir / CARD_FILE).read_text())
    return {
        "synth": synth,
        "ingest": ing.report.to_dict(),
        "model": str(model_dir),
        "train": {"seconds": card["train_seconds"], "holdout": card["holdout"]["shipped"], "members": len(card["members"]), "pretrain_steps": cfg.train.steps},
        "probe_accuracy_entity_class": probe,
        "chance": chance,
        "anomaly_thresholds": {"event": card["calibration"]["event_threshold"], "sequence": card["calibration"]["sequence_threshold"], "detector": card["detector"]["threshold"]},
        "mlflow": mlflow_info,
        "seconds": round(time.perf_counter() - t0, 1),
    }


__all__ = ["QUICKSTART_OVERRIDES", "run_quickstart"]
