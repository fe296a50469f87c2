"""The ``ejc`` command line.

Every command prints its result as one JSON line on stdout (progress goes to stderr). Errors a
user can fix (``EjcError``) print one line ``ejc: error: ...`` and exit 2 with no traceback.
Heavy imports (torch, ray) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ejc.errors import EjcError


def _print_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, default=str), flush=True)


# ----------------------------------------------------------------------------------------------
# synth


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic event log with known ground truth")
    p.add_argument("--out", required=True, type=Path, help="output directory (events.parquet, truth.json)")
    p.add_argument("--entities", type=int, default=200, help="number of entities (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    p.add_argument("--cube", action="store_true", help="write cube data instead: entities in two spaces with a planted hierarchy, "
                   "similar and complementary pairs (entities.parquet, events.parquet of sessions, truth.json)")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from ejc.data.synth import write_synth

    if args.entities < 1:
        raise EjcError(f"--entities must be at least 1, got {args.entities}")
    if args.cube:
        from ejc.data.synth_cube import write_synth_cube

        _print_json({"out": str(args.out), **write_synth_cube(args.out, num_entities=args.entities, seed=args.seed)})
        return 0
    summary = write_synth(args.out, num_entities=args.entities, seed=args.seed)
    _print_json({"out": str(args.out), **summary})
    return 0


# ----------------------------------------------------------------------------------------------
# ingest


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    from ejc.data.readers import FORMATS

    p = sub.add_parser("ingest", help="read an event log into the canonical event table (+ quarantine)")
    p.add_argument("src", type=Path, help="source file (csv, parquet, jsonl, xes[.gz], sequences, loghub csv, npz)")
    p.add_argument("--out", required=True, type=Path, help="output directory (events.parquet, quarantine.parquet, report.json)")
    p.add_argument("--format", default="auto", choices=("auto",) + tuple(FORMATS))
    add_reader_options(p)
    p.add_argument("--embed", default="none", help="embed events that have no vector: none, types, text, or a registered embedding type")
    p.add_argument("--text-cache", type=Path, default=None, help="directory of the persistent text-embedding cache (--embed text)")
    p.add_argument("--require-timestamps", action="store_true", help="quarantine events without a timestamp")
    p.add_argument("--chunk-rows", type=int, default=65536, help="records per chunk (bounds memory)")
    p.set_defaults(func=_cmd_ingest)


def add_reader_options(p: argparse.ArgumentParser) -> None:
    """Column-mapping flags shared by every command that reads a source file."""
    p.add_argument("--entity-col", help="column holding the entity / case / session id")
    p.add_argument("--time-col", help="column holding the timestamp")
    p.add_argument("--type-col", help="column holding the event type / activity")
    p.add_argument("--text-col", help="column holding raw text to embed")
    p.add_argument("--label-col", help="column holding evaluation labels")
    p.add_argument("--modality-col", help="column holding the modality name")
    p.add_argument("--embedding-col", help="column holding vectors")
    p.add_argument("--sequence-col", help="'sequences' format: column of space-separated tokens")
    p.add_argument("--entity-pattern", help="regex whose first match in the text gives the entity id")
    p.add_argument("--time-format", help="strptime format of the timestamps (default: ISO 8601, then guessed)")


def mapping_from_args(args: argparse.Namespace) -> Any:
    from ejc.data.readers import ColumnMapping

    return ColumnMapping(
        entity=args.entity_col,
        time=args.time_col,
        type=args.type_col,
        text=args.text_col,
        label=args.label_col,
        modality=args.modality_col,
        embedding=args.embedding_col,
        sequence=args.sequence_col,
        entity_pattern=args.entity_pattern,
    )


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ejc.data.ingest import ingest
    from ejc.data.schema import TableSpec

    opts: dict[str, Any] = {}
    if args.embed == "text" and args.text_cache is not None:
        opts["cache_dir"] = args.text_cache
    result = ingest(
        args.src,
        args.out,
        format=args.format,
        mapping=mapping_from_args(args),
        embed=args.embed,
        spec=TableSpec(require_timestamps=args.require_timestamps, time_format=args.time_format),
        chunk_rows=args.chunk_rows,
        embedder_options=opts,
    )
    _print_json(result.summary())
    return 0


# ----------------------------------------------------------------------------------------------
# pretrain


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="JEPA-pretrain an Event-JEPA model on an event table (single process)")
    p.add_argument("--events", required=True, type=Path, help="event table: events.parquet or a directory from `ejc ingest` / `ejc synth`")
    p.add_argument("--config", default="base", help="preset (tiny, small, base) or YAML file")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.steps=500 model.d_model=64")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, metrics, plots); an existing run resumes")
    p.add_argument("--no-calibrate", action="store_true", help="skip anomaly-threshold calibration on the training data")
    add_tracking_options(p)
    p.add_argument("--debug-steps", type=int, default=None, help="stop after this many steps (smoke test); a later call resumes")
    p.set_defaults(func=_cmd_pretrain)


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///mlflow.db in the working directory)")
    p.add_argument("--experiment", default="ejc", help="MLflow experiment name")
    p.add_argument("--register", default="ejc-event-jepa", metavar="NAME", help="register the final model under this name")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")


def make_tracker(args: argparse.Namespace, run_name: str) -> Any:
    if args.no_track:
        return None
    from ejc.train.mlflow_tracker import MLflowTracker

    return MLflowTracker(args.tracking_uri, experiment=args.experiment, run_name=run_name)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ejc.config import load_config
    from ejc.infer.event_jepa import CALIBRATION_FILE, EventJEPA
    from ejc.train.checkpoint import resolve_checkpoint
    from ejc.train.data import load_sequences
    from ejc.train.loop import pretrain

    cfg = load_config(args.config, args.overrides)
    tracker = make_tracker(args, run_name=args.out.name)
    status = "FAILED"
    try:
        result = pretrain(cfg, args.events, args.out, tracker=tracker, stop_after=args.debug_steps)
        summary = result.summary()
        finished = result.steps >= cfg.train.steps
        if not args.no_calibrate and finished:
            model = EventJEPA.from_pretrained(args.out)
            seqs, _ = load_sequences(args.events, cfg.train.min_events)
            if model.model.heads is not None:
                cal = model.calibrate(seqs, save_to=args.out)
                summary["calibration"] = {"event_threshold": cal.event_threshold, "sequence_threshold": cal.sequence_threshold}
        if tracker is not None:
            summary["mlflow"] = {"tracking_uri": tracker.tracking_uri, "run_id": tracker.run_id}
            if finished:
                ckpt = resolve_checkpoint(args.out)
                if (args.out / CALIBRATION_FILE).is_file():
                    tracker.log_artifact(args.out / CALIBRATION_FILE)
                summary["mlflow"]["model"] = {"name": args.register, "version": tracker.register_model(args.register, ckpt)}
        status = "FINISHED"
    finally:
        if tracker is not None:
            tracker.finish(status)
    _print_json(summary)
    return 0


# ----------------------------------------------------------------------------------------------
# train: the deployable model


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the model users deploy: JEPA pretraining, next-event fine-tuning, ensemble, blend, calibration (choices on a holdout)")
    p.add_argument("--events", required=True, type=Path, help="event table: a directory from `ejc ingest` / `ejc synth`, or events.parquet")
    p.add_argument("--config", default="compact", help="preset (compact, tiny, small, base) or YAML file (default compact)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. finetune.ensemble=1 train.steps=400")
    p.add_argument("--out", required=True, type=Path, help="model directory to create (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: train.seed of the config)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-calibrate", action="store_true", help="skip anomaly-threshold calibration on the training data")
    add_tracking_options(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    _print_json(train_command(args))
    return 0


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """``ejc train`` without printing: train, write MODEL/, track and register; returns the summary
    (``jobs/train.py`` runs this as a Ray task)."""
    from ejc.config import load_config
    from ejc.train.data import load_sequences
    from ejc.train.recipe import track_model, train_model

    overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    cfg = load_config(args.config, overrides)
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise EjcError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    seqs, stats = load_sequences(args.events, cfg.train.min_events)
    if not seqs:
        raise EjcError(f"{args.events}: no entity with at least train.min_events={cfg.train.min_events} events")
    tracker = make_tracker(args, run_name=args.out.name)
    status = "FAILED"
    try:
        say = lambda m: print(f"ejc train: {m}", file=sys.stderr, flush=True)  # noqa: E731
        out = train_model(cfg, seqs, args.out, progress=say, command=["ejc", *getattr(args, "argv", sys.argv[1:])], calibrate=not args.no_calibrate)
        card = json.loads((out / "card.json").read_text())
        summary = {"model": str(out), "data": {**stats, **card["data"]}, "holdout": card["holdout"]["shipped"], "train_seconds": card["train_seconds"]}
        if tracker is not None:
            summary["mlflow"] = {"tracking_uri": tracker.tracking_uri, "run_id": tracker.run_id, **track_model(tracker, out, cfg, args.register)}
        status = "FINISHED"
    finally:
        if tracker is not None:
            tracker.finish(status)
    return summary


# ----------------------------------------------------------------------------------------------
# quickstart


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="synthetic data -> ingest -> ejc train (a small budget) -> probe result, all local; OUT/model is servable")
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="working directory (default runs/quickstart)")
    p.add_argument("--entities", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="compact", help="preset or YAML file (default compact, as ejc train)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, applied after the quickstart's budget (ejc.quickstart.QUICKSTART_OVERRIDES)")
    p.add_argument("--no-track", action="store_true", help="do not log to the local MLflow store (OUT/mlflow.db)")
    p.set_defaults(func=_cmd_quickstart)


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from ejc.quickstart import run_quickstart

    say = lambda m: print(f"ejc quickstart: {m}", file=sys.stderr, flush=True)  # noqa: E731
    _print_json(run_quickstart(args.out, entities=args.entities, seed=args.seed, config=args.config, overrides=args.overrides, track=not args.no_track, progress=say))
    return 0


# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ejc", description="Event-JEPA-Cube: event sequences -> representations, predictions, anomalies, cube")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synth(sub)
    _add_ingest(sub)
    _add_pretrain(sub)
    _add_train(sub)
    _add_quickstart(sub)
    from ejc.cube.cli import add_index_commands

    add_index_commands(sub)
    from ejc.search.cli import add_search_commands

    add_search_commands(sub)
    from ejc.logs.cli import add_logs_commands

    add_logs_commands(sub)
    from ejc.eval.cli import add_evaluate_commands

    add_evaluate_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the exact command, for model cards
    try:
        return int(args.func(args) or 0)
    except EjcError as e:
        msg = str(e).replace("\n", " ")
        print(f"ejc: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ejc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
