"""The log anomaly model: templates + line statistics + calibration, in one directory.

``LogModel.train(lines)`` parses every line (:class:`~ejc.logs.parse.LogParser`), mines templates
(:class:`~ejc.logs.templates.TemplateMiner`), and learns :class:`~ejc.logs.scoring.LineStats` over
per-source (or per-session) template sequences. Choices are made prequentially: after a warm-up
(the first ``warmup`` fraction of the lines), every training line is scored by what the lines
before it taught, as a stream with ``--update`` would score it; those scores pick the n-gram
order and give the distribution the threshold is calibrated on. Then the model is fitted on
every line. ``LogModel.scorer()`` returns the stateful
:class:`LineScorer` that ``ejc logs stream`` / ``process`` / ``/v1/logs/score`` use.

MODEL/ layout: ``templates/`` (the miner's state), ``log_model.json`` (parser format, session key,
line statistics, calibration, training summary) and, when trained, ``event_model/`` (the ``ejc
train`` recipe on the template sequences: ``EventJEPA.from_pretrained(MODEL / "event_model")``).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ejc.errors import EjcError
from ejc.logs.parse import LogParser, LogRecord
from ejc.logs.scoring import COMPONENTS, SEVERITY_PRIOR, AdaptiveThreshold, LineStats, SourceState, reason, robust_stats
from ejc.logs.templates import TemplateMiner

MODEL_FILE = "log_model.json"
TEMPLATES_DIR = "templates"
EVENT_MODEL_DIR = "event_model"
DEFAULT_SIGMAS = 4.0  # robust sigmas; chosen on splits of the BGL_2k training half (benchmarks/RESULTS.md, "Log anomaly detection")
NGRAM_ORDERS = (1, 2, 3, 4)


def session_of(record: LogRecord, pattern: re.Pattern[str] | None) -> str:
    """The sequence a line belongs to: the session key's match (its first group if it has one)
    in the raw line, else the line's source (``-`` when unknown)."""
    if pattern is not None:
        m = pattern.search(record.raw)
        if m:
            return m.group(1) if m.groups() else m.group(0)
    return record.source or "-"


def compile_session_key(regex: str | None) -> re.Pattern[str] | None:
    if not regex:
        return None
    try:
        return re.compile(regex)
    except re.error as e:
        raise EjcError(f"--session-key {regex!r} is not a valid regular expression: {e}") from e


@dataclass
class Scored:
    """One scored line."""

    record: LogRecord
    template_id: int | None
    template: str | None
    session: str
    score: float
    parts: dict[str, float]
    threshold: float
    is_alert: bool
    new_values: list[str]

    def alert(self) -> dict[str, Any]:
        """The alert object ``ejc logs stream --json`` writes."""
        r = self.record
        return {
            "line": r.line_no,
            "time": r.time,
            "source": r.source,
            "session": self.session,
            "severity": r.severity,
            "raw": r.raw,
            "template_id": self.template_id,
            "template": self.template,
            "score": round(self.score, 4),
            "components": {k: round(v, 4) for k, v in self.parts.items()},
            "threshold": round(self.threshold, 4),
            "reason": self._reason,
        }

    _reason: str = ""


class LineScorer:
    """Scores lines one at a time with bounded per-session state (see :mod:`ejc.logs.scoring`)."""

    def __init__(self, model: LogModel, sigmas: float | None = None, adaptive: bool = True, update: bool = False, max_sources: int = 10_000):
        self.model = model
        self.parser = LogParser(model.format)
        self.update = update
        cal = model.calibration
        self.threshold = AdaptiveThreshold(model.default_sigmas if sigmas is None else sigmas, cal["median"], cal["scale"], adaptive=adaptive)
        self.state = SourceState(model.stats.n, max_sources)
        self._pattern = compile_session_key(model.session_key)
        self._cache: dict[str, tuple[int | None, str | None]] = {}
        self.lines = 0
        self.alerts = 0

    def score_line(self, line: str | bytes, line_no: int | None = None) -> Scored:
        self.lines += 1
        rec = self.parser.parse(line, self.lines if line_no is None else line_no)  # bytes or text: the parser decodes and counts issues
        return self.score_record(rec)

    def score_record(self, rec: LogRecord) -> Scored:
        m = self.model
        if self.update:
            cid, text, _ = m.miner.add(rec.message)
        else:
            hit = self._cache.get(rec.message)
            if hit is None:
                hit = m.miner.match(rec.message)
                if len(self._cache) < 100_000:
                    self._cache[rec.message] = hit
            cid, text = hit
        tid = None if cid is None else f"T{cid}"
        key = session_of(rec, self._pattern)
        context, last = self.state.get(key)
        gap = None if (rec.time is None or last is None) else rec.time - last
        params = m.miner.parameters(cid, rec.message) if cid is not None else []
        parts = m.stats.components(tid, context, params, gap, rec.severity)
        score = float(sum(parts.values()))
        thr = self.threshold.value
        is_alert = score > thr
        new_values = _new_values(m.stats, tid, params) if parts["parameter"] > 0 else []
        out = Scored(rec, cid, text, key, score, parts, thr, is_alert, new_values)
        if is_alert:
            self.alerts += 1
            out._reason = reason(parts, tid, rec, m.stats, context, new_values)
        self.threshold.update(score)
        if self.update and tid is not None:
            m.stats.learn(tid, context, params, gap)
        self.state.push(key, tid or "<unseen>", rec.time)
        return out


