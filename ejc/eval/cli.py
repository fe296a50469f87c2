"""``ejc evaluate {next-event,anomaly,probe,retrieval,search,log-anomaly,log-parsing}``: evaluation tasks on the command line.

Each command writes ``--out`` (JSON) and prints the same record as its last stdout line:
``{"task", "dataset", "metrics": {"ejc": {...}, "<baseline>": {...}}, "train_seconds", "machine"}``.
``--plot DIR`` also writes PNG figures. Registered by :func:`add_evaluate_commands`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ejc.errors import EjcError

# task defaults for the model: small and quick on CPU; override with --config / key=value
ANOMALY_OVERRIDES = ["train.steps=300", "train.max_len=128", "train.batch_size=32", "train.warmup_steps=30"]


def add_evaluate_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ejc evaluate`` and its task subcommands on the top-level subparsers."""
    from ejc.cli import add_reader_options

    p = sub.add_parser("evaluate", help="evaluate ejc against baselines measured in the same run (JSON, table, plots)")
    tasks = p.add_subparsers(dest="task", required=True)

    def common(q: argparse.ArgumentParser, default_overrides: list[str], default_config: str = "small") -> None:
        q.add_argument("--config", default=default_config, help=f"model preset (compact, tiny, small, base) or YAML file (default {default_config})")
        q.add_argument("-o", "--override", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=f"config overrides, applied after the task defaults {default_overrides}")
        q.add_argument("--out", required=True, type=Path, help="result JSON file")
        q.add_argument("--plot", type=Path, default=None, metavar="DIR", help="also write PNG figures into DIR")
        q.add_argument("--seed", type=int, default=0, help="random seed; the same seed on CPU gives identical metrics")
        q.add_argument("--dataset", default=None, help="name shown in the result (default: the source file name)")
        q.add_argument("--tracking-uri", default=None, help="log the run to MLflow at this URI (metrics of every method, the record, plots, the model card and MODEL/); off by default")
        q.add_argument("--experiment", default="ejc-evaluate", help="MLflow experiment of the run (with --tracking-uri)")
        q.add_argument("--register", default=None, metavar="NAME", help="also register the trained MODEL/ under NAME (with --tracking-uri; next-event and anomaly)")
        q.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: these small models train fastest and bit-repeatably on one)")

    def reader(q: argparse.ArgumentParser) -> None:
        from ejc.data.readers import FORMATS

        q.add_argument("--format", default="auto", choices=("auto",) + tuple(FORMATS))
        add_reader_options(q)

    q = tasks.add_parser("next-event", help="next type (END included) and time on the Tax et al. 2017 chronological protocol, through the shipped model")
    q.add_argument("src", type=Path, help="event log (any format `ejc ingest` reads) with case ids, types and timestamps")
    reader(q)
    common(q, [], default_config="compact")
    q.add_argument("--test-fraction", type=float, default=1 / 3, help="last fraction of cases (by start time) tested (default 1/3)")
    q.add_argument("--val-fraction", type=float, default=0.2, help="last fraction of training cases the baselines validate on (the model's recipe holds out finetune.val_fraction itself)")
    q.add_argument("--work", type=Path, default=None, help="directory for the trained model(s) (default: OUT's name + '.models' beside --out)")
    q.add_argument("--ablations", action="store_true", help="also train and score the recipe with JEPA off (same steps) and with seeds +1, +2 (3-4x the time)")
    q.set_defaults(func=_run_and_write, task_fn=task_next_event)

    q = tasks.add_parser("anomaly", help="sequence anomaly detection through the shipped model (trained on normal sequences; its own threshold)")
    q.add_argument("--train", required=True, type=Path, help="training sequences (normal, or labelled with --label-col)")
    q.add_argument("--test", type=Path, default=None, help="test sequences labelled in --label-col")
    q.add_argument("--test-normal", type=Path, default=None, help="test sequences that are all normal")
    q.add_argument("--test-abnormal", type=Path, default=None, help="test sequences that are all anomalous")
    q.add_argument("--normal-label", default="0", help="label value of normal rows (default 0)")
    q.add_argument("--work", type=Path, default=None, help="directory for the trained model (default: OUT's name + '.models' beside --out)")
    reader(q)
    common(q, [], default_config="compact")
    q.set_defaults(func=_run_and_write, task_fn=task_anomaly)

    q = tasks.add_parser("probe", help="sequence labels -> logistic-regression probe on pooled representations")
    q.add_argument("src", type=Path, help="event log whose sequences carry labels (--label-col)")
    reader(q)
    common(q, ANOMALY_OVERRIDES)
    q.set_defaults(func=_run_and_write, task_fn=task_probe)

    q = tasks.add_parser("retrieval", help="next-event retrieval among all candidate event types: recall_at_10, mrr")
    q.add_argument("src", type=Path, help="event log (case ids, types, optional timestamps)")
    reader(q)
    common(q, [], default_config="compact")
    q.add_argument("--test-fraction", type=float, default=1 / 3)
    q.add_argument("--val-fraction", type=float, default=0.2)
    q.add_argument("--work", type=Path, default=None, help="directory for the trained model (default: beside --out)")
    q.add_argument("--k", type=int, default=10, help="cut-off of recall@k (reported as recall_at_<k>)")
    q.set_defaults(func=_run_and_write, task_fn=task_retrieval)

    from ejc.eval.search import add_search_task  # snippet search: logic in ejc/eval/search.py

    add_search_task(tasks)
    from ejc.eval.log_anomaly import add_log_anomaly_task  # per-line log alerts: ejc/eval/log_anomaly.py

    add_log_anomaly_task(tasks)
    from ejc.eval.log_parsing import add_log_parsing_task  # loghub template benchmark: ejc/eval/log_parsing.py

    add_log_parsing_task(tasks)


