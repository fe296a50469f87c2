"""From a directory tree to snippets: the files worth indexing, cut into overlapping line windows.

:func:`walk_tree` lists the text files under a root the way ``git`` would see them: every
``.gitignore`` on the way is honoured (its patterns relative to its own directory, deeper files
and later lines winning, ``!`` re-includes, ignored directories never entered), ``.git`` /
``.hg`` / ``.svn`` are never entered, symbolic links are not followed. A file is skipped, and
counted under its reason, when it is binary (a NUL byte in its first 8 KiB), larger than
``max_file_bytes``, not UTF-8, unreadable, has a line longer than ``max_line_chars`` (minified
or generated), or does not match any ``--include`` glob.

:func:`cut_snippets` cuts one file into windows of about ``snippet_lines`` lines that overlap by
``overlap`` lines. Each window's end may move up to a quarter of its length to a better place to
cut: right before a ``def`` / ``class`` / decorator line or a Markdown heading (best), or right
after a blank line. A window that ends right before such a definition or heading starts the next
one there (nothing straddles that cut, so no overlap is needed); other windows overlap. Windows
of whitespace only are dropped. Line numbers are 1-based and inclusive.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ejc.errors import SearchError

DEFAULT_SNIPPET_LINES = 20
DEFAULT_OVERLAP = 5
DEFAULT_MAX_FILE_BYTES = 1_000_000
DEFAULT_MAX_LINE_CHARS = 2_000
VCS_DIRS = frozenset({".git", ".hg", ".svn"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdx", ".rst"})
SKIP_REASONS = ("gitignored", "not_included", "binary", "too_large", "not_utf8", "unreadable", "long_lines", "symlink", "empty")

_DEF = re.compile(r"^\s*(?:async\s+def|def|class|fn|func|function|interface|struct|impl|trait|type|enum)\s+\w")
_DECORATOR = re.compile(r"^\s*@\w")
_HEADING = re.compile(r"^#{1,6}\s")


@dataclass(frozen=True)
class SourceFile:
    """One indexable text file: ``path`` relative to the root (POSIX separators)."""

    path: str
    text: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Snippet:
    """Lines ``start..end`` (1-based, inclusive) of ``path``; ``text`` is exactly those lines."""

    path: str
    start: int
    end: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.start}-{self.end}"


@dataclass
class WalkResult:
    """What :func:`walk_tree` found: the files kept, and per reason how many entries it skipped
    (``gitignored`` counts ignored files and ignored directories, each directory once) with up to
    five example paths each."""

    files: list[SourceFile] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, path: str) -> None:
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 5:
            ex.append(path)

    def summary(self) -> dict[str, Any]:
        return {"files": len(self.files), "skipped": dict(sorted(self.skipped.items())), "skipped_examples": self.examples}


# ----------------------------------------------------------------------------------------------
# walking


def _pathspec() -> Any:
    try:
        import pathspec
    except ImportError as e:  # a core dependency; only a broken install lacks it
        from ejc.errors import MissingDependencyError

        raise MissingDependencyError("pathspec", "text", "reading .gitignore files") from e
    return pathspec


def _read_gitignore(path: Path) -> Any | None:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return _pathspec().GitIgnoreSpec.from_lines(lines) if lines else None


def _ignored(specs: Sequence[tuple[str, Any]], rel: str, is_dir: bool) -> bool:
    """Git's rule: the deepest ``.gitignore`` with a matching pattern decides (its last match)."""
    for base, spec in reversed(specs):
        sub = rel[len(base) + 1:] if base else rel
        res = spec.check_file(sub + "/" if is_dir else sub)
        if res.include is not None:
            return bool(res.include)
    return False


def include_matcher(globs: Iterable[str] | None) -> Any | None:
    """A matcher of ``--include`` globs (gitignore syntax: ``*.py`` anywhere, ``src/**/*.md``), or None."""
    pats = [g for g in (globs or []) if g.strip()]
    if not pats:
        return None
    return _pathspec().GitIgnoreSpec.from_lines(pats)