def _new_values(stats: LineStats, tid: str | None, params: list[str]) -> list[str]:
    out = []
    for slot, v in zip(stats.slots.get(tid, ()), params):
        if slot["values"] is not None and v not in slot["values"]:
            out.append(v)
    return out


class LogModel:
    """A trained log anomaly model (see the module doc)."""

    def __init__(self, miner: TemplateMiner, stats: LineStats, fmt: str, session_key: str | None, calibration: dict[str, Any], summary: dict[str, Any] | None = None, default_sigmas: float = DEFAULT_SIGMAS):
        self.miner, self.stats, self.format, self.session_key = miner, stats, fmt, session_key
        self.calibration = calibration
        self.summary = summary or {}
        self.default_sigmas = default_sigmas

    # -- training -------------------------------------------------------------------------------

    @classmethod
    def train(cls, lines: Iterable[str | bytes], fmt: str = "auto", session_key: str | None = None, warmup: float = 0.2, progress: Callable[[int], None] | None = None) -> LogModel:
        """Train on ``lines`` (in file order). ``progress(n)`` is called every 10,000 lines."""
        t0 = time.perf_counter()
        if not 0.0 < warmup < 1.0:
            raise EjcError(f"warmup must be in (0, 1), got {warmup}")
        pattern = compile_session_key(session_key)
        parser = LogParser(fmt)
        records: list[LogRecord] = []
        for i, line in enumerate(lines, 1):
            records.append(parser.parse(line, i))
            if progress is not None and i % 10_000 == 0:
                progress(i)
        if len(records) < 10:
            raise EjcError(f"ejc logs train needs at least 10 lines to learn from, got {len(records)}")
        used_format = fmt if fmt != "auto" else _main_format(parser.counts)
        # prequential pass: each line scored by what the lines before it taught (as a stream with
        # --update would), the first `warmup` share only learned from
        warm = max(1, int(round(len(records) * warmup)))
        scores_by_n, seq_by_n = _prequential(records, pattern, warm)
        sev_free = np.array([SEVERITY_PRIOR.get((r.severity or "").upper(), 0.0) == 0.0 for r in records[warm:]])
        # the order whose lines are least surprising in total (the best predictive fit)
        n_best = min(NGRAM_ORDERS, key=lambda n: (float(np.sum(seq_by_n[n])), n))
        scores = scores_by_n[n_best]
        # the threshold is calibrated on the lines the system itself does not flag (no severity
        # prior): a log whose training part holds many FATAL lines must not raise its own bar
        plain = scores[sev_free] if sev_free.sum() >= 20 else scores
        med, scale = robust_stats(plain)
        cal = {
            "median": med,
            "scale": scale,
            "calibration_lines": int(len(plain)),
            "scored_lines": int(len(scores)),
            "calibration_alert_rate_at_default": float(np.mean((scores - med) / scale > DEFAULT_SIGMAS)),
            "quantiles": {str(q): float(np.quantile(scores, q)) for q in (0.5, 0.9, 0.99, 0.999)},
            "ngram_order": n_best,
            "sequence_nats_by_order": {str(n): float(np.sum(seq_by_n[n])) for n in NGRAM_ORDERS},
        }
        miner, stats = _fit(records, pattern, n_best)
        summary = {
            "lines": len(records),
            "formats": parser.counts,
            "issues": parser.issues,
            "format": used_format,
            "templates": len(miner),
            "sessions": len({session_of(r, pattern) for r in records}),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        return cls(miner, stats, used_format, session_key, cal, summary)

    def scorer(self, sigmas: float | None = None, adaptive: bool = True, update: bool = False) -> LineScorer:
        return LineScorer(self, sigmas, adaptive, update)

    # -- persistence ------------------------------------------------------------------------------

    def save(self, out: str | os.PathLike[str]) -> Path:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        self.miner.save(d / TEMPLATES_DIR)
        doc = {
            "version": 1,
            "format": self.format,
            "session_key": self.session_key,
            "default_sigmas": self.default_sigmas,
            "calibration": self.calibration,
            "summary": self.summary,
            "stats": self.stats.to_dict(),
        }
        tmp = d / f".{MODEL_FILE}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, d / MODEL_FILE)
        return d

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str]) -> LogModel:
        d = Path(model_dir)
        f = d / MODEL_FILE
        if not f.is_file():
            raise EjcError(f"{d}: not a log model (no {MODEL_FILE}); train one with `ejc logs train --input FILE --out {d}`")
        try:
            doc = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EjcError(f"{f}: unreadable log model: {e}") from e
        miner = TemplateMiner.load(d / TEMPLATES_DIR)
        return cls(miner, LineStats.from_dict(doc["stats"]), doc["format"], doc.get("session_key"), doc["calibration"], doc.get("summary"), float(doc.get("default_sigmas", DEFAULT_SIGMAS)))


