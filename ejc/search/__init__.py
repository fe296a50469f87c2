"""Semantic search over code and text snippets (``ejc search index | query | similar``).

    from ejc.search import build_index, SearchIndex
    build_index("ejc", "runs/ejc.index")                  # walk, cut, embed, BM25, publish atomically
    index = SearchIndex.load("runs/ejc.index")
    index.query("write the index atomically", k=5)       # hybrid (default), "dense" or "lexical"
    index.similar("ejc/cube/index.py", 120, k=5)         # like the snippet holding that line

A directory becomes overlapping line windows (:mod:`ejc.search.snippets`), each an entity of an
:class:`~ejc.cube.cube.EmbeddingCube` text space (MiniLM vectors; its directory and file as
hierarchy levels) plus a BM25 index over code-aware tokens (:mod:`ejc.search.lexical`), stored
and updated as described in :mod:`ejc.search.index`; :mod:`ejc.search.query` searches it.
Importing this package loads neither torch nor the model.
"""

from ejc.search.index import HashEmbedder, IndexSettings, SnippetEmbedder, build_index, current_version_dir
from ejc.search.lexical import BM25Index, keyword_overlap_scores, tokenize
from ejc.search.query import DEFAULT_FUSION, MODES, Fusion, SearchHit, SearchIndex, fuse, search_response
from ejc.search.snippets import Snippet, SourceFile, WalkResult, cut_snippets, walk_tree

__all__ = [
    "BM25Index",
    "DEFAULT_FUSION",
    "Fusion",
    "HashEmbedder",
    "IndexSettings",
    "MODES",
    "SearchHit",
    "SearchIndex",
    "Snippet",
    "SnippetEmbedder",
    "SourceFile",
    "WalkResult",
    "build_index",
    "current_version_dir",
    "cut_snippets",
    "fuse",
    "keyword_overlap_scores",
    "search_response",
    "tokenize",
    "walk_tree",
]
