"""Readers: source files -> raw event tables, streamed chunk by chunk.

A reader turns one source file into :class:`RawChunk` s. Each chunk's ``table`` carries a
subset of the canonical event columns (:data:`ejc.data.schema.EVENT_COLUMNS`) with *loosely
typed* values (timestamps as the source wrote them, vectors as lists or text) plus ``_row``,
the 0-based record number in the source, so that every quarantined record points back to it.
:class:`ejc.data.schema.Validator` parses and checks the values later. Records that cannot
even be split into fields (a CSV line with the wrong number of fields, a broken JSON line, a
sequence line without tokens) go to the chunk's ``quarantine`` with reason
``malformed_record``. Every source record appears exactly once: in a chunk's table or in its
quarantine.

What ``_row`` counts, per format:

* ``csv``, ``loghub``, ``sequences`` with a header: data record (header excluded);
* ``jsonl``, ``sequences`` without header: line (blank lines are skipped, but counted);
* ``parquet``: row; ``xes``: event, in document order;
* ``npz``: flat index ``i * width + j`` into the ``(entities, width)`` array.

A ``sequences`` line expands into one event per token, all with the line's ``_row``.

Memory is bounded by ``chunk_rows`` (and the CSV block size), not by the file size, except
for ``npz`` (NumPy loads an array member whole) and an XES trace whose name comes after its
events (its events are held until the name is known).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ejc.data.schema import Reason, empty_quarantine_table, quarantine_records
from ejc.errors import ConfigError, ReaderError

FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl", "xes", "sequences", "loghub", "npz")

MAP_TYPE = pa.map_(pa.string(), pa.string())

# auto mapping: lower-cased source names, best first
_AUTO: dict[str, tuple[str, ...]] = {
    "entity": ("entity_id", "case_id", "caseid", "case:concept:name", "case", "session_id", "session", "user_id", "id"),
    "time": ("timestamp", "time:timestamp", "completetimestamp", "datetime", "time", "date"),
    "type": ("event_type", "activity", "activityid", "concept:name", "event", "type", "eventid"),
    "text": ("text", "content", "message"),
    "label": ("label",),
    "modality": ("modality",),
    "embedding": ("embedding",),
}
# mapping field -> canonical column, in canonical column order
_CANON: dict[str, str] = {
    "entity": "entity_id",
    "time": "timestamp",
    "type": "event_type",
    "modality": "modality",
    "embedding": "embedding",
    "text": "text",
    "label": "label",
}
_SEQUENCE_NAMES = ("sequence", "eventsequence")
_LOGHUB_KEYS = ("lineid", "eventid", "content")
_CSV_BLOCK_BYTES = 1 << 20
_SNIFF_LINES = 20


@dataclass
class ColumnMapping:
    """Which source column feeds which event column. ``None`` fields are found automatically.

    ``attributes``: source columns packed into the ``attributes`` map; ``None`` packs every
    column not mapped to something else. ``sequence``: the token column of a ``sequences``
    CSV. ``entity_pattern``: a regex whose first match gives the entity id; it searches the
    ``entity`` column when one is named, else the text column (e.g. ``r"blk_-?\\d+"`` on HDFS
    log lines).
    """

    entity: str | None = None
    time: str | None = None
    type: str | None = None
    text: str | None = None
    modality: str | None = None
    embedding: str | None = None
    label: str | None = None
    attributes: list[str] | None = None
    sequence: str | None = None
    entity_pattern: str | None = None


@dataclass
class RawChunk:
    """One chunk of reader output.

    ``table``: canonical event columns (loosely typed) plus ``_row`` (int64);
    ``quarantine``: :data:`~ejc.data.schema.QUARANTINE_SCHEMA` rows for records that could not
    be parsed at all (reason ``malformed_record``).
    """

    table: pa.Table
    quarantine: pa.Table

    @property
    def num_records(self) -> int:
        """Source records this chunk accounts for (a sequence line counts once per token)."""
        return self.table.num_rows + self.quarantine.num_rows


# ----------------------------------------------------------------------------------------------
# public entry points


def detect_format(path: str | os.PathLike[str]) -> str:
    """Guess the reader for ``path`` from its extension (and, for ``.csv``, its header).

    Files without an extension are sniffed: Parquet / npz magic bytes, a leading ``{``
    (jsonl), ``<`` (xes), or lines shaped like ``<id>,<token> <token> ...`` (sequences).
    """
    p = _check_file(path)
    name = p.name.lower()
    if name.endswith((".xes", ".xes.gz")):
        return "xes"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        return "jsonl"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith((".csv", ".csv.gz")):
        header = [h.strip().lower() for h in _read_header(p)]
        if all(k in header for k in _LOGHUB_KEYS):
            return "loghub"
        if any(h in _SEQUENCE_NAMES for h in header):
            return "sequences"
        return "csv"
    if "." not in name.lstrip("."):
        fmt = _sniff(p)
        if fmt is not None:
            return fmt
        raise ReaderError(p, f"cannot tell the format of a file without extension; pass --format, one of {list(FORMATS)}")
    suffix = name[name.rindex(".") :]
    raise ReaderError(p, f"unknown file extension {suffix!r}; pass --format, one of {list(FORMATS)}")


def read_events(
    path: str | os.PathLike[str],
    format: str = "auto",
    mapping: ColumnMapping | None = None,
    chunk_rows: int = 65536,
) -> Iterator[RawChunk]:
    """Stream ``path`` as :class:`RawChunk` s of at most about ``chunk_rows`` events each.

    The file is opened, its format detected and its column mapping resolved *now*, so a bad
    path, format or mapping raises :class:`~ejc.errors.ReaderError` at the call, not at the
    first ``next()``. Errors found later while reading (a corrupt block) are raised as
    ``ReaderError`` too.
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    p = _check_file(path)
    fmt = detect_format(p) if format == "auto" else format
    if fmt not in FORMATS:
        raise ReaderError(p, f"unknown format {format!r}; --format must be auto or one of {list(FORMATS)}")
    m = mapping or ColumnMapping()
    reader: Callable[[Path, ColumnMapping, int], Iterator[RawChunk]] = _READERS[fmt]
    return reader(p, m, chunk_rows)


# ----------------------------------------------------------------------------------------------
# files


def _check_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise ReaderError(p, "no such file")
    if p.is_dir():
        raise ReaderError(p, "is a directory, expected a file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise ReaderError(p, f"cannot read file: {e.strerror or e}") from e
    if size == 0:
        raise ReaderError(p, "file is empty")
    return p


def _is_gz(p: Path) -> bool:
    return p.name.lower().endswith(".gz")


def _open_binary(p: Path) -> io.BufferedIOBase:
    """Open ``p`` (decompressing ``.gz``) and check it is readable: a bad gzip fails here."""
    try:
        if _is_gz(p):
            with open(p, "rb") as f:
                magic = f.read(2)
            if magic != b"\x1f\x8b":
                raise ReaderError(p, "not a gzip file (the name ends in .gz but the content is not gzip-compressed)")
            fh: Any = gzip.open(p, "rb")
            try:
                fh.peek(1)
            except (OSError, EOFError) as e:
                fh.close()
                raise ReaderError(p, f"corrupt gzip file: {e}") from e
            return fh
        return open(p, "rb")
    except OSError as e:
        raise ReaderError(p, f"cannot open file: {e.strerror or e}") from e


def _lines(p: Path) -> Iterator[tuple[int, str | None, bytes]]:
    """``(line number, text, raw bytes)`` per line; text is ``None`` where it is not UTF-8.

    Raises :class:`ReaderError` up front for binary content (NUL bytes near the start).
    """
    fh = _open_binary(p)
    try:
        head = fh.peek(4096)[:4096] if hasattr(fh, "peek") else b""
    except OSError as e:
        fh.close()
        raise ReaderError(p, f"cannot read file: {e}") from e
    if b"\x00" in head:
        fh.close()
        raise ReaderError(p, "binary data, not a text file; is --format right?")

    def gen() -> Iterator[tuple[int, str | None, bytes]]:
        with fh:
            for i, raw in enumerate(fh):
                raw = raw.rstrip(b"\r\n")
                if i == 0 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    yield i, raw.decode("utf-8"), raw
                except UnicodeDecodeError:
                    yield i, None, raw

    return gen()


def _text_lines(p: Path, ch: _Chunker) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines; lines that are not UTF-8 go to quarantine."""
    for lineno, line, raw in _lines(p):
        if line is None:
            ch.bad(lineno, "invalid UTF-8", raw.decode("utf-8", "backslashreplace"))
        elif line.strip():
            yield lineno, line


def _first_lines(p: Path, n: int) -> list[str]:
    """The first ``n`` non-blank lines (undecodable bytes replaced), for sniffing and headers."""
    out: list[str] = []
    it = _lines(p)
    try:
        for _, text, raw in it:
            line = text if text is not None else raw.decode("utf-8", "replace")
            if line.strip():
                out.append(line)
                if len(out) >= n:
                    break
    except OSError as e:
        raise ReaderError(p, f"cannot read file: {e}") from e
    finally:
        it.close()  # type: ignore[attr-defined]
    return out


def _read_header(p: Path) -> list[str]:
    lines = _first_lines(p, 1)
    if not lines:
        raise ReaderError(p, "file has no header line (only blank lines)")
    return next(csv.reader([lines[0]]))


_SEQ_LINE = re.compile(r"^\s*[^,\s][^,]*,\s*\S+(\s+\S+)*\s*$")


def _sniff(p: Path) -> str | None:
    with _open_binary(p) as f:
        magic = f.read(4)
    if magic == b"PAR1":
        return "parquet"
    if magic[:4] == b"PK\x03\x04":
        return "npz"
    try:
        lines = _first_lines(p, _SNIFF_LINES)
    except ReaderError:
        return None
    if not lines:
        return None
    first = lines[0].lstrip()
    if first.startswith("{"):
        return "jsonl"
    if first.startswith("<"):
        return "xes"
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    if all(k in header for k in _LOGHUB_KEYS):
        return "loghub"
    if any(h in _SEQUENCE_NAMES for h in header):
        return "sequences"
    # most lines (malformed ones aside) look like "<id>,<token> <token> ..."
    shaped = sum(bool(_SEQ_LINE.match(line)) and line.count(",") == 1 for line in lines)
    if shaped and 2 * shaped >= len(lines):
        return "sequences"
    return None


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


# ----------------------------------------------------------------------------------------------
# column mapping


@dataclass
class _Fields:
    """A mapping resolved against the source's columns (source column names, or ``None``)."""

    entity: str | None = None
    time: str | None = None
    type: str | None = None
    text: str | None = None
    modality: str | None = None
    embedding: str | None = None
    label: str | None = None
    attributes: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    pattern_source: str | None = None  # column the pattern searches


def _find_column(columns: list[str], name: str) -> str | None:
    if name in columns:
        return name
    low = [c for c in columns if c.lower() == name.lower()]
    return low[0] if len(low) == 1 else None


def _resolve(
    path: Path,
    columns: list[str],
    mapping: ColumnMapping,
    *,
    need_entity: bool = True,
    defaults: dict[str, str | None] | None = None,
    exclude: tuple[str, ...] = (),
    auto: tuple[str, ...] = tuple(_CANON),
) -> _Fields:
    """Bind mapping fields to source ``columns``: explicit names, then ``defaults``, then auto names.

    ``exclude``: columns that are consumed elsewhere (never auto-mapped, never attributes).
    ``auto``: the fields that may be found by name.
    """
    f = _Fields()
    used: set[str] = set(exclude)

    def missing(what: str, name: str) -> ReaderError:
        return ReaderError(path, f"{what} column {name!r} not found; available columns: {columns}")

    for field in _CANON:
        name = getattr(mapping, field)
        if name is not None:
            col = _find_column(columns, name)
            if col is None:
                raise missing(field, name)
            setattr(f, field, col)
            used.add(col)
    for field in _CANON:
        if getattr(f, field) is not None:
            continue
        if defaults and field in defaults:
            col = defaults[field]
            if col is not None and col not in used:
                setattr(f, field, col)
                used.add(col)
            continue
        if field not in auto or (field == "entity" and mapping.entity_pattern):
            continue
        lower = {c.lower(): c for c in reversed(columns) if c not in used}
        for cand in _AUTO[field]:
            if cand in lower:
                setattr(f, field, lower[cand])
                used.add(lower[cand])
                break
    if mapping.entity_pattern:
        f.pattern = _compile_pattern(path, mapping.entity_pattern)
        f.pattern_source = f.entity if mapping.entity is not None else f.text
        if f.pattern_source is None:
            raise ReaderError(
                path, f"entity_pattern needs a text column to search; none of {columns} is one, pass --text-col NAME"
            )
        f.entity = None
    elif need_entity and f.entity is None:
        raise ReaderError(path, f"no entity column found among {columns}; pass --entity-col NAME")
    if mapping.attributes is not None:
        attrs = []
        for name in mapping.attributes:
            col = _find_column(columns, name)
            if col is None:
                raise missing("attribute", name)
            attrs.append(col)
        f.attributes = tuple(attrs)
    else:
        f.attributes = tuple(c for c in columns if c not in used and c != f.pattern_source)
    return f


def _compile_pattern(path: Path, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ReaderError(path, f"invalid entity_pattern {pattern!r}: {e}") from e


# ----------------------------------------------------------------------------------------------
# column helpers (vectorised)


def _combined(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    return col


def _as_string(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Any column as ``string``: Arrow cast where possible, JSON text for nested values."""
    col = _combined(col)
    if pa.types.is_string(col.type):
        return col
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        vals = col.to_pylist()
        return pa.array(
            [None if v is None else v if isinstance(v, str) else json.dumps(v, default=str) for v in vals], pa.string()
        )


def pack_attributes(table: pa.Table, columns: list[str] | tuple[str, ...]) -> pa.Array:
    """Pack ``columns`` into one ``map<string, string>`` array, nulls skipped.

    Same result as :func:`ejc.data.schema.attributes_from_columns`, built with Arrow kernels
    instead of a Python loop over cells (about 50x faster on wide CSV chunks).
    """
    n = table.num_rows
    columns = list(columns)
    if not columns:
        return pa.nulls(n, MAP_TYPE)
    vals = [_as_string(table.column(c)) for c in columns]
    # valid: (n, k) True where row i has a value in column j
    valid = np.stack([~np.asarray(v.is_null().to_numpy(zero_copy_only=False), bool) for v in vals], axis=1)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    r, c = np.nonzero(valid)  # row-major: each row's columns in order
    keys = pc.take(pa.array(columns, pa.string()), pa.array(c, pa.int64()))
    items = pc.take(pa.concat_arrays(vals), pa.array(c.astype(np.int64) * n + r, pa.int64()))
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, items)


def _attributes(table: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    """Attributes map from plain columns, merging any column that already is a map."""
    maps = [c for c in columns if pa.types.is_map(table.schema.field(c).type)]
    plain = [c for c in columns if c not in maps]
    packed = pack_attributes(table, plain)
    if not maps:
        return packed
    if len(maps) == 1 and not plain:
        col = _combined(table.column(maps[0]))
        try:
            return pc.cast(col, MAP_TYPE)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    # rare: map columns to merge with others, row by row
    merged: list[list[tuple[str, str]]] = [list(m or []) for m in packed.to_pylist()]
    for c in maps:
        for i, m in enumerate(table.column(c).to_pylist()):
            for k, v in m or []:
                if v is not None:
                    merged[i].append((str(k), v if isinstance(v, str) else json.dumps(v, default=str)))
    return pa.array(merged, MAP_TYPE)


def _extract_entity(col: pa.Array | pa.ChunkedArray, pattern: re.Pattern[str]) -> pa.Array:
    """First match of ``pattern`` in each value (null where it does not match)."""
    s = _as_string(col)
    try:
        # Arrow's RE2: fast path; RE2 lacks a few Python features (look-arounds, backrefs)
        st = pc.extract_regex(s, pattern=f"(?P<ejc_entity>{pattern.pattern})")
        return pc.struct_field(st, "ejc_entity")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = []
        for v in s.to_pylist():
            m = pattern.search(v) if v is not None else None
            out.append(m.group(0) if m else None)
        return pa.array(out, pa.string())


def _events(src: pa.Table, rows: np.ndarray, f: _Fields, overrides: dict[str, pa.Array] | None = None) -> pa.Table:
    """Raw event table from source columns ``src``: canonical names, attributes packed, ``_row``."""
    over = overrides or {}
    cols: dict[str, Any] = {}
    for field, canon in _CANON.items():
        if canon in over:
            cols[canon] = over[canon]
        elif field == "entity" and f.pattern is not None and f.pattern_source is not None:
            cols[canon] = _extract_entity(src.column(f.pattern_source), f.pattern)
        elif getattr(f, field) is not None:
            cols[canon] = _combined(src.column(getattr(f, field)))
    if "attributes" in over:
        cols["attributes"] = over["attributes"]
    elif f.attributes:
        cols["attributes"] = _attributes(src, f.attributes)
    # keep canonical column order (entity_id, timestamp, event_type, modality, embedding, text, attributes, label)
    order = ["entity_id", "timestamp", "event_type", "modality", "embedding", "text", "attributes", "label"]
    out = {c: cols[c] for c in order if c in cols}
    out["_row"] = pa.array(rows, pa.int64())
    return pa.table(out)


# ----------------------------------------------------------------------------------------------
# chunking


class _Chunker:
    """Collects event tables and malformed records; hands out :class:`RawChunk` s in order.

    ``watermark``: every record numbered below it has been delivered (as an event or as a bad
    record), so bad records below it are final and can be emitted.
    """

    def __init__(self, source: Path, chunk_rows: int):
        self.source = str(source)
        self.chunk_rows = chunk_rows
        self.buf: list[pa.Table] = []
        self.nbuf = 0
        self.bad_rows: list[int] = []
        self.bad_detail: list[str] = []
        self.bad_text: list[str] = []
        self.schema: pa.Schema | None = None

    def bad(self, row: int, detail: str, record: str) -> None:
        self.bad_rows.append(int(row))
        self.bad_detail.append(detail)
        self.bad_text.append(record)

    def add(self, table: pa.Table | None, watermark: float) -> Iterator[RawChunk]:
        if table is not None and table.num_rows:
            if self.buf and table.schema != self.buf[0].schema:
                yield self._emit(self.nbuf, watermark)
            self.buf.append(table)
            self.nbuf += table.num_rows
            self.schema = table.schema
        while self.nbuf >= self.chunk_rows:
            yield self._emit(self.chunk_rows, watermark)
        if not self.buf and len(self.bad_rows) >= self.chunk_rows:
            chunk = self._emit(0, watermark)
            if chunk.quarantine.num_rows:
                yield chunk

    def finish(self) -> Iterator[RawChunk]:
        while self.nbuf > self.chunk_rows:
            yield self._emit(self.chunk_rows, math.inf)
        if self.nbuf or self.bad_rows:
            yield self._emit(self.nbuf, math.inf)

    def _emit(self, k: int, watermark: float) -> RawChunk:
        if self.buf:
            t = pa.concat_tables(self.buf)
            head, rest = t.slice(0, k), t.slice(k)
            self.buf = [rest] if rest.num_rows else []
            self.nbuf = rest.num_rows
            limit = float(rest.column("_row")[0].as_py()) if rest.num_rows else watermark
            head = head.combine_chunks()
        else:
            names = self.schema.names if self.schema is not None else ["_row"]
            head = (self.schema or pa.schema([("_row", pa.int64())])).empty_table().select(names)
            limit = watermark
        return RawChunk(head, self._take_bad(limit))

    def _take_bad(self, limit: float) -> pa.Table:
        if not self.bad_rows:
            return empty_quarantine_table()
        rows = np.asarray(self.bad_rows, np.int64)
        take = np.flatnonzero(rows < limit)
        if not take.size:
            return empty_quarantine_table()
        take = take[np.argsort(rows[take], kind="stable")]
        q = quarantine_records(
            self.source,
            rows[take].tolist(),
            [Reason.MALFORMED_RECORD] * take.size,
            [self.bad_detail[i] for i in take],
            [self.bad_text[i] for i in take],
        )
        keep = np.flatnonzero(rows >= limit)
        self.bad_rows = [self.bad_rows[i] for i in keep]
        self.bad_detail = [self.bad_detail[i] for i in keep]
        self.bad_text = [self.bad_text[i] for i in keep]
        return q


# ----------------------------------------------------------------------------------------------
# CSV engine (shared by csv, loghub and sequences-with-header)


class _CsvSource:
    """Streams a CSV file as all-string Arrow batches with ``_row`` numbers.

    Rows with the wrong number of fields are handed to ``chunker.bad`` by pyarrow's
    ``invalid_row_handler`` (keeping their text and record number) and skipped; the valid rows
    of each batch get the record numbers that remain. Fields are read as bytes and decoded per
    column, so a row with invalid UTF-8 is quarantined alone instead of failing the file.
    """

    def __init__(self, path: Path):
        self.path = path
        header = _read_header(path)
        names: list[str] = []
        seen: dict[str, int] = {}
        for i, h in enumerate(header):
            h = h.strip() or f"column{i}"
            if h in seen:
                seen[h] += 1
                h = f"{h}.{seen[h]}"
            seen.setdefault(h, 0)
            names.append(h)
        self.columns = names
        self._bad_idx: list[int] = []

    def batches(self, chunker: _Chunker) -> Iterator[tuple[pa.Table, np.ndarray, int]]:
        """Yield ``(table, rows, watermark)`` per parsed block."""
        import pyarrow.csv as pcsv

        def on_invalid(row: Any) -> str:
            rec = row.number - 2 if row.number is not None else -1  # numbers are 1-based and count the header
            if rec >= 0:
                self._bad_idx.append(rec)
            chunker.bad(rec, f"expected {row.expected_columns} fields, found {row.actual_columns}", row.text)
            return "skip"

        source: Any = pa.input_stream(str(self.path), compression="gzip" if _is_gz(self.path) else None)
        try:
            reader = pcsv.open_csv(
                source,
                read_options=pcsv.ReadOptions(
                    column_names=self.columns, skip_rows=1, use_threads=False, block_size=_CSV_BLOCK_BYTES, encoding="utf8"
                ),
                parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(
                    column_types={c: pa.binary() for c in self.columns},
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (pa.ArrowException, OSError) as e:
            source.close()
            raise ReaderError(self.path, f"cannot read CSV: {_first_line(e)}") from e
        next_rec = 0
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except (pa.ArrowException, OSError) as e:
                    raise ReaderError(self.path, f"cannot parse CSV after record {next_rec}: {_first_line(e)}") from e
                n = batch.num_rows
                pending = np.asarray(sorted(i for i in self._bad_idx if i >= next_rec), np.int64)
                cand = np.arange(next_rec, next_rec + n + pending.size, dtype=np.int64)
                rows = cand[~np.isin(cand, pending)][:n]
                if n:
                    next_rec = int(rows[-1]) + 1
                # bad records right before the next valid one are final too, but only those below
                # next_rec are certain; drop the settled ones from the lookup list
                self._bad_idx = [i for i in self._bad_idx if i >= next_rec]
                table, rows = self._decode(pa.Table.from_batches([batch]), rows, chunker)
                yield table, rows, next_rec
        finally:
            source.close()


    def _decode(self, table: pa.Table, rows: np.ndarray, chunker: _Chunker) -> tuple[pa.Table, np.ndarray]:
        """Binary columns -> string; rows with invalid UTF-8 go to ``chunker.bad``."""
        cols: list[pa.Array] = []
        bad = np.zeros(table.num_rows, bool)
        for name in self.columns:
            col = _combined(table.column(name))
            try:
                cols.append(pc.cast(col, pa.string()))
                continue
            except pa.ArrowInvalid:
                pass
            vals = []
            for i, b in enumerate(col.to_pylist()):
                try:
                    vals.append(None if b is None else b.decode("utf-8"))
                except UnicodeDecodeError:
                    bad[i] = True
                    vals.append(None)
            cols.append(pa.array(vals, pa.string()))
        out = pa.table(cols, names=self.columns)
        if not bad.any():
            return out, rows
        for i in np.flatnonzero(bad):
            fields = [b.decode("utf-8", "backslashreplace") if b is not None else "" for b in table.slice(i, 1).to_pylist()[0].values()]
            chunker.bad(int(rows[i]), "invalid UTF-8", ",".join(fields))
        keep = pa.array(np.flatnonzero(~bad))
        return out.take(keep), rows[~bad]


# ----------------------------------------------------------------------------------------------
# csv


def _read_csv(path: Path, mapping: ColumnMapping, chunk_rows: int) -> Iterator[RawChunk]:
    src = _CsvSource(path)
    fields = _resolve(path, src.columns, mapping)

    def gen() -> Iterator[RawChunk]:
        ch = _Chunker(path, chunk_rows)
        for table, rows, mark in src.batches(ch):
            yield from ch.add(_events(table, rows, fields) if table.num_rows else None, mark)
        yield from ch.finish()

    return gen()


# ----------------------------------------------------------------------------------------------
# loghub structured CSV

# (source, strptime format); source "dt" = Date + " " + Time, "time" = Time, "date" = Date
_LOGHUB_TIME_FORMATS: tuple[tuple[str, str], ...] = (
    ("dt", "%y%m%d %H%M%S"),  # HDFS 081109 203615
    ("dt", "%Y-%m-%d %H:%M:%S,%f"),  # Hadoop, Zookeeper 2015-10-18 18:01:47,978
    ("dt", "%Y-%m-%d %H:%M:%S.%f"),  # OpenStack 2017-05-16 00:00:00.008
    ("dt", "%Y-%m-%d %H:%M:%S"),
    ("dt", "%y/%m/%d %H:%M:%S"),  # Spark 17/06/09 20:10:40
    ("dt", "%Y/%m/%d %H:%M:%S.%f"),
    ("dt", "%Y/%m/%d %H:%M:%S"),
    ("dt", "%Y.%m.%d %H:%M:%S.%f"),
    ("dt", "%Y.%m.%d %H:%M:%S"),  # Thunderbird 2005.11.09 12:01:01
    ("dt", "%Y%m%d %H%M%S"),
    ("dt", "%Y%m%d %H:%M:%S.%f"),
    ("dt", "%Y%m%d %H:%M:%S"),
    ("time", "%Y-%m-%d-%H.%M.%S.%f"),  # BGL 2005-06-03-15.42.50.675872
    ("time", "%Y-%m-%d-%H.%M.%S"),
    ("time", "%Y-%m-%d %H:%M:%S.%f"),
    ("time", "%Y-%m-%dT%H:%M:%S.%f"),
    ("time", "%Y-%m-%d %H:%M:%S"),
    ("time", "%Y-%m-%dT%H:%M:%S"),
    ("date", "%Y-%m-%d"),
    ("date", "%Y.%m.%d"),
    ("date", "%y%m%d"),
    ("date", "%y/%m/%d"),
    ("date", "%Y/%m/%d"),
)
_TIME_SAMPLE = 200


def _precision(fmt: str) -> int:
    return 2 if "%f" in fmt else 1 if "%S" in fmt else 0


def _to_seconds(values: pd.Series, fmt: str) -> np.ndarray:
    """Parse strings with an explicit format (naive = UTC) to float seconds; NaN where it fails."""
    dt = pd.to_datetime(values, format=fmt, utc=True, errors="coerce")
    us = dt.astype("datetime64[us, UTC]").astype("int64").to_numpy()
    out = us.astype(np.float64) / 1e6
    out[dt.isna().to_numpy()] = np.nan
    return out


class _LoghubTime:
    """Derives float epoch seconds from loghub ``Date`` / ``Time`` / ``Timestamp`` columns.

    The datetime format is chosen once, on the file's first values: the most precise candidate
    that parses all of them. An epoch ``Timestamp`` column (BGL, Thunderbird) is true UTC while
    ``Date``/``Time`` are local wall clock; when the datetime is finer (BGL's microseconds) and
    its seconds agree with the epoch up to a whole time-zone offset, the result is the epoch plus
    the datetime's fraction, else the epoch alone. Values that fail stay as their source string
    (the Validator quarantines them).
    """

    def __init__(self, columns: list[str]):
        self.date = _find_column(columns, "Date")
        self.time = _find_column(columns, "Time")
        self.epoch = _find_column(columns, "Timestamp")
        self.consumed = tuple(c for c in (self.date, self.time, self.epoch) if c is not None)
        self.fmt: tuple[str, str] | None = None
        self.use_epoch = False
        self.chosen = False

    def _source(self, table: pa.Table, kind: str) -> pd.Series | None:
        if kind == "dt" and self.date and self.time:
            d = _as_string(table.column(self.date))
            t = _as_string(table.column(self.time))
            return pd.Series(pc.binary_join_element_wise(d, t, " ").to_pylist(), dtype=object)
        col = {"time": self.time, "date": self.date}.get(kind)
        if col is None:
            return None
        return pd.Series(_as_string(table.column(col)).to_pylist(), dtype=object)

    def _choose(self, table: pa.Table) -> None:
        self.chosen = True
        # a candidate qualifies when it parses at least half of the sample (a few corrupt values
        # must not demote the file to a coarser format); the most precise one wins, then the one
        # that parses most, then the first listed
        best: tuple[int, int, int] | None = None
        self.fmt = None
        for rank, (kind, fmt) in enumerate(_LOGHUB_TIME_FORMATS):
            s = self._source(table, kind)
            if s is None:
                continue
            sample = s.dropna().head(_TIME_SAMPLE)
            ok = int(np.isfinite(_to_seconds(sample, fmt)).sum()) if len(sample) else 0
            if ok == 0 or 2 * ok < len(sample):
                continue
            key = (_precision(fmt), ok, -rank)
            if best is None or key > best:
                best, self.fmt = key, (kind, fmt)
        if self.epoch is not None:
            ep = pd.to_numeric(pd.Series(_as_string(table.column(self.epoch)).to_pylist()).dropna().head(_TIME_SAMPLE), errors="coerce")
            self.use_epoch = len(ep) > 0 and bool(np.isfinite(ep.to_numpy(dtype=np.float64)).all())

    def apply(self, table: pa.Table) -> pa.Array | None:
        if not self.chosen:
            self._choose(table)
        n = table.num_rows
        if self.use_epoch and self.epoch is not None:
            raw = _as_string(table.column(self.epoch))
            secs = pd.to_numeric(pd.Series(raw.to_pylist(), dtype=object), errors="coerce").to_numpy(dtype=np.float64)
            if self.fmt is not None and _precision(self.fmt[1]) == 2:
                s = self._source(table, self.fmt[0])
                assert s is not None
                dt = _to_seconds(s, self.fmt[1])
                whole = np.floor(dt)
                aligned = np.isfinite(dt) & np.isfinite(secs) & (np.mod(secs - whole, 900.0) == 0)
                secs = np.where(aligned, secs + (dt - whole), secs)
            return _seconds_or_source(secs, raw)
        if self.fmt is not None:
            s = self._source(table, self.fmt[0])
            assert s is not None
            secs = _to_seconds(s, self.fmt[1])
            bad = np.isnan(secs) & s.notna().to_numpy()
            if bad.any():  # per-value retry with the other formats of the same source
                for kind, fmt in _LOGHUB_TIME_FORMATS:
                    if kind == self.fmt[0] and fmt != self.fmt[1]:
                        secs[bad] = _to_seconds(s[bad], fmt)
                        bad = np.isnan(secs) & s.notna().to_numpy()
                        if not bad.any():
                            break
            return _seconds_or_source(secs, pa.array(s.tolist(), pa.string()))
        # no known format: hand the text over as is (the Validator tries ISO 8601, then guesses)
        for kind in ("dt", "time", "date"):
            s = self._source(table, kind)
            if s is not None:
                return pa.array(s.tolist(), pa.string())
        if self.epoch is not None:
            return _as_string(table.column(self.epoch))
        return pa.nulls(n, pa.float64()) if n else None


def _seconds_or_source(secs: np.ndarray, raw: pa.Array) -> pa.Array:
    """float64 where every present value parsed, else strings: the seconds, or the source text."""
    present = ~np.asarray(raw.is_null().to_numpy(zero_copy_only=False), bool)
    failed = present & ~np.isfinite(secs)
    if not failed.any():
        return pa.array(secs, pa.float64(), mask=~present)
    as_text = pc.cast(pa.array(secs, pa.float64()), pa.string())
    return pc.if_else(pa.array(failed), raw, pc.if_else(pa.array(present), as_text, pa.nulls(len(raw), pa.string())))


def _system_name(path: Path) -> str:
    name = path.name
    for cut in ("_2k", ".log", "_structured", "."):
        i = name.find(cut)
        if i > 0:
            return name[:i]
    return name


def _read_loghub(path: Path, mapping: ColumnMapping, chunk_rows: int) -> Iterator[RawChunk]:
    src = _CsvSource(path)
    cols = src.columns
    if _find_column(cols, "EventId") is None and _find_column(cols, "Content") is None:
        raise ReaderError(path, f"not a loghub structured CSV: no EventId or Content column among {cols}; try --format csv")
    timer = _LoghubTime(cols) if mapping.time is None else None
    defaults: dict[str, str | None] = {
        "type": _find_column(cols, "EventId"),
        "text": _find_column(cols, "Content"),
        "label": _find_column(cols, "Label"),
        "time": None,
        "modality": None,
        "embedding": None,
    }
    if mapping.entity is None and not mapping.entity_pattern:
        defaults["entity"] = None
    fields = _resolve(path, cols, mapping, need_entity=False, defaults=defaults, exclude=timer.consumed if timer else ())
    system = _system_name(path)

    def gen() -> Iterator[RawChunk]:
        ch = _Chunker(path, chunk_rows)
        for table, rows, mark in src.batches(ch):
            events = None
            if table.num_rows:
                over: dict[str, pa.Array] = {}
                if fields.entity is None and fields.pattern is None:
                    over["entity_id"] = pa.array([system] * table.num_rows, pa.string())
                if timer is not None:
                    ts = timer.apply(table)
                    if ts is not None:
                        over["timestamp"] = ts
                events = _events(table, rows, fields, over)
            yield from ch.add(events, mark)
        yield from ch.finish()

    return gen()


# ----------------------------------------------------------------------------------------------
# sequences


def _read_sequences(path: Path, mapping: ColumnMapping, chunk_rows: int) -> Iterator[RawChunk]:
    lines = _first_lines(path, 1)
    if not lines:
        raise ReaderError(path, "file has only blank lines")
    first = [h.strip() for h in next(csv.reader([lines[0]]))]
    seq_col = None
    if mapping.sequence is not None:
        seq_col = _find_column(first, mapping.sequence)
        if seq_col is None:
            raise ReaderError(path, f"sequence column {mapping.sequence!r} not found; available columns: {first}")
    else:
        seq_col = next((h for h in first if h.lower() in _SEQUENCE_NAMES), None)
    if seq_col is not None:
        return _read_sequence_csv(path, mapping, chunk_rows)
    return _read_sequence_lines(path, mapping, chunk_rows)


def _split_tokens(arr: pa.Array) -> pa.Array:
    """Whitespace-separated tokens per value (``list<string>``); leading/trailing space ignored."""
    trimmed = pc.utf8_trim_whitespace(arr)
    trimmed = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)  # "" would give [""]
    return pc.utf8_split_whitespace(trimmed)


def _read_sequence_csv(path: Path, mapping: ColumnMapping, chunk_rows: int) -> Iterator[RawChunk]:
    """``sequences`` as a CSV with a header and a column of space-separated tokens."""
    src = _CsvSource(path)
    cols = src.columns
    seq = _find_column(cols, mapping.sequence) if mapping.sequence else next(c for c in cols if c.lower() in _SEQUENCE_NAMES)
    assert seq is not None
    for field in ("time", "type"):
        if getattr(mapping, field) is not None:
            raise ReaderError(path, f"--{field}-col does not apply to 'sequences': each token is an event type without time")
    fields = _resolve(path, cols, mapping, need_entity=False, exclude=(seq,), auto=("entity", "text", "label", "modality"))
    stem = path.name.split(".")[0]

    def gen() -> Iterator[RawChunk]:
        ch = _Chunker(path, chunk_rows)
        for table, rows, mark in src.batches(ch):
            events = None
            if table.num_rows:
                tokens = _split_tokens(_as_string(table.column(seq)))
                lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
                empty = np.flatnonzero(lengths == 0)
                if empty.size:
                    recs = table.take(pa.array(empty)).to_pylist()
                    for i, rec in zip(empty, recs):
                        ch.bad(int(rows[i]), "sequence has no tokens", json.dumps(rec, ensure_ascii=False))
                parents = pc.list_parent_indices(tokens)
                expanded = table.take(parents)
                erows = rows[parents.to_numpy(zero_copy_only=False)]
                over = {"event_type": pc.list_flatten(tokens)}
                if fields.entity is None and fields.pattern is None:
                    over["entity_id"] = pc.binary_join_element_wise(
                        pa.array([stem] * len(erows), pa.string()), pc.cast(pa.array(erows, pa.int64()), pa.string()), ":"
                    )
                events = _events(expanded, erows, fields, over)
            yield from ch.add(events, mark)
        yield from ch.finish()

    return gen()


def _read_sequence_lines(path: Path, mapping: ColumnMapping, chunk_rows: int) -> Iterator[RawChunk]:
    """Headerless ``<entity id>,<token> <token> ...`` lines."""
    for field in ("entity", "time", "type", "text", "label", "modality", "embedding", "sequence"):
        if getattr(mapping, field) is not None:
            raise ReaderError(path, f"a headerless sequences file has no named columns; --{field}-col does not apply")
    pattern = _compile_pattern(path, mapping.entity_pattern) if mapping.entity_pattern else None
    lines = _first_lines(path, _SNIFF_LINES)
    if not any(_SEQ_LINE.match(x) for x in lines):
        raise ReaderError(path, f"not a sequences file: no line of the first {len(lines)} looks like '<id>,<token> <token> ...'")

    def flush(ids: list[str], seqs: list[str], rows: list[int]) -> pa.Table:
        tokens = _split_tokens(pa.array(seqs, pa.string()))
        parents = pc.list_parent_indices(tokens)
        ent = pc.take(pa.array(ids, pa.string()), parents)
        if pattern is not None:
            ent = _extract_entity(ent, pattern)
        return pa.table(
            {
                "entity_id": ent,
                "event_type": pc.list_flatten(tokens),
                "_row": pc.take(pa.array(rows, pa.int64()), parents),
            }
        )

    def gen() -> Iterator[RawChunk]:
        ch = _Chunker(path, chunk_rows)
        ids: list[str] = []
        seqs: list[str] = []
        rows: list[int] = []
        ntok = 0
        lineno = -1
        try:
            for lineno, line in _text_lines(path, ch):
                ent, sep, rest = line.partition(",")
                ent = ent.strip()
                if not sep or not ent or not rest.strip():
                    why = "no comma after the id" if not sep else "empty id" if not ent else "no tokens"
                    ch.bad(lineno, f"malformed sequence line: {why}", line)
                    continue
                ids.append(ent)
                seqs.append(rest)
                rows.append(lineno)
                ntok += rest.count(" ") + 1
                if ntok >= chunk_rows:
                    yield from ch.add(flush(ids, seqs, rows), lineno + 1)
                    ids, seqs, rows, ntok = [], [], [], 0
        except (OSError, EOFError) as e:
            raise ReaderError(path, f"cannot read file after line {lineno}: {e}") from e
        if ids:
            yield from ch.add(flush(ids, seqs, rows), lineno + 1)
        yield from ch.finish()

    return gen()


# ----------------------------------------------------------------------------------------------
# parquet


def _read_parquet(path: Path, mapping: ColumnMapping, chunk_rows: int) -> Iterator[RawChunk]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as e:
        raise ReaderError(path, f"not a readable Parquet file: {_first_line(e)}") from e
    cols = list(pf.schema_arrow.names)
    fields = _resolve(path, cols, mapping)
    need = sorted(
        {c for c in (fields.entity, fields.time, fields.type, fields.text, fields.modality, fields.embedding, fields.label) if c}
        | set(fields.attributes)
        | ({fields.pattern_source} if fields.pattern_source else set()),
        key=cols.index,
    )

    def gen() -> Iterator[RawChunk]:
        ch = _Chunker(path, chunk_rows)
        start = 0
        try:
            for batch in pf.iter_batches(batch_size=chunk_rows, columns=need, use_threads=False):
                n = batch.num_rows
                rows = np.arange(start, start + n, dtype=np.int64)
                start += n
                yield from ch.add(_events(pa.Table.from_batches([batch]), rows, fields), start)
        except (pa.ArrowException, OSError) as e:
            raise ReaderError(path, f"cannot read Parquet after row {start}: {_first_line(e)}") from e
        finally:
            pf.close()
        yield from ch.finish()

    return gen()


# ----------------------------------------------------------------------------------------------
# jsonl


def _text_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)


def _loose_array(values: list[Any]) -> pa.Array:
    """Arrow array of JSON values; mixed types fall back to text (dicts/lists as JSON)."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([None if v is None else _text_value(v) for v in values], pa.string())
    if pa.types.is_struct(arr.type) or pa.types.is_null(arr.type):
        return pa.array([None if v is None else _text_value(v) for v in values], pa.string())
    return arr


def _read_jsonl(path: Path, mapping: ColumnMapping, chunk_rows: int) -> Iterator[RawChunk]:
    probe = _first_lines(path, _SNIFF_LINES)
    parsed = []
    for line in probe:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            parsed.append(obj)
    if not parsed:
        raise ReaderError(path, f"not JSON Lines: none of the first {len(probe)} lines is a JSON object")
    keys: list[str] = []
    for obj in parsed:
        keys.extend(k for k in obj if k not in keys)
    fields = _resolve(path, keys, mapping)
    explicit_attrs = mapping.attributes is not None
    mapped = {c for c in (fields.entity, fields.time, fields.type, fields.text, fields.modality, fields.embedding, fields.label) if c}
    nested_attrs = "attributes" if "attributes" not in mapped and not explicit_attrs else None

    def build(recs: list[dict[str, Any]], rows: list[int]) -> pa.Table:
        cols: dict[str, Any] = {}
        for field, canon in _CANON.items():
            name = getattr(fields, field)
            if name is not None:
                cols[canon] = _loose_array([r.get(name) for r in recs])
        if fields.pattern is not None and fields.pattern_source is not None:
            cols["entity_id"] = _extract_entity(_loose_array([r.get(fields.pattern_source) for r in recs]), fields.pattern)
        items: list[list[tuple[str, str]]] = []
        for r in recs:
            if explicit_attrs:
                it = [(k, _text_value(r[k])) for k in fields.attributes if r.get(k) is not None]
            else:
                it = [
                    (k, _text_value(v))
                    for k, v in r.items()
                    if v is not None and k not in mapped and k != nested_attrs and k != fields.pattern_source
                ]
                nested = r.get(nested_attrs) if nested_attrs else None
                if isinstance(nested, dict):
                    it.extend((str(k), _text_value(v)) for k, v in nested.items() if v is not None)
                elif nested is not None:
                    it.append((nested_attrs or "attributes", _text_value(nested)))
            items.append(it)
        if any(items):
            cols["attributes"] = pa.array(items, MAP_TYPE)
        order = ["entity_id", "timestamp", "event_type", "modality", "embedding", "text", "attributes", "label"]
        out = {c: cols[c] for c in order if c in cols}
        out["_row"] = pa.array(rows, pa.int64())
        return pa.table(out)

    def gen() -> Iterator[RawChunk]:
        ch = _Chunker(path, chunk_rows)
        recs: list[dict[str, Any]] = []
        rows: list[int] = []
        lineno = -1
        try:
            for lineno, line in _text_lines(path, ch):
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    ch.bad(lineno, f"invalid JSON: {e}", line)
                    continue
                if not isinstance(obj, dict):
                    ch.bad(lineno, f"expected a JSON object, got {type(obj).__name__}", line)
                    continue
                recs.append(obj)
                rows.append(lineno)
                if len(recs) >= chunk_rows:
                    yield from ch.add(build(recs, rows), lineno + 1)
                    recs, rows = [], []
        except (OSError, EOFError) as e:
            raise ReaderError(path, f"cannot read file after line {lineno}: {e}") from e
        if recs:
            yield from ch.add(build(recs, rows), lineno + 1)
        yield from ch.finish()

    return gen()


# ----------------------------------------------------------------------------------------------
# xes


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


_XES_VALUE_TAGS = frozenset({"string", "date", "int", "float", "boolean", "id"})


def _read_xes(path: Path, mapping: ColumnMapping, chunk_rows: int) -> Iterator[RawChunk]:
    """XES event log: one event per ``<event>``, entity from the enclosing trace's name.

    ``mapping`` fields name XES attribute keys here: ``entity`` a trace attribute (default
    ``concept:name``), ``type``/``time``/``label``/``text`` event attributes (defaults
    ``concept:name``, ``time:timestamp``, ``label``, none). Other event attributes go into
    ``attributes`` (or only the keys in ``mapping.attributes``). Nested values (lists,
    containers) are skipped.
    """
    for field in ("modality", "embedding", "sequence"):
        if getattr(mapping, field) is not None:
            raise ReaderError(path, f"--{field}-col does not apply to XES logs")
    ent_key = mapping.entity or "concept:name"
    keys = {
        "event_type": mapping.type or "concept:name",
        "timestamp": mapping.time or "time:timestamp",
        "label": mapping.label or "label",
    }
    if mapping.text:
        keys["text"] = mapping.text
    consumed = set(keys.values())
    allowed = set(mapping.attributes) if mapping.attributes is not None else None
    pattern = _compile_pattern(path, mapping.entity_pattern) if mapping.entity_pattern else None
    if pattern is not None and "text" not in keys:
        raise ReaderError(path, "entity_pattern needs a text attribute to search; pass --text-col KEY")
    fh = _open_binary(path)  # checks gzip now
    try:
        head = fh.peek(64)[:64].lstrip() if hasattr(fh, "peek") else b"<"
    except OSError as e:
        fh.close()
        raise ReaderError(path, f"cannot read file: {e}") from e
    if not head.startswith(b"<"):
        fh.close()
        raise ReaderError(path, "not an XES (XML) file: it does not start with '<'")

    def gen() -> Iterator[RawChunk]:
        ch = _Chunker(path, chunk_rows)
        cols: dict[str, list[Any]] = {k: [] for k in ("entity_id", *keys, "attributes", "_row")}
        pending: list[dict[str, Any]] = []  # events of the current trace until its name is known
        trace_name: str | None = None
        trace_elem: ElementTree.Element | None = None
        in_trace = False
        event: dict[str, Any] | None = None
        event_elem: ElementTree.Element | None = None
        depth = 0
        trace_depth = event_depth = -1
        n_events = 0
        root: ElementTree.Element | None = None

        def put(ev: dict[str, Any], entity: str | None) -> None:
            cols["entity_id"].append(entity)
            for k in keys:
                cols[k].append(ev.get(k))
            cols["attributes"].append(ev["attributes"])
            cols["_row"].append(ev["_row"])

        def flush() -> pa.Table:
            t: dict[str, Any] = {"entity_id": pa.array(cols["entity_id"], pa.string())}
            if pattern is not None:
                t["entity_id"] = _extract_entity(pa.array(cols["text"], pa.string()), pattern)
            for k in keys:
                t[k] = pa.array(cols[k], pa.string())
            t["attributes"] = pa.array(cols["attributes"], MAP_TYPE)
            t["_row"] = pa.array(cols["_row"], pa.int64())
            for v in cols.values():
                v.clear()
            order = ["entity_id", "timestamp", "event_type", "text", "attributes", "label", "_row"]
            return pa.table({c: t[c] for c in order if c in t})

        try:
            with fh:
                for what, elem in ElementTree.iterparse(fh, events=("start", "end")):
                    tag = _local(elem.tag)
                    if what == "start":
                        if root is None:
                            root = elem
                        if tag == "trace" and not in_trace:
                            in_trace, trace_name, trace_elem, trace_depth = True, None, elem, depth
                        elif tag == "event" and event is None:
                            event, event_elem, event_depth = {"attributes": [], "_row": n_events}, elem, depth
                            n_events += 1
                        depth += 1
                        continue
                    depth -= 1
                    if tag in _XES_VALUE_TAGS:
                        key, value = elem.get("key"), elem.get("value")
                        if event is not None and depth == event_depth + 1 and key is not None:
                            if key in consumed:
                                for k, want in keys.items():
                                    if want == key:
                                        event[k] = value
                            elif value is not None and (allowed is None or key in allowed):
                                event["attributes"].append((key, value))
                        elif event is None and in_trace and depth == trace_depth + 1 and key == ent_key:
                            trace_name = value
                            for ev in pending:
                                put(ev, trace_name)
                            pending.clear()
                    elif tag == "event" and event is not None and depth == event_depth:
                        if not in_trace:
                            put(event, None)
                        elif trace_name is not None:
                            put(event, trace_name)
                        else:
                            pending.append(event)
                        event = None
                        if event_elem is not None:
                            event_elem.clear()
                            if trace_elem is not None and len(trace_elem) and trace_elem[-1] is event_elem:
                                del trace_elem[-1]
                        if len(cols["_row"]) >= chunk_rows:
                            yield from ch.add(flush(), n_events)
                    elif tag == "trace" and in_trace and depth == trace_depth:
                        for ev in pending:
                            put(ev, None)  # a trace without a name: the Validator quarantines its events
                        pending.clear()
                        in_trace, trace_elem = False, None
                        elem.clear()
                        if root is not None:
                            root.clear()
        except ElementTree.ParseError as e:
            raise ReaderError(path, f"not valid XES/XML: {e}") from e
        except (OSError, EOFError) as e:
            raise ReaderError(path, f"cannot read file: {e}") from e
        if root is not None and _local(root.tag) != "log":
            raise ReaderError(path, f"not an XES log: the root element is <{_local(root.tag)}>, expected <log>")
        if cols["_row"]:
            yield from ch.add(flush(), n_events)
        yield from ch.finish()

    return gen()


# ----------------------------------------------------------------------------------------------
# npz (temporal point process arrays)


_NPZ_TYPE_KEYS = ("marks", "event_types", "types")
_NPZ_LENGTH_KEYS = ("lengths", "seq_lengths", "length")


def _padding(times: np.ndarray) -> np.ndarray:
    """(entities, width) bool: trailing padding, i.e. the run of NaN / 0.0 at the end of a row.

    Arrival times never decrease, so zeros after a row's last positive time are padding, not
    events (a row of only zeros is read as an empty sequence).
    """
    pad_value = np.isnan(times) | (times == 0.0)
    # trailing[i, j]: every value from j to the end of row i is a pad value
    trailing = np.flip(np.cumprod(np.flip(pad_value, axis=1), axis=1), axis=1).astype(bool)
    return trailing


def _read_npz(path: Path, mapping: ColumnMapping, chunk_rows: int) -> Iterator[RawChunk]:
    """Arrival-time arrays: row ``i`` of ``arrival_times`` is entity ``"<stem>:<i>"``.

    ``mapping.time`` / ``mapping.type`` name other array keys (times / marks). Trailing
    padding is dropped only where the data really is padded (see :func:`_padding`), or per a
    ``lengths`` array when the file has one; padding never counts as records.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            tkey = mapping.time or "arrival_times"
            if tkey not in keys:
                raise ReaderError(path, f"array {tkey!r} not found; arrays in the file: {keys}; pass --time-col NAME")
            times = np.asarray(z[tkey])
            ykey = mapping.type or next((k for k in _NPZ_TYPE_KEYS if k in keys), None)
            if mapping.type is not None and ykey not in keys:
                raise ReaderError(path, f"array {ykey!r} not found; arrays in the file: {keys}")
            marks = np.asarray(z[ykey]) if ykey is not None else None
            lkey = next((k for k in _NPZ_LENGTH_KEYS if k in keys), None)
            lengths = np.asarray(z[lkey]) if lkey is not None else None
    except ReaderError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ReaderError(path, f"not a readable .npz of numeric arrays: {_first_line(e)}") from e
    if times.ndim == 1:
        times = times[None, :]
        marks = marks[None, :] if marks is not None and marks.ndim == 1 else marks
    if times.ndim != 2 or not np.issubdtype(times.dtype, np.number):
        raise ReaderError(path, f"array {tkey!r} must be numeric with shape (entities, events), got {times.dtype} {times.shape}")
    if marks is not None and marks.shape != times.shape:
        raise ReaderError(path, f"array {ykey!r} has shape {marks.shape}, expected {times.shape} like {tkey!r}")
    times = times.astype(np.float64, copy=False)
    n_ent, width = times.shape
    if lengths is not None and lengths.shape == (n_ent,):
        keep = np.arange(width)[None, :] < lengths.astype(np.int64)[:, None]
    else:
        keep = ~_padding(times)
    stem = path.name.split(".")[0]
    names = np.array([f"{stem}:{i}" for i in range(n_ent)], dtype=object)

    def gen() -> Iterator[RawChunk]:
        ch = _Chunker(path, chunk_rows)
        flat = np.flatnonzero(keep.ravel())
        for s in range(0, flat.size, chunk_rows):
            idx = flat[s : s + chunk_rows]
            ent_i = idx // width
            cols: dict[str, Any] = {
                "entity_id": pa.array(names[ent_i], pa.string()),
                "timestamp": pa.array(times.ravel()[idx], pa.float64()),
            }
            if marks is not None:
                cols["event_type"] = _as_string(pa.array(marks.ravel()[idx]))
            cols["_row"] = pa.array(idx, pa.int64())
            yield from ch.add(pa.table(cols), int(idx[-1]) + 1)
        yield from ch.finish()

    return gen()


_READERS: dict[str, Callable[[Path, ColumnMapping, int], Iterator[RawChunk]]] = {
    "csv": _read_csv,
    "parquet": _read_parquet,
    "jsonl": _read_jsonl,
    "xes": _read_xes,
    "sequences": _read_sequences,
    "loghub": _read_loghub,
    "npz": _read_npz,
}

__all__ = [
    "FORMATS",
    "ColumnMapping",
    "RawChunk",
    "detect_format",
    "pack_attributes",
    "read_events",
]
