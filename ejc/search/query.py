"""Searching a published snippet index: by text (hybrid, dense, lexical) and by example (similar).

    index = SearchIndex.load("runs/ejc.index")
    hits = index.query("write the index atomically", k=10)          # [SearchHit(path, start, end, score)]
    index.similar("ejc/cube/index.py", 120, k=5)                    # snippets most like the one holding line 120
    search_response("write the index atomically", hits)             # {"query", "results": [{path, start, end, score}]}

Modes: ``dense`` ranks by cosine similarity of MiniLM vectors (the cube's text space);
``lexical`` by BM25 over code-aware tokens (only snippets sharing a token with the query);
``hybrid`` (default) fuses both candidate lists (the top :data:`CANDIDATES` of each) with
:data:`DEFAULT_FUSION`, chosen on the benchmark's validation queries only (benchmarks/RESULTS.md,
"Snippet search"). Scores are "higher is better" within one mode; hybrid scores are fusion
scores, not similarities.

Shapes: ``n`` snippets, ``c`` candidates per list.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ejc.errors import SearchError
from ejc.search.index import MODALITY, current_version_dir, embedder_for, read_manifest, read_table
from ejc.search.lexical import BM25Index, tokenize

MODES = ("hybrid", "dense", "lexical")
CANDIDATES = 100
MAX_QUERY_CHARS = 2000
MAX_K = 1000


@dataclass(frozen=True)
class Fusion:
    """How hybrid mode merges the dense and lexical lists.

    ``method="rrf"``: reciprocal rank fusion, ``score = w / (k + rank_dense) + (1 - w) / (k + rank_bm25)``
    (rank 1 = best; a list that misses a snippet adds nothing). ``method="convex"``:
    ``w * dense' + (1 - w) * bm25'`` with each list's scores min-max scaled to [0, 1] over its
    candidates (0 for a snippet a list misses).
    """

    method: str = "rrf"
    k: float = 60.0
    dense_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "convex"):
            raise SearchError(f"fusion method must be 'rrf' or 'convex', got {self.method!r}")
        if not 0.0 <= self.dense_weight <= 1.0 or self.k < 0:
            raise SearchError("fusion dense_weight must be in [0, 1] and k non-negative")


# The best mean validation MRR@10 of the sweep in ejc/eval/search.py (click, flask, requests,
# rich; 319 validation queries), with the index's default max_tokens=128: convex(w=0.6) 0.481,
# dense alone 0.434, BM25 0.383 (benchmarks/RESULTS.md, "Snippet search (issue 18)").
DEFAULT_FUSION = Fusion("convex", 0.0, 0.6)


@dataclass(frozen=True)
class SearchHit:
    """One result: lines ``start..end`` (1-based, inclusive) of ``path`` (relative to the indexed root)."""

    path: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "start": self.start, "end": self.end, "score": round(float(self.score), 6)}

    def __str__(self) -> str:
        return f"{self.path}:{self.start}-{self.end}  {self.score:.3f}"


def search_response(query: str, hits: Sequence[SearchHit], texts: Sequence[str] | None = None) -> dict[str, Any]:
    """The JSON answer of ``ejc search query --json``, ``similar --json`` and ``/v1/search``;
    ``texts`` (``--show-code``) adds each result's ``code``."""
    results = [h.to_dict() for h in hits]
    if texts is not None:
        for r, t in zip(results, texts):
            r["code"] = t
    return {"query": query, "results": results}


def check_query(text: Any, k: Any, mode: str = "hybrid") -> str:
    """``text`` stripped, or :class:`SearchError` for an empty / too long query, a bad ``k`` or ``mode``."""
    if not isinstance(text, str) or not text.strip():
        raise SearchError("the query is empty (only whitespace); say what the code does, e.g. \"parse an HTTP date\"")
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"the query has {len(text)} characters; at most {MAX_QUERY_CHARS} are read, shorten it")
    check_k(k)
    if mode not in MODES:
        raise SearchError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return text.strip()


def check_k(k: Any) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise SearchError(f"-k must be an integer in [1, {MAX_K}], got {k!r}")
    return int(k)


