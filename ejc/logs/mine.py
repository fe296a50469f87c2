"""Raw log bytes -> records with templates: the one path ``ejc logs parse`` and the log-parsing
benchmark share (read binary, decode per line, parse, mask + mine or match)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ejc.errors import ReaderError
from ejc.logs.parse import LogParser, LogRecord
from ejc.logs.templates import TemplateMiner


@dataclass(slots=True)
class TemplatedRecord:
    """A parsed line and its template: ``template_id`` None when matching against a model found
    no template (an unseen line); ``template`` the text at the time of the line (it may generalise
    later, see :class:`~ejc.logs.templates.TemplateMiner`)."""

    record: LogRecord
    template_id: int | None
    template: str | None
    is_new: bool


def read_lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The lines of a file as bytes (``\\n`` split, line endings kept for the parser to drop);
    never decodes, so invalid UTF-8 cannot fail here."""
    p = Path(path)
    if not p.is_file():
        raise ReaderError(p, "no such file; give the path of a log file")
    try:
        f = p.open("rb")
    except OSError as e:
        raise ReaderError(p, f"cannot open ({e.strerror}); check its permissions") from e
    with f:
        yield from f


def template_lines(
    lines: Iterable[bytes | str],
    parser: LogParser,
    miner: TemplateMiner,
    learn: bool = True,
    first_line_no: int = 1,
) -> Iterator[TemplatedRecord]:
    """Parse each line and give it a template: ``learn=True`` mines (``miner.add``), ``False``
    only matches (``miner.match``; unseen lines get ``template_id`` None). Line numbers are
    1-based positions in ``lines``; every line yields a record, empty ones included."""
    for i, raw in enumerate(lines, first_line_no):
        rec = parser.parse(raw, i)  # bytes go in as they are: the parser counts invalid UTF-8
        if learn:
            tid, tmpl, new = miner.add(rec.message)
            yield TemplatedRecord(rec, tid, tmpl, new)
        else:
            mid, mt = miner.match(rec.message)
            yield TemplatedRecord(rec, mid, mt, False)


__all__ = ["TemplatedRecord", "read_lines", "template_lines"]
