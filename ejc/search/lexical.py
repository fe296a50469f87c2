"""The lexical side of snippet search: code-aware tokens, a BM25 index (``bm25s``) and the plain
keyword-overlap baseline.

:func:`tokenize` lower-cases and keeps every identifier whole (``parse_http_date``,
``getattr``) and, for compound ones, also its parts: ``snake_case`` splits at underscores,
``camelCase`` / ``HTTPServer`` at case changes and digits (``parse``, ``http``, ``date``). A
query ``"parse an HTTP date"`` thus meets code that only says ``parse_http_date(...)``, and a
query naming the identifier itself meets it whole. Common English words are dropped; a word
ending in ``s`` (not ``ss``) also yields its singular (``returns`` -> ``return``) so docstring
verbs meet code keywords. :func:`document_tokens` (what a snippet is indexed as) counts the
names the snippet defines twice.

Shapes: ``n`` snippets.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ejc.errors import MissingDependencyError, SearchError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have if in into is it its of on or that the their then there these this "
    "to was were which will with when where who whom what why how can could should would may might do does did not no "
    "so such than too very just also any each other our we you your he she they them i me my".split()
)


def _plural(word: str) -> str | None:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return None


@functools.lru_cache(maxsize=1 << 16)
def _word_tokens(word: str) -> tuple[str, ...]:
    """The tokens of one identifier (cached: identifiers repeat across snippets)."""
    whole = word.strip("_").lower()
    if not whole or whole in STOPWORDS:
        return ()
    parts = [p.lower() for chunk in word.split("_") if chunk for p in _PARTS.findall(chunk)]
    if len(parts) > 1:
        return (whole, *(p for p in parts if p not in STOPWORDS))
    sing = _plural(whole)
    return (whole,) if sing is None else (whole, sing)


def tokenize(text: str) -> list[str]:
    """Lower-case tokens of ``text`` (see the module docstring); order kept, repeats kept."""
    out: list[str] = []
    for m in _IDENT.finditer(text):
        out.extend(_word_tokens(m.group()))
    return out


_DEFINED = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_][A-Za-z0-9_]*)", re.M)


def document_tokens(text: str) -> list[str]:
    """What BM25 indexes for a snippet: :func:`tokenize` of its text, plus the tokens of every
    name it defines (``def`` / ``class`` lines) once more, so a snippet that defines a name
    outranks one that only calls it (validation MRR@10 of BM25 0.338 -> 0.383, benchmarks/RESULTS.md)."""
    out = tokenize(text)
    for name in _DEFINED.findall(text):
        out.extend(_word_tokens(name))
    return out


def words(text: str) -> set[str]:
    """Distinct lower-case words (letters and digits) of ``text``: the keyword-overlap baseline's view."""
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS}


def keyword_overlap_scores(query: str, texts: Sequence[str]) -> np.ndarray:
    """Per text ``[n]``: how many of the query's distinct words it contains (the plain baseline)."""
    q = words(query)
    return np.array([len(q & words(t)) for t in texts], np.float32)


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as e:
        raise MissingDependencyError("bm25s", "text", "lexical snippet search") from e
    return bm25s


class BM25Index:
    """BM25 (Lucene variant, ``k1=1.5``, ``b=0.75``) over tokenised snippets, with ``bm25s``.

    ``scores(query)`` gives every snippet's score ``[n]`` (0 where no query token occurs).
    """

    def __init__(self, model: Any, num_docs: int) -> None:
        self._model = model
        self.num_docs = int(num_docs)

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], k1: float = 1.5, b: float = 0.75) -> BM25Index:
        tokens = [list(d) for d in docs]
        if not tokens:
            raise SearchError("no snippets to build a BM25 index from")
        model = _bm25s().BM25(k1=k1, b=b)
        model.index(tokens, show_progress=False)
        return cls(model, len(tokens))

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        vocab = self._model.vocab_dict
        ids = [vocab[t] for t in query_tokens if t in vocab and t != ""]
        if not ids:
            return np.zeros(self.num_docs, np.float32)
        return np.asarray(self._model.get_scores(ids), np.float32)  # [n]

    def save(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        self._model.save(str(p))
        (p / "ejc_bm25.json").write_text(json.dumps({"num_docs": self.num_docs}))

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> BM25Index:
        p = Path(path)
        try:
            meta = json.loads((p / "ejc_bm25.json").read_text())
            model = _bm25s().BM25.load(str(p), mmap=mmap)
        except (OSError, ValueError, KeyError) as e:
            raise SearchError(f"{p}: the BM25 index is missing or unreadable ({e}); run `ejc search index` again") from e
        return cls(model, meta["num_docs"])


__all__ = ["BM25Index", "STOPWORDS", "document_tokens", "keyword_overlap_scores", "tokenize", "words"]
