"""``ejc evaluate search``: snippet search on real code nobody here wrote, through the product path.

The benchmark comes from the Python sources of an installed package (default ``click``):

- every documented public function (its name, its class's and its module's without a leading
  ``_``; methods included, functions inside functions not) gives one query, the first sentence
  of its docstring, and one answer, the snippets that hold its ``def`` line (windows overlap, so
  one or two snippets; any of them counts as found);
- every docstring (module, class, function) is removed from the indexed copy, so no answer can
  be found by copying the query; queries whose text repeats are dropped (ambiguous);
- queries are split by a hash of ``path:qualname`` into validation (``--val-fraction``, default
  0.4) and test; the fusion sweep in ``details.validation`` reads the validation queries only,
  every figure in ``metrics`` is on the test queries.

The stripped copy is indexed with :func:`ejc.search.build_index` (what ``ejc search index``
runs) and queried with :meth:`ejc.search.SearchIndex.query` (what ``ejc search query`` runs).
Rows: ``ejc`` (hybrid, the shipped fusion), ``dense`` (MiniLM only), ``bm25`` (lexical only),
``keyword_overlap`` (count of distinct query words in the snippet's text, ties in file order).
Metrics: ``mrr_at_10`` (1/rank of the first answer in the top 10, else 0), ``recall_at_1`` and
``recall_at_10`` (share of queries with an answer in the top 1 / 10).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import importlib.util
import inspect
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ejc.errors import EjcError

DEFAULT_PACKAGE = "click"
METRIC_K = 10


@dataclass(frozen=True)
class BenchQuery:
    """One query: the docstring's first sentence of ``qualname`` in ``path``; ``line`` = its
    ``def`` line in the stripped copy (1-based)."""

    path: str
    qualname: str
    line: int
    text: str
    split: str  # "validation" or "test"


@dataclass
class Benchmark:
    name: str
    version: str | None
    source: str
    root: Path  # the stripped copy that gets indexed
    queries: list[BenchQuery]
    stats: dict[str, int]


# ----------------------------------------------------------------------------------------------
# building the benchmark


def package_dir(name: str) -> tuple[Path, str | None]:
    """The source directory and installed version of the importable package ``name``."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as e:
        raise EjcError(f"cannot locate package {name!r} ({e}); name an installed package or pass --src DIR") from e
    if spec is None or not spec.submodule_search_locations:
        raise EjcError(f"{name!r} is not an installed package (a directory of modules); name one, e.g. click, flask, requests, or pass --src DIR")
    version = None
    try:
        dists = importlib.metadata.packages_distributions().get(name, [name])
        version = importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        pass
    return Path(list(spec.submodule_search_locations)[0]), version


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, whitespace collapsed."""
    para = inspect.cleandoc(doc).split("\n\n")[0]
    para = " ".join(para.split())
    m = re.match(r"(.+?[.!?])(?:\s|$)", para)
    return m.group(1) if m else para


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        return body[0]
    return None


def _public(name: str) -> bool:
    return not name.startswith("_")


def strip_docstrings(source: str) -> tuple[str, dict[int, int], list[tuple[str, int, str]]] | None:
    """``source`` without docstrings, the old -> new line map, and ``(qualname, def line, docstring)``
    of its public functions with a docstring; None if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    lines = source.splitlines()
    drop: set[int] = set()  # 1-based lines removed whole
    inline: list[tuple[int, int, int, int]] = []  # docstrings sharing a line with code: replaced by ""
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, prefix: str, public: bool, in_function: bool) -> None:
        ds = _docstring_node(node) if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) else None
        if ds is not None:
            first, last = ds.lineno, ds.end_lineno or ds.lineno
            before = lines[first - 1][: ds.col_offset]
            after = lines[last - 1][ds.end_col_offset or 0:]
            if not before.strip() and (not after.strip() or after.strip().startswith("#")):
                drop.update(range(first, last + 1))
            else:
                inline.append((first, ds.col_offset, last, ds.end_col_offset or 0))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                q = f"{prefix}{child.name}"
                doc = ast.get_docstring(child, clean=False)
                if public and not in_function and _public(child.name) and doc and child.lineno not in drop:
                    found.append((q, child.lineno, doc))
                visit(child, q + ".", public and _public(child.name), True)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", public and _public(child.name) and not in_function, in_function)
            elif isinstance(child, (ast.If, ast.Try, ast.With)):  # definitions under `if TYPE_CHECKING:` etc.
                visit(child, prefix, public, in_function)

    visit(tree, "", True, False)
    for first, c0, last, c1 in sorted(inline, reverse=True):
        if first == last:
            lines[first - 1] = lines[first - 1][:c0] + '""' + lines[first - 1][c1:]
        else:
            lines[first - 1] = lines[first - 1][:c0] + '""' + lines[last - 1][c1:]
            drop.update(range(first + 1, last + 1))
    keep = [i for i in range(1, len(lines) + 1) if i not in drop]
    new_of = {old: new for new, old in enumerate(keep, 1)}
    text = "\n".join(lines[i - 1] for i in keep) + "\n"
    return text, new_of, [(q, new_of[ln], d) for q, ln, d in found if ln in new_of]