class SearchIndex:
    """A loaded snippet index (see :mod:`ejc.search.index` for what is on disk).

    ``embedder``: what embeds queries (default: the kind the index was built with, from its
    manifest; MiniLM is loaded on the first dense or hybrid query). ``mmap``: memory-map the vector and BM25
    indices read-only (servers).
    """

    def __init__(self, path: Path, manifest: dict[str, Any], rows: dict[str, list[Any]], cube: Any, bm25: BM25Index, embedder: Any = None) -> None:
        self.path = path
        self.manifest = manifest
        self.ids: list[str] = rows["id"]
        self.paths: list[str] = rows["path"]
        self.starts: list[int] = rows["start"]
        self.ends: list[int] = rows["end"]
        self.texts: list[str] = rows["text"]
        self.cube = cube
        self.bm25 = bm25
        self._embedder = embedder
        self._row = {sid: i for i, sid in enumerate(self.ids)}
        self._by_file: dict[str, list[int]] = {}
        for i, p in enumerate(self.paths):
            self._by_file.setdefault(p, []).append(i)
        for rows_of in self._by_file.values():
            rows_of.sort(key=lambda i: (self.starts[i], self.ends[i]))

    @classmethod
    def load(cls, index: str | os.PathLike[str], *, embedder: Any = None, mmap: bool = False) -> SearchIndex:
        from ejc.cube.cube import EmbeddingCube
        from ejc.errors import CubeError, VectorIndexError

        vdir = current_version_dir(index)
        m = read_manifest(vdir)
        t = read_table(vdir / "snippets.parquet").select(["id", "path", "start", "end", "text"])
        rows = {c: t.column(c).to_pylist() for c in t.column_names}
        try:
            cube = EmbeddingCube.load(vdir / "cube", mmap=mmap)
        except (CubeError, VectorIndexError) as e:
            raise SearchError(f"{vdir / 'cube'}: {e}; run `ejc search index` again") from e
        bm25 = BM25Index.load(vdir / "bm25", mmap=mmap)
        if len(cube) != len(rows["id"]) or bm25.num_docs != len(rows["id"]):
            raise SearchError(f"{vdir}: its vectors, BM25 index and snippet table disagree in size; run `ejc search index` again")
        return cls(vdir, m, rows, cube, bm25, embedder)

    # -- facts ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def root(self) -> str:
        return str(self.manifest["root"])

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = embedder_for(self.manifest)
        return self._embedder

    def hit(self, row: int, score: float) -> SearchHit:
        return SearchHit(self.paths[row], int(self.starts[row]), int(self.ends[row]), float(score))

    def text(self, hit: SearchHit) -> str:
        """The lines of a hit (as indexed)."""
        return self.texts[self._row[f"{hit.path}:{hit.start}-{hit.end}"]]

    # -- text queries --------------------------------------------------------------------------

    def dense(self, text: str, c: int = CANDIDATES) -> list[tuple[int, float]]:
        """``(row, cosine)`` of the ``c`` nearest snippets, best first."""
        vec = self.embedder.embed([text])[0]  # [d]
        found = self.cube.find_similar(vec, MODALITY, k=min(c, len(self)))
        return [(self._row[nb.entity_id], float(nb.score)) for nb in found]

    def lexical(self, text: str, c: int = CANDIDATES) -> list[tuple[int, float]]:
        """``(row, BM25)`` of the ``c`` best snippets with a positive score, best first."""
        scores = self.bm25.scores(tokenize(text))  # [n]
        pos = np.flatnonzero(scores > 0)
        if len(pos) > c:
            pos = pos[np.argpartition(-scores[pos], c - 1)[:c]]
        order = pos[np.lexsort((pos, -scores[pos]))]  # best first, ties in index order
        return [(int(i), float(scores[i])) for i in order]

    def query(self, text: str, k: int = 10, mode: str = "hybrid", fusion: Fusion | None = None) -> list[SearchHit]:
        """The ``k`` best snippets for ``text`` in ``mode`` (see the module docstring)."""
        text = check_query(text, k, mode)
        c = max(CANDIDATES, int(k))
        if mode == "dense":
            ranked = self.dense(text, c)
        elif mode == "lexical":
            ranked = self.lexical(text, c)
        else:
            ranked = fuse(self.dense(text, c), self.lexical(text, c), fusion or DEFAULT_FUSION)
        return [self.hit(r, s) for r, s in ranked[: int(k)]]

    # -- query by example ----------------------------------------------------------------------

    def resolve_path(self, path: str) -> str:
        """``path`` as stored (relative to the indexed root); also accepts ``./x`` and a path (absolute,
        or relative to the working directory) of a file under the indexed root."""
        p = re.sub(r"^(\./)+", "", path.replace(os.sep, "/"))
        if p not in self._by_file:
            try:
                p = Path(path).resolve().relative_to(Path(self.root)).as_posix()
            except ValueError:
                pass
        if p not in self._by_file:
            raise SearchError(f"{path}: not in the index ({len(self._by_file)} files indexed, paths relative to {self.root}); check the path or re-index")
        return p

    def snippet_at(self, path: str, line: int) -> int:
        """The row of the snippet of ``path`` that holds ``line`` nearest its middle."""
        p = self.resolve_path(path)
        if not isinstance(line, (int, np.integer)) or line < 1:
            raise SearchError(f"{path}:{line}: line numbers start at 1")
        rows = self._by_file[p]
        holding = [r for r in rows if self.starts[r] <= line <= self.ends[r]]
        if not holding:
            last = max(self.ends[r] for r in rows)
            where = f"the file's snippets end at line {last}" if line > last else "it falls in a blank stretch, which is not indexed"
            raise SearchError(f"{p}:{line}: no snippet holds this line ({where}); pick a line with code or text")
        return min(holding, key=lambda r: (abs((self.starts[r] + self.ends[r]) / 2 - line), self.starts[r]))

    def similar(self, path: str, line: int, k: int = 5) -> list[SearchHit]:
        """The ``k`` snippets most similar (cosine of their vectors) to the one holding ``path:line``,
        excluding itself and the windows of the same file that overlap it."""
        k = check_k(k)
        seed = self.snippet_at(path, line)
        p, s, e = self.paths[seed], self.starts[seed], self.ends[seed]
        overlapping = {r for r in self._by_file[p] if self.starts[r] <= e and self.ends[r] >= s}
        want = min(len(self) - 1, k + len(overlapping))
        if want < 1:
            return []
        found = self.cube.find_similar(self.ids[seed], MODALITY, k=want)
        hits = [(self._row[nb.entity_id], float(nb.score)) for nb in found]
        return [self.hit(r, sc) for r, sc in hits if r not in overlapping][:k]

    def line_spans(self, path: str) -> list[tuple[int, int]]:
        """``(start, end)`` of every snippet of ``path``, in file order."""
        p = self.resolve_path(path)
        return [(self.starts[r], self.ends[r]) for r in self._by_file[p]]