def walk_tree(
    root: str | os.PathLike[str],
    include: Iterable[str] | None = None,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> WalkResult:
    """The indexable text files under ``root``, sorted by path (see the module docstring).

    ``exclude``: directories never entered (e.g. the index being written, when it sits inside
    ``root``). Raises :class:`SearchError` when ``root`` is not a readable directory.
    """
    top = Path(root)
    if not top.is_dir():
        raise SearchError(f"{root}: not a directory; give the directory to index")
    top = top.resolve()
    skip_dirs = {Path(p).resolve() for p in exclude}
    inc = include_matcher(include)
    out = WalkResult()

    def walk(d: Path, rel: str, specs: list[tuple[str, Any]]) -> None:
        gi = d / ".gitignore"
        if gi.is_file():
            spec = _read_gitignore(gi)
            if spec is not None:
                specs = [*specs, (rel, spec)]
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            out.skip("unreadable", rel or ".")
            return
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            if e.is_symlink():
                out.skip("symlink", r)
                continue
            if e.is_dir():
                if e.name in VCS_DIRS or Path(e.path).resolve() in skip_dirs:
                    continue
                if _ignored(specs, r, True):
                    out.skip("gitignored", r + "/")
                    continue
                walk(Path(e.path), r, specs)
            elif e.is_file():
                if _ignored(specs, r, False):
                    out.skip("gitignored", r)
                elif inc is not None and not inc.match_file(r):
                    out.skip("not_included", r)
                else:
                    _read_source(Path(e.path), r, out, max_file_bytes, max_line_chars)

    walk(top, "", [])
    return out


def _read_source(path: Path, rel: str, out: WalkResult, max_file_bytes: int, max_line_chars: int) -> None:
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            out.skip("too_large", rel)
            return
        data = path.read_bytes()
    except OSError:
        out.skip("unreadable", rel)
        return
    if b"\0" in data[:8192]:
        out.skip("binary", rel)
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        out.skip("not_utf8", rel)
        return
    if not text.strip():
        out.skip("empty", rel)
        return
    if max(map(len, text.splitlines()), default=0) > max_line_chars:
        out.skip("long_lines", rel)
        return
    out.files.append(SourceFile(rel, text, hashlib.sha256(data).hexdigest(), len(data)))


# ----------------------------------------------------------------------------------------------
# cutting


def _cut_scores(lines: Sequence[str], markdown: bool) -> list[int]:
    """``score[i]``: how good a place it is to cut right before line ``i`` (0-based); 3 before a
    definition (or its first decorator) or a heading, 2 after a blank line, else 0."""
    n = len(lines)
    score = [0] * (n + 1)
    score[n] = 3
    for i in range(1, n):
        line, prev = lines[i], lines[i - 1]
        if markdown:
            starts = bool(_HEADING.match(line)) and not _HEADING.match(prev)
        else:
            starts = (bool(_DEF.match(line)) and not _DECORATOR.match(prev)) or (bool(_DECORATOR.match(line)) and not _DECORATOR.match(prev))
        if starts:
            score[i] = 3
        elif not prev.strip():
            score[i] = 2
    return score


def cut_snippets(path: str, text: str, snippet_lines: int = DEFAULT_SNIPPET_LINES, overlap: int = DEFAULT_OVERLAP) -> list[Snippet]:
    """Overlapping line windows of one file (see the module docstring), in file order."""
    check_window(snippet_lines, overlap)
    lines = text.splitlines()
    n = len(lines)
    if n == 0:
        return []
    score = _cut_scores(lines, Path(path).suffix.lower() in MARKDOWN_SUFFIXES)
    slack = max(1, snippet_lines // 4)
    out: list[Snippet] = []
    start = 0
    while start < n:
        target = start + snippet_lines
        if n <= target + slack:  # the rest fits in one window
            end = n
        else:  # the best place to cut within target +- slack, the nearest of equals
            lo = max(start + overlap + 1, target - slack)
            end = max(range(lo, target + slack + 1), key=lambda e: (score[e], -abs(e - target)))
        body = lines[start:end]
        if any(s.strip() for s in body):
            out.append(Snippet(path, start + 1, end, "\n".join(body)))
        if end >= n:
            break
        start = end if score[end] == 3 else end - overlap
    return out


def check_window(snippet_lines: int, overlap: int) -> None:
    if not isinstance(snippet_lines, int) or snippet_lines < 2:
        raise SearchError(f"--snippet-lines must be an integer of at least 2, got {snippet_lines!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < snippet_lines:
        raise SearchError(f"--overlap must be an integer in [0, --snippet-lines), got {overlap!r} with --snippet-lines {snippet_lines}")


def iter_snippets(files: Iterable[SourceFile], snippet_lines: int = DEFAULT_SNIPPET_LINES, overlap: int = DEFAULT_OVERLAP) -> Iterator[Snippet]:
    for f in files:
        yield from cut_snippets(f.path, f.text, snippet_lines, overlap)


__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_SNIPPET_LINES",
    "SKIP_REASONS",
    "Snippet",
    "SourceFile",
    "WalkResult",
    "check_window",
    "cut_snippets",
    "include_matcher",
    "iter_snippets",
    "walk_tree",
]
