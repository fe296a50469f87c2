"""``ejc evaluate log-parsing``: grouping accuracy (GA) and parsing accuracy (PA) of ejc's templates
and of Drain3 with its default settings, in the same run, on a loghub-style benchmark file.

ejc's row is the shipped command: ``ejc logs parse`` (:func:`ejc.logs.cli.parse_file`) on the
*raw* lines (``X_2k.log``), as users run it; the metrics are computed from the CSV it wrote
(``WORK/ejc_parsed.csv``), so they can be recomputed from that file. Drain3 (defaults: ``sim_th``
0.4, ``depth`` 4, no masking) runs twice: ``drain3`` on the message ejc's parser extracted (the
header removed by ejc; ``WORK/drain3_parsed.csv``) and ``drain3_content`` on the ground truth's
``Content`` column.

- **GA**: a line is correct when its predicted group holds exactly the lines of its true group
  (``EventId``); the loghub benchmark's metric.
- **PA**: a line is correct when its group's final template equals the ground truth's
  ``EventTemplate`` after :func:`normalise_template` on both; ``parsing_accuracy_strict`` uses
  only steps 1, 3 and 4 of that normalisation (``<*>`` runs glued by punctuation stay apart);
  ``parsing_accuracy_token`` is the lenient form (``token=True``): a whitespace token holding a
  variable counts as one variable, so ``msra-sa-<*>`` = ``<*>`` (a token split differently is
  no error there, a constant word taken for a variable or the reverse still is).
"""

from __future__ import annotations

import csv
import functools
import re
import time
from collections import defaultdict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from ejc.errors import EjcError, ReaderError

_MASKS = re.compile(r"<(?:TIME|UUID|MAC|IP|EMAIL|URL|HOST|PATH|HEX|NUM|\*)>")
_GLUED = re.compile(r"<\*>(?:[.:/,_-]*<\*>)+")
_ADJACENT = re.compile(r"(?:<\*>)+")
_SPACED = re.compile(r"<\*>(?: <\*>)+")


def normalise_template(template: str, strict: bool = False, token: bool = False) -> str:
    """The form templates are compared in: (1) every mask token (``<NUM>``, ``<IP>``, ...) and
    ``<*>`` -> ``<*>``; (2) unless ``strict``, a run of ``<*>`` glued by ``.`` ``:`` ``/`` ``,``
    ``-`` ``_`` only (``<*>.<*>``, a float in loghub's ground truth; ``<*>:<*>``, IP and port) ->
    one ``<*>``; with ``token``, every whitespace token holding a ``<*>`` -> ``<*>``; (3) directly
    adjacent ``<*><*>`` (also ``<*> <*>`` with ``token``) -> ``<*>``; (4) whitespace collapsed to
    single spaces, ends stripped."""
    t = _MASKS.sub("<*>", template or "")
    if token:
        t = " ".join("<*>" if "<*>" in w else w for w in t.split())
        t = _SPACED.sub("<*>", t)
    elif not strict:
        t = _GLUED.sub("<*>", t)
    t = _ADJACENT.sub("<*>", t)
    return " ".join(t.split())


def grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Share of lines whose predicted group is exactly their true group (loghub GA)."""
    if len(predicted) != len(truth):
        raise EjcError(f"{len(predicted)} predicted groups for {len(truth)} lines: give one group per line")
    if not truth:
        return float("nan")
    pred_groups: dict[Hashable, set[int]] = defaultdict(set)
    true_groups: dict[Hashable, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth)):
        pred_groups[p].add(i)
        true_groups[t].add(i)
    correct = 0
    for members in true_groups.values():
        preds = {predicted[i] for i in members}
        if len(preds) == 1 and pred_groups[next(iter(preds))] == members:
            correct += len(members)
    return correct / len(truth)


def parsing_accuracy(predicted: Sequence[str | None], truth: Sequence[str], strict: bool = False, token: bool = False) -> float:
    """Share of lines whose template equals the true one after :func:`normalise_template`."""
    if len(predicted) != len(truth):
        raise EjcError(f"{len(predicted)} predicted templates for {len(truth)} lines: give one template per line")
    if not truth:
        return float("nan")
    norm = functools.lru_cache(maxsize=None)(lambda x: normalise_template(x, strict, token))
    ok = sum(norm(p or "") == norm(t) for p, t in zip(predicted, truth))
    return ok / len(truth)


def read_truth(path: str | Path) -> dict[str, list[str]]:
    """A loghub ``X.log_structured.csv``: its columns (``EventId``, ``EventTemplate``,
    ``Content``, ... ) as lists of strings, in line order."""
    p = Path(path)
    if not p.is_file():
        raise ReaderError(p, "no such file; give the loghub ground truth X_2k.log_structured.csv")
    with p.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    if not rows or "EventId" not in rows[0]:
        raise ReaderError(p, "has no EventId column; give a loghub X_2k.log_structured.csv (LineId, ..., EventId, EventTemplate)")
    cols = {k: [r.get(k) or "" for r in rows] for k in rows[0]}
    cols.setdefault("EventTemplate", [""] * len(rows))
    return cols


def scores(ids: Sequence[Hashable], templates: Sequence[str | None], truth: dict[str, list[str]]) -> dict[str, float]:
    """GA, PA and its strict and token-level forms of one method against a :func:`read_truth`."""
    return {
        "grouping_accuracy": grouping_accuracy(ids, truth["EventId"]),
        "parsing_accuracy": parsing_accuracy(templates, truth["EventTemplate"]),
        "parsing_accuracy_strict": parsing_accuracy(templates, truth["EventTemplate"], strict=True),
        "parsing_accuracy_token": parsing_accuracy(templates, truth["EventTemplate"], token=True),
    }


def read_parsed(path: str | Path) -> tuple[list[str], list[str]]:
    """An ``ejc logs parse`` CSV (``line,template_id,template``) -> ``(ids, templates)`` in line
    order (strings; ``""`` for a line without a template)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["template_id"] for r in rows], [r["template"] for r in rows]