def fuse(dense: Sequence[tuple[int, float]], lexical: Sequence[tuple[int, float]], fusion: Fusion) -> list[tuple[int, float]]:
    """Merge two best-first ``(row, score)`` lists into one (see :class:`Fusion`); ties keep dense order."""
    w = fusion.dense_weight
    total: dict[int, float] = {}
    if fusion.method == "rrf":
        for rank, (r, _) in enumerate(dense, 1):
            total[r] = total.get(r, 0.0) + w / (fusion.k + rank)
        for rank, (r, _) in enumerate(lexical, 1):
            total[r] = total.get(r, 0.0) + (1 - w) / (fusion.k + rank)
    else:
        for lst, weight in ((dense, w), (lexical, 1 - w)):
            if not lst:
                continue
            vals = np.array([s for _, s in lst], np.float64)
            lo, hi = float(vals.min()), float(vals.max())
            span = hi - lo if hi > lo else 1.0
            for r, s in lst:
                total[r] = total.get(r, 0.0) + weight * ((s - lo) / span if hi > lo else 1.0)
    order: dict[int, int] = {}
    for i, (r, _) in enumerate([*dense, *lexical]):
        order.setdefault(r, i)
    return sorted(total.items(), key=lambda rs: (-rs[1], order[rs[0]]))


__all__ = ["CANDIDATES", "DEFAULT_FUSION", "MODES", "Fusion", "SearchHit", "SearchIndex", "check_query", "fuse", "search_response"]
