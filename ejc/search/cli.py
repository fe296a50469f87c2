"""``ejc search index | query | similar``: semantic search over code and text snippets.

    ejc search index DIR --out INDEX [--snippet-lines 20] [--overlap 5] [--include GLOB ...] [--watch SECONDS]
    ejc search query "TEXT" --index INDEX [-k 10] [--mode hybrid|dense|lexical] [--show-code] [--json]
    ejc search similar PATH:LINE --index INDEX [-k 5] [--show-code] [--json]

``index`` prints one JSON summary line (progress on stderr). ``query`` and ``similar`` print one
``path:start-end  score`` line per result (with ``--show-code`` the lines follow, indented), or
with ``--json`` one JSON object ``{"query", "results": [{"path", "start", "end", "score"}, ...]}``
(``similar``'s query is ``"PATH:LINE"``). Registered by :func:`ejc.cli.build_parser` through
:func:`add_search_commands`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ejc.errors import SearchError
from ejc.search.snippets import DEFAULT_MAX_FILE_BYTES, DEFAULT_OVERLAP, DEFAULT_SNIPPET_LINES


def add_search_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ejc search`` and its subcommands on the top-level subparsers."""
    p = sub.add_parser("search", help="semantic search over code and text snippets: index a directory, query it, find similar code")
    cmds = p.add_subparsers(dest="search_command", required=True)

    q = cmds.add_parser("index", help="index DIR into overlapping line windows (MiniLM vectors in a cube + BM25); incremental, published atomically")
    q.add_argument("dir", type=Path, help="directory to index (.gitignore honoured; binary, huge and non-UTF-8 files skipped and counted)")
    q.add_argument("--out", required=True, type=Path, help="index directory (created, or updated in place: only changed files are re-embedded)")
    q.add_argument("--snippet-lines", type=int, default=DEFAULT_SNIPPET_LINES, help=f"lines per snippet (default {DEFAULT_SNIPPET_LINES}; ends move to a def/class/heading or blank line when near)")
    q.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help=f"lines shared by consecutive snippets (default {DEFAULT_OVERLAP})")
    q.add_argument("--include", nargs="+", action="extend", default=[], metavar="GLOB", help="only files matching one of these gitignore-style globs, e.g. '*.py' 'docs/**/*.md'")
    q.add_argument("--max-file-bytes", type=int, default=DEFAULT_MAX_FILE_BYTES, help=f"skip larger files (default {DEFAULT_MAX_FILE_BYTES})")
    q.add_argument("--max-tokens", type=int, default=None, help="word pieces of a snippet the embedder reads (default 128, chosen on validation queries; MiniLM reads at most 256)")
    q.add_argument("--batch-size", type=int, default=32, help="snippets per embedding batch")
    q.add_argument("--text-cache", type=Path, default=None, help="persistent embedding cache directory shared between indices")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="keep running: poll the tree every SECONDS and re-index when a file changed (the model stays loaded); one JSON line per build; Ctrl-C stops")
    q.set_defaults(func=_cmd_index)

    q = cmds.add_parser("query", help="snippets matching a text: hybrid (default), dense or lexical")
    q.add_argument("text", help="what the code does, or identifiers it uses")
    _common(q, default_k=10)
    q.add_argument("--mode", default="hybrid", choices=("hybrid", "dense", "lexical"), help="hybrid: fusion of dense and BM25 (default)")
    q.set_defaults(func=_cmd_query)

    q = cmds.add_parser("similar", help="snippets most like the one holding PATH:LINE (itself and its overlapping windows left out)")
    q.add_argument("location", metavar="PATH:LINE", help="a file of the index (relative to the indexed root) and a line in it, e.g. ejc/cube/index.py:120")
    _common(q, default_k=5)
    q.set_defaults(func=_cmd_similar)


def _common(q: argparse.ArgumentParser, default_k: int) -> None:
    q.add_argument("--index", required=True, type=Path, help="index directory written by `ejc search index`")
    q.add_argument("-k", type=int, default=default_k, help=f"number of results (default {default_k})")
    q.add_argument("--show-code", action="store_true", help="print each result's lines (with --json: a 'code' field)")
    q.add_argument("--json", action="store_true", help='one JSON object {"query", "results": [{"path", "start", "end", "score"}]}')


def _threads(n: int | None) -> None:
    if n is None:
        return
    if n < 1:
        raise SearchError("--threads must be at least 1")
    import torch

    torch.set_num_threads(n)


def _cmd_index(args: argparse.Namespace) -> int:
    from ejc.search.index import IndexSettings, build_index

    _threads(args.threads)
    settings = IndexSettings(snippet_lines=args.snippet_lines, overlap=args.overlap, include=list(args.include), max_file_bytes=args.max_file_bytes)
    if args.max_tokens is not None:
        settings.max_tokens = args.max_tokens
    if args.batch_size < 1:
        raise SearchError("--batch-size must be at least 1")
    kw = {"batch_size": args.batch_size, "cache_dir": args.text_cache, "progress": False if args.no_progress else None}
    if args.watch is None:
        print(json.dumps(build_index(args.dir, args.out, settings, **kw), default=str), flush=True)
        return 0
    from ejc.search.index import watch_index

    try:
        for summary in watch_index(args.dir, args.out, settings, interval=args.watch, **kw):
            print(json.dumps(summary, default=str), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def _load(args: argparse.Namespace) -> Any:
    from ejc.search.query import SearchIndex, check_k

    check_k(args.k)
    return SearchIndex.load(args.index)


def _print_hits(index: Any, query: str, hits: list[Any], args: argparse.Namespace) -> None:
    from ejc.search.query import search_response

    texts = [index.text(h) for h in hits] if args.show_code else None
    if args.json:
        print(json.dumps(search_response(query, hits, texts)), flush=True)
        return
    lines = []
    for i, h in enumerate(hits):
        lines.append(f"{h.path}:{h.start}-{h.end}  {h.score:.4g}")
        if texts is not None:
            lines.extend(f"    {ln}" for ln in texts[i].splitlines())
            lines.append("")
    print("\n".join(lines) if lines else "(no results)", flush=True)


def _cmd_query(args: argparse.Namespace) -> int:
    from ejc.search.query import check_query

    text = check_query(args.text, args.k, args.mode)  # before loading anything
    index = _load(args)
    _print_hits(index, args.text, index.query(text, k=args.k, mode=args.mode), args)
    return 0


def _cmd_similar(args: argparse.Namespace) -> int:
    m = re.fullmatch(r"(.+):(\d+)", args.location.strip())
    if m is None:
        raise SearchError(f"{args.location!r}: give PATH:LINE, e.g. ejc/cube/index.py:120")
    index = _load(args)
    _print_hits(index, args.location, index.similar(m.group(1), int(m.group(2)), k=args.k), args)
    return 0


__all__ = ["add_search_commands"]
