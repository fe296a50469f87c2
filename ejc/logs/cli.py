"""``ejc logs {parse,train,stream,process}``: log files on the command line.

``parse`` writes the template of every line (``line,template_id,template``), mined on the file
itself or matched against a trained model's templates; the model commands live in
:mod:`ejc.logs.commands`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from array import array
from pathlib import Path
from typing import Any



def add_logs_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ejc logs`` and its subcommands on the top-level subparsers."""
    from ejc.logs.commands import add_model_commands
    from ejc.logs.parse import FORMATS

    p = sub.add_parser("logs", help="log files: templates, anomaly model, streaming alerts")
    tasks = p.add_subparsers(dest="logs_command", required=True)
    q = tasks.add_parser("parse", help="the template of every line of a log file, as CSV")
    q.add_argument("--input", required=True, type=Path, help="log file")
    q.add_argument("--out", required=True, type=Path, help="CSV to write: line,template_id,template (1-based line numbers; every line, empty ones included)")
    q.add_argument("--model", type=Path, default=None, help="directory from `ejc logs train`: match its templates (unseen lines get an empty template_id) instead of mining on the file")
    q.add_argument("--format", default="auto", choices=("auto",) + tuple(FORMATS), help="line format (default: detected; with --model, the model's)")
    q.set_defaults(func=_cmd_parse)
    add_model_commands(tasks)


def _cmd_parse(args: argparse.Namespace) -> int:
    print(json.dumps(parse_file(args.input, args.out, model_dir=args.model, fmt=args.format)), flush=True)
    return 0


def parse_file(src: Path, out: Path, model_dir: Path | None = None, fmt: str = "auto") -> dict[str, Any]:
    """``ejc logs parse`` without printing: writes ``out`` atomically, returns the summary
    (lines, lines per format, templates, bad-input counts, unseen lines when matching, seconds).
    With ``--model`` nothing is learned: the templates are the model's, and the model is left
    unchanged."""
    from ejc.logs.mine import read_lines, template_lines
    from ejc.logs.parse import LogParser
    from ejc.logs.templates import TemplateMiner

    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    if model_dir is not None:
        from ejc.logs.detector import LogModel

        model = LogModel.load(model_dir)
        miner, learn = model.miner, False
        parser = LogParser(model.format if fmt == "auto" else fmt)
    else:
        miner, learn = TemplateMiner(), True
        parser = LogParser(fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    ids = array("q")  # one template id a line (-1: none), 8 bytes a line; line numbers are 1..n
    try:
        for tr in template_lines(read_lines(src), parser, miner, learn=learn):
            ids.append(-1 if tr.template_id is None else tr.template_id)
        # templates generalise while mining: write each line's final template, not the one it
        # had when it was read
        final = miner.templates()
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["line", "template_id", "template"])
            for line_no, tid in enumerate(ids, 1):
                w.writerow([line_no, "", ""] if tid < 0 else [line_no, tid, final.get(tid, "")])
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    n = len(ids)
    unseen = ids.count(-1)
    summary: dict[str, Any] = {"input": str(src), "out": str(out), "lines": n, "formats": parser.counts,
                               "templates": len(set(ids) - {-1}), "issues": {k: v for k, v in parser.issues.items() if v}}
    if model_dir is not None:
        summary["unseen_lines"] = unseen
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    if n == 0:
        print(f"ejc logs parse: warning: {src} is empty", file=sys.stderr)
    return summary


__all__ = ["add_logs_commands", "parse_file"]
