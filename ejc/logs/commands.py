"""``ejc logs train | stream | process``: the log anomaly model on the command line.

- ``train`` parses, mines templates, learns line statistics (:class:`~ejc.logs.detector.LogModel`)
  and, unless ``--no-event-model``, trains the ``ejc train`` recipe on the per-session template
  sequences (``MODEL/event_model``); one JSON summary line.
- ``stream`` reads standard input line by line and writes each alert as soon as its line is
  scored (flushed: it works behind ``tail -f``); EOF, SIGINT and a closed pipe end it cleanly.
- ``process`` scores a file in batch: ``--output`` alerts (JSON list), ``--scores`` every line,
  ``--plot`` a timeline.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ejc.errors import EjcError


def add_model_commands(tasks: argparse._SubParsersAction) -> None:
    """Register ``train``, ``stream`` and ``process`` on the ``ejc logs`` subparsers."""
    from ejc.logs.parse import FORMATS

    q = tasks.add_parser("train", help="learn templates, line statistics and the event model from log files")
    q.add_argument("--input", required=True, nargs="+", type=Path, help="log file(s) or directories (every file under them, sorted), read in order")
    q.add_argument("--out", required=True, type=Path, help="model directory to create (must not exist or be empty)")
    q.add_argument("--format", default="auto", choices=("auto",) + tuple(FORMATS), help="line format (default: detected per input)")
    q.add_argument("--session-key", default=None, metavar="REGEX", help="lines whose raw text matches REGEX form one sequence per match (its first group if any), e.g. 'blk_-?\\d+'; default: one sequence per source (host/program)")
    q.add_argument("--warmup", type=float, default=0.2, help="first fraction of the lines only learned from; every later line is scored by the lines before it, which picks the n-gram order and calibrates the threshold (default 0.2)")
    q.add_argument("--threshold", type=float, default=None, help="the model's default alert threshold in robust sigmas (default 4.0)")
    q.add_argument("--no-event-model", action="store_true", help="skip the ejc train recipe on the template sequences (MODEL/event_model)")
    q.add_argument("--config", default="compact", help="preset or YAML file of the event model (default compact)")
    q.add_argument("-o", "--override", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="event-model config overrides, after the quickstart budget (ejc.quickstart.QUICKSTART_OVERRIDES)")
    q.set_defaults(func=_cmd_train)

    q = tasks.add_parser("stream", help="score standard input line by line; write alerts as they happen")
    q.add_argument("--model", required=True, type=Path, help="directory from `ejc logs train`")
    _threshold_options(q)
    q.add_argument("--json", action="store_true", help="one JSON object per alert (default: one readable line)")
    q.add_argument("--update", action="store_true", help="learn templates and counts online from the stream")
    q.set_defaults(func=_cmd_stream)

    q = tasks.add_parser("process", help="score a log file in batch: alerts, per-line scores, timeline plot")
    q.add_argument("--input", required=True, type=Path, help="log file")
    q.add_argument("--model", required=True, type=Path, help="directory from `ejc logs train`")
    q.add_argument("--output", required=True, type=Path, help="alerts as a JSON list (each with `line`, the 1-based line number)")
    q.add_argument("--scores", type=Path, default=None, help="also write every line's `line,score,is_anomaly` as CSV")
    q.add_argument("--plot", type=Path, default=None, metavar="DIR", help="also write DIR/timeline.png (score over time, threshold, alerts)")
    _threshold_options(q)
    q.add_argument("--update", action="store_true", help="learn templates and counts online while scoring")
    q.set_defaults(func=_cmd_process)


def _threshold_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("--threshold", default="auto", help="alert threshold in robust sigmas of the score, or 'auto' (the model's default, 4.0 unless trained otherwise)")
    q.add_argument("--no-adapt", action="store_true", help="keep the calibration's median and scale (default: follow the stream's own after a warm-up of 500 lines)")


def _sigmas(args: argparse.Namespace) -> float | None:
    if args.threshold == "auto":
        return None
    try:
        v = float(args.threshold)
    except ValueError:
        raise EjcError(f"--threshold must be a number of robust sigmas or 'auto', got {args.threshold!r}") from None
    if not v == v or v in (float("inf"), float("-inf")):
        raise EjcError(f"--threshold must be finite, got {args.threshold!r}")
    return v


def _print_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, default=str), flush=True)


def input_files(paths: list[Path]) -> list[Path]:
    """Files of ``paths`` in order (a directory: every regular file under it, sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        elif p.is_file():
            out.append(p)
        else:
            raise EjcError(f"{p}: no such file or directory")
    if not out:
        raise EjcError(f"no log file under {', '.join(map(str, paths))}")
    return out


def read_lines(files: list[Path]) -> Iterator[bytes]:
    """Raw lines of ``files`` (bytes, newline kept off), file after file."""
    for f in files:
        with open(f, "rb") as fh:
            for raw in fh:
                yield raw.rstrip(b"\r\n")


# ----------------------------------------------------------------------------------------------
# train


def _cmd_train(args: argparse.Namespace) -> int:
    _print_json(train_logs(args.input, args.out, fmt=args.format, session_key=args.session_key, warmup=args.warmup, threshold=args.threshold,
                           event_model=not args.no_event_model, config=args.config, overrides=args.overrides))
    return 0


def train_logs(inputs: list[Path], out: Path, fmt: str = "auto", session_key: str | None = None, warmup: float = 0.2, threshold: float | None = None,
               event_model: bool = True, config: str = "compact", overrides: list[str] | None = None) -> dict[str, Any]:
    """``ejc logs train`` without printing; returns the summary."""
    from tqdm import tqdm

    from ejc.logs.detector import EVENT_MODEL_DIR, LogModel

    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EjcError(f"{out} exists and is not empty; pass a new --out directory (a trained model is never overwritten)")
    files = input_files(list(inputs))
    bar = tqdm(desc="ejc logs train: lines", unit=" lines", file=sys.stderr, mininterval=1.0, disable=None)

    def lines() -> Iterator[bytes]:
        for raw in read_lines(files):
            bar.update(1)
            yield raw

    model = LogModel.train(lines(), fmt=fmt, session_key=session_key, warmup=warmup)
    bar.close()
    if threshold is not None:
        model.default_sigmas = float(threshold)
    tmp = out.parent / f".{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp)
    summary: dict[str, Any] = {"model": str(out), "inputs": [str(f) for f in files], **model.summary}
    lines_total = max(1, model.summary["lines"])
    summary["parsed_share"] = {k: round(v / lines_total, 4) for k, v in model.summary["formats"].items()}
    summary["calibration"] = {k: model.calibration[k] for k in ("median", "scale", "ngram_order", "calibration_lines", "calibration_alert_rate_at_default")}
    if event_model:
        summary["event_model"] = _train_event_model(model, files, tmp / EVENT_MODEL_DIR, config, overrides or [])
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    if isinstance(summary.get("event_model"), dict) and "model" in summary["event_model"]:
        summary["event_model"]["model"] = str(out / EVENT_MODEL_DIR)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def _train_event_model(model: Any, files: list[Path], out: Path, config: str, overrides: list[str]) -> dict[str, Any]:
    """The ``ejc train`` recipe on one template sequence per session (types ``T<id>``, line times)."""
    import numpy as np

    from ejc.config import load_config
    from ejc.data.sequence import EventSequence
    from ejc.logs.detector import compile_session_key, session_of
    from ejc.logs.parse import LogParser
    from ejc.quickstart import QUICKSTART_OVERRIDES
    from ejc.train.recipe import train_model

    parser = LogParser(model.format)
    pattern = compile_session_key(model.session_key)
    sessions: dict[str, tuple[list[str], list[float]]] = {}
    for i, raw in enumerate(read_lines(files), 1):
        rec = parser.parse(LogParser.decode(raw), i)
        cid, _ = model.miner.match(rec.message)
        types, times = sessions.setdefault(session_of(rec, pattern), ([], []))
        types.append(f"T{cid}" if cid is not None else "<unseen>")
        times.append(rec.time if rec.time is not None else np.nan)
    if len(sessions) < 2:
        return {"skipped": f"{len(sessions)} session(s): the recipe needs at least 2 (use --session-key to cut sessions)"}
    seqs = []
    for key, (types, times) in sessions.items():
        ts = np.asarray(times, np.float64)
        seqs.append(EventSequence(timestamps=None if not np.isfinite(ts).any() else ts, modality="log", event_types=types, id=key))
    cfg = load_config(config, [*QUICKSTART_OVERRIDES, *overrides])
    say = lambda m: print(f"ejc logs train: {m}", file=sys.stderr, flush=True)  # noqa: E731
    d = train_model(cfg, seqs, out, progress=say, command=["ejc", "logs", "train"])
    card = json.loads((d / "card.json").read_text())
    return {"model": str(d), "sessions": len(seqs), "holdout": card["holdout"]["shipped"], "train_seconds": card["train_seconds"]}


# ----------------------------------------------------------------------------------------------
# stream


def _cmd_stream(args: argparse.Namespace) -> int:
    from ejc.logs.detector import LogModel

    model = LogModel.load(args.model)
    scorer = model.scorer(sigmas=_sigmas(args), adaptive=not args.no_adapt, update=args.update)
    stdin = sys.stdin.buffer
    t0 = time.perf_counter()
    try:
        for raw in iter(stdin.readline, b""):
            s = scorer.score_line(raw)
            if s.is_alert:
                if args.json:
                    sys.stdout.write(json.dumps(s.alert()) + "\n")
                else:
                    sys.stdout.write(f"line {s.record.line_no}  score {s.score:.2f} > {s.threshold:.2f}  {s.alert()['reason']}  | {s.record.raw[:300]}\n")
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep Python from complaining at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    print(json.dumps({"lines": scorer.lines, "alerts": scorer.alerts, "seconds": round(time.perf_counter() - t0, 2)}), file=sys.stderr, flush=True)
    return 0


# ----------------------------------------------------------------------------------------------
# process


def _cmd_process(args: argparse.Namespace) -> int:
    _print_json(process_file(args.input, args.model, args.output, args.scores, args.plot, _sigmas(args), not args.no_adapt, args.update))
    return 0


def process_file(src: Path, model_dir: Path, output: Path, scores: Path | None = None, plot: Path | None = None, sigmas: float | None = None,
                 adaptive: bool = True, update: bool = False) -> dict[str, Any]:
    """``ejc logs process`` without printing; returns the summary."""
    from tqdm import tqdm

    from ejc.logs.detector import LogModel

    t0 = time.perf_counter()
    if not Path(src).is_file():
        raise EjcError(f"{src}: no such file")
    model = LogModel.load(model_dir)
    scorer = model.scorer(sigmas=sigmas, adaptive=adaptive, update=update)
    alerts: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    series: list[tuple[float, float, float, bool]] = []  # (time or line, score, threshold, alert)
    score_fh = open(scores, "w", newline="") if scores is not None else None
    try:
        writer = csv.writer(score_fh) if score_fh is not None else None
        if writer is not None:
            writer.writerow(["line", "score", "is_anomaly"])
        for i, raw in enumerate(tqdm(read_lines([Path(src)]), desc="ejc logs process", unit=" lines", file=sys.stderr, mininterval=1.0, disable=None), 1):
            s = scorer.score_line(raw, i)
            if writer is not None:
                writer.writerow([i, f"{s.score:.4f}", int(s.is_alert)])
            if s.is_alert:
                a = s.alert()
                alerts.append(a)
                reasons[max(s.parts, key=lambda k: s.parts[k])] += 1
            if plot is not None:
                series.append((s.record.time if s.record.time is not None else float(i), s.score, s.threshold, s.is_alert))
    finally:
        if score_fh is not None:
            score_fh.close()
    tmp = Path(output).with_name(f".{Path(output).name}.tmp")
    tmp.write_text(json.dumps(alerts, indent=1))
    os.replace(tmp, output)
    scored_seconds = time.perf_counter() - t0  # read, parse, template, score, write; not the plot
    summary: dict[str, Any] = {"input": str(src), "model": str(model_dir), "lines": scorer.lines, "alerts": len(alerts), "alerts_by_main_component": dict(reasons),
                               "parsed": scorer.parser.counts, "output": str(output)}
    if scores is not None:
        summary["scores"] = str(scores)
    if plot is not None:
        summary["plot"] = str(_timeline(series, Path(plot), Path(src).name))
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["lines_per_second"] = round(scorer.lines / scored_seconds, 1) if scored_seconds > 0 else None
    return summary


def _timeline(series: list[tuple[float, float, float, bool]], out_dir: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    a = np.array([(x, s, t, float(al)) for x, s, t, al in series]) if series else np.zeros((0, 4))
    fig, ax = plt.subplots(figsize=(10, 3.5))
    if len(a):
        ax.plot(a[:, 0], a[:, 1], lw=0.6, color="0.4", label="line score")
        ax.plot(a[:, 0], a[:, 2], lw=1.0, color="tab:orange", label="threshold")
        hit = a[:, 3] > 0
        ax.scatter(a[hit, 0], a[hit, 1], s=10, color="tab:red", label=f"alerts ({int(hit.sum())})", zorder=3)
    ax.set_xlabel("time (unix s) or line")
    ax.set_ylabel("score (nats)")
    ax.set_title(f"ejc logs process: {title}")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = out_dir / "timeline.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["add_model_commands", "input_files", "process_file", "read_lines", "train_logs"]