# ----------------------------------------------------------------------------------------------
# helpers


def _config(args: argparse.Namespace, defaults: list[str]) -> Any:
    from ejc.config import load_config

    return load_config(args.config, defaults + list(args.overrides) + ["train.device=cpu"])


def _load(args: argparse.Namespace, path: Path) -> Any:
    from ejc.cli import mapping_from_args
    from ejc.eval.protocol import load_log

    return load_log(path, args.format, mapping_from_args(args), args.time_format)


def _run_and_write(args: argparse.Namespace) -> int:
    from ejc.eval.report import metrics_table, write_result

    result = args.task_fn(args)
    write_result(result, args.out)
    if args.tracking_uri is not None:
        result_tracking = track_evaluation(result, args)
        print(f"ejc evaluate: logged to MLflow run {result_tracking['run_id']} at {args.tracking_uri}", file=sys.stderr, flush=True)
    print(metrics_table(result), file=sys.stderr, flush=True)  # for people; the record below is for programs
    print(json.dumps(result), flush=True)
    return 0


def track_evaluation(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One MLflow run of an evaluation: config params, ``<method>.<metric>`` metrics, the result
    JSON, the plots, the model card and the trained MODEL/ as artifacts; MODEL/ registered under
    ``--register`` when given."""
    import math

    from ejc.train.mlflow_tracker import MLflowTracker

    tracker = MLflowTracker(args.tracking_uri, experiment=args.experiment, run_name=f"{result['task']}:{result['dataset']}")
    status = "FAILED"
    try:
        cfg = (result.get("details") or {}).get("config") or {}
        tracker.log_params({"task": result["task"], "dataset": result["dataset"], **{f"{sec}.{k}": v for sec, vals in cfg.items() if isinstance(vals, dict) for k, v in vals.items()}})
        tracker.log_metrics({f"{m}.{k}": v for m, vals in result["metrics"].items() for k, v in vals.items() if isinstance(v, (int, float)) and math.isfinite(v)} | {"train_seconds": result["train_seconds"]}, 0)
        tracker.log_artifact(args.out)
        if args.plot is not None and Path(args.plot).is_dir():
            tracker.log_artifact(args.plot, "plots")
        d = result.get("details") or {}
        model_dir = (d.get("ejc") or {}).get("model_dir") or d.get("model_dir")
        out: dict[str, Any] = {"run_id": tracker.run_id}
        if model_dir and Path(model_dir).is_dir():
            tracker.log_artifact(Path(model_dir) / "card.json")
            if args.register:
                out["model"] = {"name": args.register, "version": tracker.register_model(args.register, model_dir)}
            else:
                tracker.log_artifact(model_dir, "trained_model")
        status = "FINISHED"
    finally:
        tracker.finish(status)
    return out


def evaluate_from_argv(argv: list[str]) -> dict[str, Any]:
    """Run ``ejc evaluate ARGV`` (e.g. ``["next-event", "log.csv", "--out", "r.json"]``) and return
    its result record without writing ``--out`` (``jobs/evaluate.py`` runs this as a Ray task)."""
    from ejc.cli import build_parser

    args = build_parser().parse_args(["evaluate", *argv])
    return args.task_fn(args)


def _seed(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    if args.threads < 1:
        raise EjcError("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)


def _progress(msg: str) -> None:
    print(f"ejc evaluate: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# commands


def _work_dir(args: argparse.Namespace) -> Path:
    return args.work if args.work is not None else args.out.with_name(args.out.stem + ".models")


def task_next_event(args: argparse.Namespace) -> dict[str, Any]:
    from ejc.eval.next_event import run_next_event
    from ejc.eval.protocol import chronological_split
    from ejc.eval.report import make_result

    _seed(args)
    cfg = _config(args, [f"train.seed={args.seed}"])
    log = _load(args, args.src)
    split = chronological_split(log.sequences, args.test_fraction, args.val_fraction)
    work = _work_dir(args)
    _fresh(work)
    _progress(f"{log.events} events, {split.sizes()}; models go to {work}")
    run = run_next_event(split, cfg, work, _progress, ablations=args.ablations, seeds=(args.seed + 1, args.seed + 2))
    if args.plot is not None:
        from ejc.eval.plots import plot_confusion

        plot_confusion(run.predictions["ejc"], run.targets.types, args.plot / "next_event_confusion.png", "ejc next event (test prefixes, shipped model)")
    return make_result("next_event", args.dataset or args.src.name, run.metrics(), run.train_seconds, data=log.summary(), config=cfg.to_dict(), **run.details)


def _fresh(work: Path) -> None:
    """``work`` must not hold a model yet (a model directory is never overwritten)."""
    if work.exists() and any(work.iterdir()):
        raise EjcError(f"{work} is not empty; remove it or pass another --work directory")


def _labelled(args: argparse.Namespace, path: Path) -> tuple[list[Any], Any]:
    from ejc.eval.anomaly import sequence_labels

    seqs = _load(args, path).sequences
    return seqs, sequence_labels(seqs, args.normal_label)


def task_anomaly(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from ejc.eval.anomaly import run_anomaly
    from ejc.eval.report import make_result

    _seed(args)
    cfg = _config(args, [f"train.seed={args.seed}"])
    if (args.test is None) == (args.test_normal is None and args.test_abnormal is None):
        raise EjcError("give either --test (labels in --label-col) or both --test-normal and --test-abnormal")
    if args.test is None and (args.test_normal is None or args.test_abnormal is None):
        raise EjcError("--test-normal and --test-abnormal go together")
    if args.label_col is not None:
        labelled, y = _labelled(args, args.train)
        train = [s for s, lab in zip(labelled, y) if lab == 0]
        train_anomalous = [s for s, lab in zip(labelled, y) if lab != 0]
    else:
        train, train_anomalous = _load(args, args.train).sequences, []
    if args.test is not None:
        if args.label_col is None:
            raise EjcError("--test needs --label-col naming the label column (or use --test-normal / --test-abnormal)")
        test, labels = _labelled(args, args.test)
    else:
        normal = _load(args, args.test_normal).sequences
        abnormal = _load(args, args.test_abnormal).sequences
        test, labels = normal + abnormal, np.array([0] * len(normal) + [1] * len(abnormal))
    _progress(f"{len(train)} normal (+ {len(train_anomalous)} anomalous, never trained on) training sequences, {len(test)} test sequences ({int(labels.sum())} anomalous); training")
    work = _work_dir(args)
    _fresh(work)
    run = run_anomaly(train, test, labels, cfg, work, train_anomalous, _progress)
    if args.plot is not None:
        from ejc.eval.plots import plot_roc, plot_score_histograms

        scores = {k: d.test_scores for k, d in run.detectors.items()}
        plot_roc(scores, run.labels, args.plot / "anomaly_roc.png")
        plot_score_histograms(scores, run.labels, {k: d.threshold for k, d in run.detectors.items()}, args.plot / "anomaly_scores.png")
    name = args.dataset or args.train.parent.name or args.train.name
    return make_result("anomaly", name, run.metrics(), run.train_seconds, config=cfg.to_dict(), **run.details)


def task_probe(args: argparse.Namespace) -> dict[str, Any]:
    from ejc.eval.probe import run_probe
    from ejc.eval.report import make_result

    _seed(args)
    if args.label_col is None:
        raise EjcError("probe needs --label-col naming the column of sequence labels")
    cfg = _config(args, ANOMALY_OVERRIDES)
    seqs = _load(args, args.src).sequences
    metrics, seconds, details = run_probe(seqs, cfg, args.seed)
    return make_result("probe", args.dataset or args.src.name, metrics, seconds, config=cfg.to_dict(), **details)


def task_retrieval(args: argparse.Namespace) -> dict[str, Any]:
    from ejc.eval.protocol import chronological_split
    from ejc.eval.report import make_result
    from ejc.eval.retrieval import run_retrieval

    _seed(args)
    if args.k < 1:
        raise EjcError("--k must be at least 1")
    cfg = _config(args, [f"train.seed={args.seed}"])
    log = _load(args, args.src)
    split = chronological_split(log.sequences, args.test_fraction, args.val_fraction)
    work = _work_dir(args)
    _fresh(work)
    metrics, seconds, details = run_retrieval(split, cfg, work, args.k, progress=_progress)
    return make_result("retrieval", args.dataset or args.src.name, metrics, seconds, data=log.summary(), **details)


__all__ = ["add_evaluate_commands", "evaluate_from_argv", "task_anomaly", "task_next_event", "task_probe", "task_retrieval"]