def _main_format(counts: dict[str, int]) -> str:
    named = {k: v for k, v in counts.items() if k not in ("raw",)}
    return max(named, key=lambda k: named[k]) if named else "auto"


def _fit(records: list[LogRecord], pattern: re.Pattern[str] | None, n: int) -> tuple[TemplateMiner, LineStats]:
    """Mine templates on every record first (ids settle), then count in order per session."""
    miner = TemplateMiner()
    ids = [miner.add(r.message)[0] for r in records]
    stats = LineStats(n)
    state = SourceState(n, max_sources=1 << 30)
    for r, cid in zip(records, ids):
        tid = f"T{cid}"
        key = session_of(r, pattern)
        ctx, last = state.get(key)
        gap = None if (r.time is None or last is None) else r.time - last
        stats.learn(tid, ctx, miner.parameters(cid, r.message), gap)
        state.push(key, tid, r.time)
    return miner, stats.finish()


def _prequential(records: list[LogRecord], pattern: re.Pattern[str] | None, warm: int) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Per n-gram order: the scores of ``records[warm:]``, each line scored (templates matched,
    not learned) before it is learned, and its template + sequence nats."""
    miner = TemplateMiner()
    stats = LineStats(max(NGRAM_ORDERS))
    views = {n: _with_order(stats, n) for n in NGRAM_ORDERS}
    state = SourceState(max(NGRAM_ORDERS), max_sources=1 << 30)
    scores: dict[int, list[float]] = {n: [] for n in NGRAM_ORDERS}
    seq: dict[int, list[float]] = {n: [] for n in NGRAM_ORDERS}
    for i, r in enumerate(records):
        key = session_of(r, pattern)
        ctx, last = state.get(key)
        gap = None if (r.time is None or last is None) else r.time - last
        if i >= warm:
            cid, _ = miner.match(r.message)
            tid = None if cid is None else f"T{cid}"
            params = miner.parameters(cid, r.message) if cid is not None else []
            for n, view in views.items():
                parts = view.components(tid, ctx, params, gap, r.severity)
                scores[n].append(sum(parts.values()))
                seq[n].append(parts["template"] + parts["sequence"])
        cid, _, _ = miner.add(r.message)
        tid = f"T{cid}"
        stats.learn(tid, ctx, miner.parameters(cid, r.message), gap)
        state.push(key, tid, r.time)
        if i % 1000 == 999:
            stats.finish()
    return {n: np.asarray(v) for n, v in scores.items()}, {n: np.asarray(v) for n, v in seq.items()}


def _with_order(stats: LineStats, n: int) -> LineStats:
    """``stats`` seen as an order-``n`` model, sharing its counts (the counts of contexts up to
    ``n - 1`` long are the same whatever order they were learned with)."""
    s = LineStats(n)
    s.templates, s.slots, s.gap_stats = stats.templates, stats.slots, stats.gap_stats
    s.contexts = stats.contexts  # shared: an order-n model only looks up contexts up to n - 1 long
    return s


__all__ = ["COMPONENTS", "DEFAULT_SIGMAS", "EVENT_MODEL_DIR", "MODEL_FILE", "LineScorer", "LogModel", "Scored", "session_of"]
