"""``ejc index build`` / ``ejc index query`` / ``ejc index info``: sharded vector indices from the command line.

Registered by :func:`ejc.cli.build_parser` through :func:`add_index_commands`. Output is one JSON
line on stdout, like every ejc command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ejc.errors import EjcError


def _print_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, default=str), flush=True)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["nprobe=32", "codec=sq8"]`` -> ``{"nprobe": 32, "codec": "sq8"}`` (numbers parsed, JSON accepted)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EjcError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def parse_filter(pairs: list[str]) -> dict[str, list[str]]:
    """``["category=c1", "category=c2", "brand=b7"]`` -> ``{"category": ["c1", "c2"], "brand": ["b7"]}``."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EjcError(f"--filter expects LEVEL=VALUE, got {pair!r}")
        out.setdefault(key, []).append(value)
    return out


def read_vector_file(path: Path) -> np.ndarray:
    """Query vectors ``[q, d]`` from ``.npy`` (1-D or 2-D) or ``.json`` (a list or a list of lists)."""
    if not path.is_file():
        raise EjcError(f"--vector-file {path}: no such file")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            arr = np.asarray(json.loads(path.read_text()), dtype=np.float32)
        else:
            raise EjcError(f"--vector-file {path}: use a .npy or .json file")
    except (OSError, ValueError, TypeError) as e:
        raise EjcError(f"--vector-file {path}: cannot read a vector: {e}") from e
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or not np.issubdtype(arr.dtype, np.number):
        raise EjcError(f"--vector-file {path}: expected one vector or a [q, d] matrix of numbers, got shape {arr.shape}")
    return arr.astype(np.float32)


def add_index_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ejc index {build,query,info}``."""
    p = sub.add_parser("index", help="build and query sharded vector indices (FAISS)")
    isub = p.add_subparsers(dest="index_command", required=True)

    b = isub.add_parser("build", help="build a sharded index from an embeddings directory and publish it atomically")
    b.add_argument("--embeddings", required=True, type=Path, help="directory of Parquet files: entity_id, embedding[, modality][, hierarchy columns]")
    b.add_argument("--out", required=True, type=Path, help="index root; a new version is published through OUT/CURRENT")
    b.add_argument("--shards", type=int, default=4, help="shards per modality (default 4)")
    b.add_argument("--modality", default=None, help="build only this modality (default: all)")
    b.add_argument("--metric", default="cosine", choices=("cosine", "ip", "l2"))
    b.add_argument("--kind", default="auto", choices=("auto", "flat", "ivf", "hnsw", "ivfpq"), help="index kind (auto: by shard size)")
    b.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="VectorIndex option, e.g. nprobe=32 or codec=sq8 (repeatable)")
    b.add_argument("--model-version", default=None, help="recorded in the manifests: the model that produced the embeddings")
    b.add_argument("--workers", type=int, default=1, help="threads building shards in parallel in this process (Ray: jobs/build_index.py)")
    b.add_argument("--keep", type=int, default=2, help="published versions to keep (default 2)")
    b.set_defaults(func=_cmd_build)

    q = isub.add_parser("query", help="nearest neighbours of an entity or of vectors, as JSON")
    q.add_argument("--index", required=True, type=Path, help="index root written by `ejc index build`")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--entity", help="an entity id in the index (it is excluded from its own results)")
    src.add_argument("--vector-file", type=Path, help=".npy or .json file with one vector or a [q, d] matrix")
    q.add_argument("--modality", default=None, help="modality to search (required when the index holds several)")
    q.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    q.add_argument("--filter", action="append", default=[], metavar="LEVEL=VALUE", help="only entities with this hierarchy value (repeat: values of one level are OR-ed, levels AND-ed)")
    q.set_defaults(func=_cmd_query)

    i = isub.add_parser("info", help="print the manifest summary of the published version")
    i.add_argument("--index", required=True, type=Path)
    i.set_defaults(func=_cmd_info)


def _cmd_build(args: argparse.Namespace) -> int:
    from ejc.cube.sharded import build_sharded_index, sequential_map, thread_map

    if args.workers < 1:
        raise EjcError(f"--workers must be at least 1, got {args.workers}")
    summary = build_sharded_index(args.embeddings, args.out, args.shards, args.modality, metric=args.metric, kind=args.kind, options=parse_options(args.option),
                                  model_version=args.model_version, map_fn=thread_map(args.workers) if args.workers > 1 else sequential_map, keep=args.keep)
    _print_json(summary)
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from ejc.cube.sharded import ShardedIndex

    if args.k < 1:
        raise EjcError(f"-k must be at least 1, got {args.k}")
    index = ShardedIndex.load(args.index)
    try:
        modality = index._modality(args.modality)
        filt = parse_filter(args.filter) or None
        if args.entity is not None:
            results = [index.search_entity(args.entity, args.k, modality, filter=filt)]
        else:
            results = index.search(read_vector_file(args.vector_file), args.k, modality, filter=filt)
    finally:
        index.close()
    _print_json({"index": str(args.index), "version": index.version, "modality": modality, "k": args.k, "query": {"entity": args.entity} if args.entity else {"vector_file": str(args.vector_file), "queries": len(results)},
                 "results": [[{"entity_id": e, "score": s} for e, s in row] for row in results]})
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ejc.cube.sharded import read_manifest

    name, m = read_manifest(args.index)
    _print_json({"index": str(args.index), "version": name, "created": m["created"], "model_version": m["model_version"], "num_shards": m["num_shards"],
                 "modalities": {k: {"dim": v["dim"], "metric": v["metric"], "count": v["count"], "levels": v["levels"], "kinds": sorted({s["kind"] for s in v["shards"]})} for k, v in m["modalities"].items()}})
    return 0


__all__ = ["add_index_commands", "parse_filter", "parse_options", "read_vector_file"]
