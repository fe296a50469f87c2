"""``ejc evaluate log-anomaly``: per-line alerts on a labelled log, through the shipped commands.

Protocol (the data README's BGL_2k one by default): the first ``train_fraction`` of the lines (in
file order, i.e. time order) train, labels unused; the rest are scored. ejc's row is ``ejc logs
train`` on the training lines -> MODEL/ on disk -> ``ejc logs process`` of the test lines ->
its ``scores.csv`` (the model's own threshold) — nothing the commands do not ship. Baselines
scored on the same test lines in the same run:

- ``drain3_unseen``: Drain3 with its default settings learns the training messages (our parser's
  message part); a test line no cluster matches is an alert;
- ``rare_template``: ejc's templates; alert when the line's template was seen at most once in
  training (score: ``-log`` of its training frequency);
- ``severity_keyword``: alert when the raw line says FATAL, FAILURE or SEVERE (a grep alert);
- ``deeplog_topg``: DeepLog's rule on ejc's per-source template sequences: alert when the next
  template is not among the ``g = 9`` most frequent after its last ``h = 3`` templates (count
  model with back-off; score: the rank).

Precision, recall and F1 at each method's own threshold, AUROC of its score.
"""

from __future__ import annotations

import csv
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ejc.errors import EjcError

KEYWORDS = ("FATAL", "FAILURE", "SEVERE")


def labels_from_truth(truth: Path, n_lines: int) -> np.ndarray:
    """``[n]`` bool: True where the structured CSV's ``Label`` is not ``-`` (loghub convention)."""
    with open(truth, newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "Label" not in rows[0]:
        raise EjcError(f"{truth}: needs a `Label` column ('-' = normal), as loghub's BGL/Thunderbird structured files have")
    if len(rows) != n_lines:
        raise EjcError(f"{truth}: {len(rows)} rows but the log has {n_lines} lines; pass the structured file of the same log")
    return np.array([r["Label"].strip() != "-" for r in rows])


def binary_scores(y: np.ndarray, alert: np.ndarray, score: np.ndarray | None = None) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    p, r, f, _ = precision_recall_fscore_support(y, alert, average="binary", zero_division=0)
    s = alert.astype(float) if score is None else score
    auroc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) and np.isfinite(s).all() else float("nan")
    return {"precision": float(p), "recall": float(r), "f1": float(f), "auroc": auroc, "alerts": int(alert.sum()), "true_alerts": int(y.sum())}