def write_parsed(path: str | Path, ids: Sequence[Hashable], templates: Sequence[str]) -> Path:
    """Per-line assignments in the ``ejc logs parse`` CSV layout (1-based ``line``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["line", "template_id", "template"])
        w.writerows((i, tid, t) for i, (tid, t) in enumerate(zip(ids, templates), 1))
    return p


def extract_messages(lines: Sequence[bytes], fmt: str = "auto") -> tuple[list[str], dict[str, int]]:
    """The message ejc's parser takes out of each raw line (what templates are mined on), and the
    lines per format."""
    from ejc.logs.parse import LogParser

    parser = LogParser(fmt)
    return [parser.parse(b, i).message for i, b in enumerate(lines, 1)], parser.counts


def run_ejc(lines: Sequence[bytes], fmt: str = "auto") -> dict[str, Any]:
    """ejc in memory on raw lines (decode, parse, mask, mine; what ``ejc logs parse`` does without
    the file I/O): per-line ids, final templates, messages, seconds, formats, template count."""
    from ejc.logs.mine import template_lines
    from ejc.logs.parse import LogParser
    from ejc.logs.templates import TemplateMiner

    parser, miner = LogParser(fmt), TemplateMiner()
    t0 = time.perf_counter()
    out = list(template_lines(lines, parser, miner))
    seconds = time.perf_counter() - t0
    final = miner.templates()
    ids = [r.template_id for r in out]
    return {"ids": ids, "templates": [final[i] for i in ids], "messages": [r.record.message for r in out],
            "seconds": seconds, "formats": parser.counts, "n_templates": len(miner)}


def run_drain3(messages: Sequence[str], **settings: Any) -> dict[str, Any]:
    """Drain3 with its default settings (``TemplateMinerConfig()``: no masking, no .ini file;
    profiling off, which only prints timings): per-line ids, final templates, seconds.
    ``settings`` override config attributes (``drain_depth=8``) for ablations."""
    from drain3 import TemplateMiner as Drain3Miner
    from drain3.template_miner_config import TemplateMinerConfig

    cfg = TemplateMinerConfig()
    cfg.profiling_enabled = False
    for k, v in settings.items():
        if not hasattr(cfg, k):
            raise EjcError(f"Drain3 has no setting {k!r}")
        setattr(cfg, k, v)
    miner = Drain3Miner(config=cfg)
    t0 = time.perf_counter()
    ids = [miner.add_log_message(m)["cluster_id"] for m in messages]
    seconds = time.perf_counter() - t0
    final = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return {"ids": ids, "templates": [final[i] for i in ids], "seconds": seconds, "n_templates": len(final)}


def evaluate_log_parsing(log: str | Path, truth_path: str | Path, work: str | Path, fmt: str = "auto") -> tuple[dict[str, dict[str, float]], float, dict[str, Any]]:
    """``(metrics, ejc seconds, details)`` for one loghub system: ``metrics`` has ``ejc`` (scored
    from ``WORK/ejc_parsed.csv``, written by ``ejc logs parse``), ``drain3`` (on ejc's extracted
    messages; ``WORK/drain3_parsed.csv``) and ``drain3_content`` (on the ``Content`` column), each
    with GA, PA (plain, strict, token), template count and lines per second."""
    from ejc.logs.cli import parse_file
    from ejc.logs.mine import read_lines

    lines = list(read_lines(log))
    truth = read_truth(truth_path)
    n = len(lines)
    if n != len(truth["EventId"]):
        raise EjcError(f"{log} has {n} lines but {truth_path} has {len(truth['EventId'])} rows: give the log and its own ground truth")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    parsed = work / "ejc_parsed.csv"
    summary = parse_file(Path(log), parsed, fmt=fmt)
    ids, templates = read_parsed(parsed)
    if len(ids) != n:
        raise EjcError(f"internal: {parsed} has {len(ids)} rows for {n} lines")
    messages, formats = extract_messages(lines, fmt)
    base = run_drain3(messages)
    write_parsed(work / "drain3_parsed.csv", base["ids"], base["templates"])
    content = truth.get("Content")
    base_c = run_drain3(content) if content is not None else None

    def row(ids: Sequence[Hashable], templates: Sequence[str], n_templates: int, seconds: float) -> dict[str, float]:
        return {**scores(ids, templates, truth), "templates": n_templates, "lines_per_s": n / max(seconds, 1e-9)}

    metrics = {"ejc": row(ids, templates, len(set(ids)), summary["seconds"]),
               "drain3": row(base["ids"], base["templates"], base["n_templates"], base["seconds"])}
    if base_c is not None:
        metrics["drain3_content"] = row(base_c["ids"], base_c["templates"], base_c["n_templates"], base_c["seconds"])
    from ejc.logs.templates import MinerConfig

    details: dict[str, Any] = {
        "lines": n,
        "true_templates": len(set(truth["EventId"])),
        "formats": formats,
        "parse_issues": summary.get("issues"),
        "ejc": {"method": "`ejc logs parse` from raw bytes: decode, parse, mask, mine (one default configuration)",
                "miner_config": MinerConfig().to_dict(), "parsed_csv": str(parsed), "lines_per_s": "end to end: read, parse, mine, write the CSV"},
        "drain3": {"method": "drain3-improved defaults (sim_th 0.4, depth 4, no masking) on the message ejc's parser extracted",
                   "parsed_csv": str(work / "drain3_parsed.csv"), "lines_per_s": "add_log_message only, messages in memory"},
        "drain3_content": {"method": "the same on the ground truth's Content column"},
        "pa_normalisation": "mask tokens and <*> -> <*>; <*> runs glued by .:/,_- -> <*> (not in strict); adjacent <*> collapsed; whitespace collapsed; token: a whitespace token holding <*> -> <*>",
    }
    if content is not None:
        details["message_equals_content"] = sum(m == c.strip() for m, c in zip(messages, content)) / max(n, 1)
    return metrics, float(summary["seconds"]), details


def run_log_parsing(log: str | Path, truth_path: str | Path, work: str | Path, fmt: str = "auto", dataset: str | None = None) -> dict[str, Any]:
    """The ``ejc evaluate log-parsing`` result record (see :mod:`ejc.eval.report`)."""
    from ejc.eval.report import make_result

    metrics, seconds, details = evaluate_log_parsing(log, truth_path, work, fmt)
    return make_result("log-parsing", dataset or Path(log).name, metrics, seconds, **details)


def add_log_parsing_task(tasks: Any) -> None:
    """Register ``ejc evaluate log-parsing`` on the evaluate subparsers."""
    from ejc.logs.parse import FORMATS

    q = tasks.add_parser("log-parsing", help="loghub parsing benchmark: grouping and parsing accuracy of `ejc logs parse` beside Drain3 defaults, same run")
    q.add_argument("--input", required=True, type=Path, help="raw log file (e.g. loghub Linux_2k.log)")
    q.add_argument("--truth", required=True, type=Path, help="its ground truth, loghub X_2k.log_structured.csv (EventId, EventTemplate, Content per line)")
    q.add_argument("--out", required=True, type=Path, help="result JSON file")
    q.add_argument("--work", type=Path, default=None, help="directory for the per-line CSVs of ejc and Drain3 (default: OUT's name + '.work' beside --out)")
    q.add_argument("--format", default="auto", choices=("auto",) + tuple(FORMATS), help="line format (default: detected)")
    q.add_argument("--dataset", default=None, help="name shown in the result (default: the input file name)")
    q.set_defaults(func=_run, task_fn=task_log_parsing, tracking_uri=None, plot=None)


def task_log_parsing(args: Any) -> dict[str, Any]:
    """The record of ``ejc evaluate log-parsing ARGS`` (also what ``evaluate_from_argv`` returns)."""
    work = args.work if args.work is not None else args.out.with_name(args.out.stem + ".work")
    return run_log_parsing(args.input, args.truth, work, args.format, args.dataset)


def _run(args: Any) -> int:
    import json
    import sys

    from ejc.eval.report import metrics_table, write_result

    result = task_log_parsing(args)
    write_result(result, args.out)
    print(metrics_table(result), file=sys.stderr, flush=True)  # for people; the record below is for programs
    print(json.dumps(result), flush=True)
    return 0


__all__ = [
    "add_log_parsing_task", "evaluate_log_parsing", "extract_messages", "grouping_accuracy", "normalise_template", "parsing_accuracy",
    "read_parsed", "read_truth", "run_drain3", "run_ejc", "run_log_parsing", "scores", "task_log_parsing", "write_parsed",
]