def _split_of(key: str, val_fraction: float) -> str:
    h = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < val_fraction else "test"


def build_benchmark(src: Path, work: Path, name: str, version: str | None, val_fraction: float = 0.4, min_words: int = 3) -> Benchmark:
    """Write the docstring-free copy of ``src``'s ``.py`` files under ``work/src`` and list the queries."""
    root = work / "src" / name
    if root.exists():
        shutil.rmtree(root)
    stats: Counter[str] = Counter()
    cands: list[tuple[str, str, int, str]] = []
    for f in sorted(src.rglob("*.py")):
        rel = f.relative_to(src).as_posix()
        if "__pycache__" in rel.split("/"):
            continue
        try:
            source = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            stats["unreadable_files"] += 1
            continue
        res = strip_docstrings(source)
        if res is None:
            stats["unparsable_files"] += 1
            continue
        text, _, funcs = res
        out = root / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        stats["files"] += 1
        private_module = any(part.startswith("_") and part != "__init__.py" for part in rel.split("/"))
        for qual, line, doc in funcs:
            if private_module:
                stats["skipped_private_module"] += 1
                continue
            sent = first_sentence(doc)
            if len(sent.split()) < min_words:
                stats["skipped_short_docstring"] += 1
                continue
            cands.append((rel, qual, line, sent))
    if not cands:
        raise EjcError(f"{src}: no documented public function found; pick a package with docstrings")
    counts = Counter(c[3].lower() for c in cands)
    queries = [BenchQuery(p, q, ln, t, _split_of(f"{p}:{q}", val_fraction)) for p, q, ln, t in cands if counts[t.lower()] == 1]
    stats["skipped_repeated_text"] = len(cands) - len(queries)
    stats["queries"] = len(queries)
    stats["validation"] = sum(q.split == "validation" for q in queries)
    stats["test"] = len(queries) - stats["validation"]
    return Benchmark(name, version, str(src), root, queries, dict(stats))


# ----------------------------------------------------------------------------------------------
# scoring


def rank_metrics(found_at: Sequence[int | None], k: int = METRIC_K) -> dict[str, float]:
    """Metrics of 1-based ranks of the first answer per query (None: not in the list).

    ``mrr_at_10`` = mean of 1/rank for rank <= 10 (else 0), ``recall_at_1`` / ``recall_at_10`` =
    share of queries answered at rank 1 / within 10.
    """
    n = len(found_at)
    if n == 0:
        return {f"mrr_at_{k}": float("nan"), "recall_at_1": float("nan"), f"recall_at_{k}": float("nan")}
    return {
        f"mrr_at_{k}": float(sum(1.0 / x for x in found_at if x is not None and x <= k) / n),
        "recall_at_1": float(sum(1 for x in found_at if x == 1) / n),
        f"recall_at_{k}": float(sum(1 for x in found_at if x is not None and x <= k) / n),
    }


def first_answer(ranked: Sequence[tuple[str, int, int]], q: BenchQuery) -> int | None:
    """1-based rank of the first ``(path, start, end)`` that holds the query's ``def`` line."""
    for i, (p, s, e) in enumerate(ranked, 1):
        if p == q.path and s <= q.line <= e:
            return i
    return None