def run_log_anomaly(src: Path, truth: Path, work: Path, train_fraction: float = 0.5, config: str = "compact", overrides: list[str] | None = None, threshold: float | None = None, event_model: bool = True) -> dict[str, Any]:
    from ejc.eval.report import make_result
    from ejc.logs.commands import process_file, train_logs

    if not 0 < train_fraction < 1:
        raise EjcError(f"--train-fraction must be in (0, 1), got {train_fraction}")
    raw = Path(src).read_bytes().splitlines()
    y_all = labels_from_truth(Path(truth), len(raw))
    cut = int(round(len(raw) * train_fraction))
    if cut < 10 or len(raw) - cut < 1:
        raise EjcError(f"{src}: {len(raw)} lines is too few for a {train_fraction:.0%} train split")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.log").write_bytes(b"\n".join(raw[:cut]) + b"\n")
    (work / "test.log").write_bytes(b"\n".join(raw[cut:]) + b"\n")
    y = y_all[cut:]
    model_dir = work / "model"
    if model_dir.exists():
        import shutil

        shutil.rmtree(model_dir)
    t0 = time.perf_counter()
    trained = train_logs([work / "train.log"], model_dir, event_model=event_model, config=config, overrides=overrides or [])
    train_seconds = time.perf_counter() - t0
    processed = process_file(work / "test.log", model_dir, work / "anomalies.json", work / "scores.csv", work / "plots", sigmas=threshold)
    with open(work / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != len(y):
        raise EjcError(f"internal: scores.csv has {len(rows)} rows for {len(y)} test lines")
    score = np.array([float(r["score"]) for r in rows])
    metrics = {"ejc": binary_scores(y, np.array([r["is_anomaly"] == "1" for r in rows]), score) | {"lines_per_second": processed["lines_per_second"]}}
    metrics.update(_baselines(raw[:cut], raw[cut:], y, model_dir))
    details = {"train_lines": cut, "test_lines": len(raw) - cut, "model_dir": str(model_dir), "train": trained, "process": processed}
    return make_result("log-anomaly", Path(src).name, metrics, train_seconds, **details)


def _baselines(train: list[bytes], test: list[bytes], y: np.ndarray, model_dir: Path) -> dict[str, dict[str, float]]:
    from drain3 import TemplateMiner as Drain3Miner
    from drain3.template_miner_config import TemplateMinerConfig

    from ejc.logs.detector import LogModel, session_of
    from ejc.logs.parse import LogParser

    model = LogModel.load(model_dir)
    parser = LogParser(model.format)
    tr = [parser.parse(LogParser.decode(b), i + 1) for i, b in enumerate(train)]
    te = [parser.parse(LogParser.decode(b), len(train) + i + 1) for i, b in enumerate(test)]
    out: dict[str, dict[str, float]] = {}

    cfg = TemplateMinerConfig()
    cfg.profiling_enabled = False
    d3 = Drain3Miner(config=cfg)
    for r in tr:
        d3.add_log_message(r.message)
    unseen = np.array([d3.match(r.message) is None for r in te])
    out["drain3_unseen"] = binary_scores(y, unseen)

    ids_tr = [model.miner.match(r.message)[0] for r in tr]
    ids_te = [model.miner.match(r.message)[0] for r in te]
    freq = Counter(ids_tr)
    counts = np.array([freq.get(i, 0) if i is not None else 0 for i in ids_te])
    rare_score = -np.log((counts + 0.5) / (len(tr) + 0.5 * (len(freq) + 1)))
    out["rare_template"] = binary_scores(y, counts <= 1, rare_score)

    kw = np.array([any(k in r.raw.upper() for k in KEYWORDS) for r in te])
    out["severity_keyword"] = binary_scores(y, kw)

    out["deeplog_topg"] = _deeplog(tr, ids_tr, te, ids_te, y, session_of, model)
    return out


def _deeplog(tr: list[Any], ids_tr: list[Any], te: list[Any], ids_te: list[Any], y: np.ndarray, session_of: Any, model: Any, h: int = 3, g: int = 9) -> dict[str, float]:
    """DeepLog's top-g rule with a count model of the last ``h`` templates per source (back-off)."""
    from ejc.logs.detector import compile_session_key

    pattern = compile_session_key(model.session_key)
    counts: dict[tuple, Counter] = {}
    hist: dict[str, list] = {}
    for r, t in zip(tr, ids_tr):
        k = session_of(r, pattern)
        prev = hist.setdefault(k, [])
        for j in range(0, h + 1):
            counts.setdefault(tuple(prev[len(prev) - j :]) if j else (), Counter())[t] += 1
        prev.append(t)
        del prev[:-h]
    ranks, alerts = [], []
    for r, t in zip(te, ids_te):
        k = session_of(r, pattern)
        prev = hist.setdefault(k, [])
        cand: list = []
        for j in range(min(h, len(prev)), -1, -1):
            c = counts.get(tuple(prev[len(prev) - j :]) if j else ())
            if c:
                cand += [x for x, _ in c.most_common() if x not in cand]
            if len(cand) >= g:
                break
        rank = cand.index(t) + 1 if (t is not None and t in cand) else len(cand) + 1 + (1 if t is None else 0)
        ranks.append(rank)
        alerts.append(t is None or rank > g)
        prev.append(t)
        del prev[:-h]
    return binary_scores(y, np.array(alerts), np.log(np.array(ranks, float)))




def add_log_anomaly_task(tasks: Any) -> None:
    """Register ``ejc evaluate log-anomaly`` on the evaluate subparsers."""
    q = tasks.add_parser("log-anomaly", help="per-line log alerts: ejc logs train on the first lines, ejc logs process on the rest, beside unseen/rare-template, keyword and DeepLog-style baselines")
    q.add_argument("--input", required=True, type=Path, help="raw log file (e.g. loghub BGL_2k.log)")
    q.add_argument("--truth", required=True, type=Path, help="structured CSV of the same log with a `Label` column ('-' = normal)")
    q.add_argument("--out", required=True, type=Path, help="result JSON file")
    q.add_argument("--train-fraction", type=float, default=0.5, help="first fraction of the lines trained on, labels unused (default 0.5)")
    q.add_argument("--work", type=Path, default=None, help="directory for the split, the model, alerts and scores (default: OUT's name + '.work' beside --out)")
    q.add_argument("--threshold", type=float, default=None, help="alert threshold in robust sigmas (default: the model's own)")
    q.add_argument("--config", default="compact", help="preset of the event model `ejc logs train` trains (default compact)")
    q.add_argument("-o", "--override", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="event-model config overrides")
    q.add_argument("--no-event-model", action="store_true", help="skip the event model (`ejc logs train --no-event-model`); the line scores do not use it, so every metric is the same, only faster")
    q.add_argument("--dataset", default=None, help="name shown in the result (default: the input file name)")
    q.set_defaults(func=_run, task_fn=_task, tracking_uri=None, plot=None)


def _task(args: Any) -> dict[str, Any]:
    """The result record of ``ejc evaluate log-anomaly ARGS`` (``evaluate_from_argv`` calls this)."""
    work = args.work if args.work is not None else args.out.with_name(args.out.stem + ".work")
    result = run_log_anomaly(args.input, args.truth, work, args.train_fraction, args.config, args.overrides, args.threshold, event_model=not args.no_event_model)
    if args.dataset:
        result["dataset"] = args.dataset
    return result


def _run(args: Any) -> int:
    import json
    import sys

    from ejc.eval.report import metrics_table, write_result

    result = _task(args)
    write_result(result, args.out)
    print(metrics_table(result), file=sys.stderr, flush=True)
    print(json.dumps(result), flush=True)
    return 0


__all__ = ["KEYWORDS", "add_log_anomaly_task", "binary_scores", "labels_from_truth", "run_log_anomaly"]