def fusion_grid() -> list[Any]:
    from ejc.search.query import Fusion

    grid = [Fusion("rrf", float(k), w) for k in (5, 10, 20, 30, 60, 100) for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    grid += [Fusion("convex", 0.0, w) for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
    return grid


def fusion_name(f: Any) -> str:
    return f"rrf(k={f.k:g},w={f.dense_weight:g})" if f.method == "rrf" else f"convex(w={f.dense_weight:g})"


def run_search_benchmark(bench: Benchmark, work: Path, settings: Any, cache_dir: Path | None = None, progress: Any = None, sweep: bool = True,
                         embedder: Any = None) -> tuple[dict[str, dict[str, float]], float, dict[str, Any]]:
    """Index the stripped copy, answer every query in every mode; ``(metrics, index_seconds, details)``.

    ``embedder``: what embeds snippets and queries (default: MiniLM, with ``cache_dir`` for the
    snippets and a fresh in-memory cache for the queries)."""
    from ejc.search.index import SnippetEmbedder, build_index
    from ejc.search.lexical import words
    from ejc.search.query import DEFAULT_FUSION, SearchIndex, fuse

    say = progress or (lambda m: None)
    index_dir = work / "index"
    if index_dir.exists():
        shutil.rmtree(index_dir)
    builder = embedder if embedder is not None else SnippetEmbedder(settings.max_tokens, cache_dir=cache_dir)
    say(f"{bench.name}: {bench.stats['files']} files, {len(bench.queries)} queries ({bench.stats['validation']} validation, {bench.stats['test']} test); indexing")
    t0 = time.perf_counter()
    summary = build_index(bench.root, index_dir, settings, embedder=builder, log=say)
    index_seconds = time.perf_counter() - t0
    # the query-time embedder `ejc search query` uses (no cache): every query is embedded in every mode
    index = SearchIndex.load(index_dir, embedder=embedder)
    spans = [(index.paths[i], index.starts[i], index.ends[i]) for i in range(len(index))]
    snippet_words = [words(f"{p}\n{t}") for p, t in zip(index.paths, index.texts)]
    index.query("warm up the model", k=1)

    ranks: dict[str, dict[str, list[int | None]]] = {m: {"validation": [], "test": []} for m in ("ejc", "dense", "bm25", "keyword_overlap")}
    grid = fusion_grid() if sweep else []
    sweep_ranks: dict[str, list[int | None]] = {fusion_name(f): [] for f in grid}
    latency: dict[str, list[float]] = {"ejc": [], "dense": [], "bm25": []}
    for q in bench.queries:
        for method, mode in (("ejc", "hybrid"), ("dense", "dense"), ("bm25", "lexical")):
            t = time.perf_counter()
            hits = index.query(q.text, k=METRIC_K, mode=mode)
            latency[method].append(time.perf_counter() - t)
            ranks[method][q.split].append(first_answer([(h.path, h.start, h.end) for h in hits], q))
        qw = words(q.text)
        overlap = np.array([len(qw & w) for w in snippet_words], np.float32)
        top = [spans[i] for i in np.argsort(-overlap, kind="stable")[:METRIC_K] if overlap[i] > 0]
        ranks["keyword_overlap"][q.split].append(first_answer(top, q))
        if q.split == "validation" and grid:
            dense, lexical = index.dense(q.text), index.lexical(q.text)
            for f in grid:
                fused = fuse(dense, lexical, f)[:METRIC_K]
                sweep_ranks[fusion_name(f)].append(first_answer([spans[r] for r, _ in fused], q))
    metrics = {m: rank_metrics(r["test"]) for m, r in ranks.items()}
    validation = {m: rank_metrics(r["validation"]) for m, r in ranks.items()}
    sweep_metrics = {name: rank_metrics(r) for name, r in sweep_ranks.items()}
    best = max(sweep_metrics, key=lambda n: sweep_metrics[n][f"mrr_at_{METRIC_K}"]) if sweep_metrics else None
    details = {
        "package": bench.name,
        "package_version": bench.version,
        "source": bench.source,
        "benchmark": bench.stats,
        "index": {k: v for k, v in summary.items() if k not in ("skipped_examples",)},
        "index_seconds": round(index_seconds, 3),
        "embedding_cache": str(cache_dir) if cache_dir else None,
        "settings": asdict(settings),
        "fusion": fusion_name(DEFAULT_FUSION),
        "latency_ms": {m: {"p50": float(np.percentile(v, 50) * 1e3), "p95": float(np.percentile(v, 95) * 1e3)} for m, v in latency.items() if v},
        "validation": {"metrics": validation, "fusion_sweep": sweep_metrics, "best_fusion": best},
    }
    return metrics, index_seconds, details


# ----------------------------------------------------------------------------------------------
# the command


def add_search_task(tasks: argparse._SubParsersAction) -> None:
    """Register ``ejc evaluate search`` on the ``evaluate`` subparsers."""
    from ejc.eval.cli import _run_and_write
    from ejc.search.snippets import DEFAULT_OVERLAP, DEFAULT_SNIPPET_LINES

    q = tasks.add_parser("search", help="snippet search on an installed package's sources (docstring -> def): hybrid, dense, BM25, keyword overlap")
    q.add_argument("package", nargs="?", default=DEFAULT_PACKAGE, help=f"installed package whose sources make the benchmark (default {DEFAULT_PACKAGE})")
    q.add_argument("--src", type=Path, default=None, help="a source directory instead of an installed package")
    q.add_argument("--out", required=True, type=Path, help="result JSON file")
    q.add_argument("--work", type=Path, default=None, help="directory for the stripped sources and the index (default: OUT's name + '.search' beside --out)")
    q.add_argument("--val-fraction", type=float, default=0.4, help="share of queries for validation (default 0.4); the rest are the test queries")
    q.add_argument("--snippet-lines", type=int, default=DEFAULT_SNIPPET_LINES)
    q.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    q.add_argument("--max-tokens", type=int, default=None, help="word pieces the embedder reads per snippet (default: the index default)")
    q.add_argument("--text-cache", type=Path, default=None, help="persistent embedding cache (re-runs skip embedding; index speed is then not measured)")
    q.add_argument("--no-sweep", action="store_true", help="skip the validation sweep of fusion settings")
    q.add_argument("--dataset", default=None, help="name shown in the result (default: the package name and version)")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    q.add_argument("--tracking-uri", default=None, help="log the run to MLflow at this URI")
    q.add_argument("--experiment", default="ejc-evaluate", help="MLflow experiment of the run (with --tracking-uri)")
    q.set_defaults(func=_run_and_write, task_fn=task_search, plot=None, register=None)


def task_search(args: argparse.Namespace) -> dict[str, Any]:
    from ejc.eval.report import make_result
    from ejc.search.index import IndexSettings

    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise EjcError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    if not 0.0 < args.val_fraction < 1.0:
        raise EjcError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if args.src is not None:
        if not args.src.is_dir():
            raise EjcError(f"--src {args.src}: not a directory")
        src, name, version = args.src, args.src.name, None
    else:
        src, version = package_dir(args.package)
        name = args.package
    work = args.work if args.work is not None else args.out.with_name(args.out.stem + ".search")
    settings = IndexSettings(snippet_lines=args.snippet_lines, overlap=args.overlap, include=["*.py"])
    if args.max_tokens is not None:
        settings.max_tokens = args.max_tokens
    settings.check()
    say = lambda m: print(f"ejc evaluate: {m}", file=sys.stderr, flush=True)  # noqa: E731
    bench = build_benchmark(src, work, name, version, args.val_fraction)
    metrics, seconds, details = run_search_benchmark(bench, work, settings, args.text_cache, say, sweep=not args.no_sweep)
    dataset = args.dataset or (f"{name} {version}" if version else name)
    return make_result("search", dataset, metrics, seconds, **details)


__all__ = ["BenchQuery", "Benchmark", "add_search_task", "build_benchmark", "first_answer", "first_sentence", "package_dir", "rank_metrics", "run_search_benchmark", "strip_docstrings", "task_search"]
