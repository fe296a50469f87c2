"""Sharded vector indices: build by entity-id hash, publish atomically, query by fan-out + merge.

Layout of an index root ``OUT``::

    OUT/CURRENT                                   name of the live version (replaced atomically)
    OUT/versions/<version>/manifest.json          format, version, source, counts, checksums
    OUT/versions/<version>/<modality>/shard-0000/ a VectorIndex directory (its own manifest)
    OUT/versions/<version>/<modality>/attributes.parquet   entity_id + hierarchy columns
    OUT/.build.lock                               held while a build runs (one build at a time)

A build stages and builds everything under ``versions/.tmp-<version>``, renames it into place
when complete, and only then replaces ``CURRENT``. A build that raises or is killed leaves
``CURRENT`` naming the previous version, which stays loadable and served; its leftovers are
removed by the next build. The newest ``keep`` versions are kept so readers that loaded an
older one can finish.

The build is two map steps, each a list of independent tasks run by a ``map_fn`` (sequential by
default; ``jobs/build_index.py`` passes one that runs them as Ray tasks):

1. :func:`scatter_file` — per input file: read and validate it, split rows by modality and shard
   (``shard_of``: BLAKE2b of the UTF-8 id, modulo the shard count — stable across processes
   and Python versions, unlike ``hash()``), write one Parquet part per (modality, shard).
2. :func:`build_shard` — per (modality, shard): read its parts in input order (last row per id
   wins), build a :class:`~ejc.cube.index.VectorIndex`, save it.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ejc.cube.embeddings_io import ID_COL, list_embedding_files, read_embeddings_file, write_embeddings
from ejc.cube.index import VectorIndex, exclusive_lock, sha256_file
from ejc.errors import SchemaError, VectorIndexError

FORMAT_VERSION = 1
CURRENT = "CURRENT"
VERSIONS = "versions"
MANIFEST = "manifest.json"
ATTRIBUTES = "attributes.parquet"

MapFn = Callable[[Callable[..., Any], list[dict[str, Any]]], list[Any]]


def shard_of(entity_id: str, num_shards: int) -> int:
    """The shard of an entity: BLAKE2b-64 of its UTF-8 id modulo ``num_shards`` (stable everywhere)."""
    digest = hashlib.blake2b(entity_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % num_shards


def sequential_map(fn: Callable[..., Any], items: list[dict[str, Any]]) -> list[Any]:
    """The default ``map_fn``: run the tasks one after another in this process."""
    return [fn(**kw) for kw in items]


def thread_map(workers: int) -> MapFn:
    """A ``map_fn`` running tasks on ``workers`` threads (FAISS and Parquet release the GIL)."""

    def run(fn: Callable[..., Any], items: list[dict[str, Any]]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(lambda kw: fn(**kw), items))

    return run


# ----------------------------------------------------------------------------------------------
# build tasks (plain functions of plain arguments: they run in Ray workers too)


def _shard_dir(root: Path, modality: str, shard: int) -> Path:
    return root / modality / f"shard-{shard:04d}"


def scatter_file(path: str, file_no: int, num_shards: int, staging: str, modality: str | None = None) -> dict[str, Any]:
    """Split one embeddings file into per-(modality, shard) parts under ``staging``.

    Returns ``{modality: {"dim", "rows", "levels"}}`` for the modalities written.
    """
    stats: dict[str, Any] = {}
    for m, (ids, vecs, hier) in read_embeddings_file(path).items():
        if modality is not None and m != modality:
            continue
        shards = np.fromiter((shard_of(i, num_shards) for i in ids), dtype=np.int64, count=len(ids))
        for s in np.unique(shards):
            rows = np.flatnonzero(shards == s)
            part = _shard_dir(Path(staging), m, int(s)) / f"part-{file_no:06d}.parquet"
            write_embeddings(part, [ids[r] for r in rows], vecs[rows], hierarchy={c: [v[r] for r in rows] for c, v in hier.items()})
        stats[m] = {"dim": int(vecs.shape[1]), "rows": len(ids), "levels": sorted(hier)}
    return stats


def build_shard(parts: list[str], out: str, dim: int, metric: str, kind: str, options: dict[str, Any], model_version: str | None) -> dict[str, Any]:
    """Build and save one shard's :class:`VectorIndex` from its parts (in input order; last row per id wins)."""
    ids: list[str] = []
    chunks: list[np.ndarray] = []
    hier: dict[str, list[str | None]] = {}
    for part in parts:
        ((_, (pids, pvecs, phier)),) = read_embeddings_file(part).items()
        n_before = len(ids)
        ids.extend(pids)
        chunks.append(pvecs)
        for c in set(hier) | set(phier):
            hier.setdefault(c, [None] * n_before).extend(phier.get(c, [None] * len(pids)))
    vecs = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    last = {i: r for r, i in enumerate(ids)}  # last occurrence of each id
    keep = np.array(sorted(last.values()), dtype=np.int64)
    index = VectorIndex(dim, metric=metric, kind=kind, **options)
    index.upsert([ids[r] for r in keep], vecs[keep])
    shard = Path(out)
    index.save(shard, model_version=model_version)
    attrs = pa.table({ID_COL: pa.array([ids[r] for r in keep], pa.string()), **{c: pa.array([v[r] for r in keep], pa.string()) for c, v in sorted(hier.items())}})
    pq.write_table(attrs, shard / ATTRIBUTES)
    return {"dir": shard.name, "count": len(index), "kind": index.kind, "search": index.search_params, "duplicates_replaced": len(ids) - len(keep),
            "manifest_sha256": sha256_file(shard / "manifest.json"), "attributes_sha256": sha256_file(shard / ATTRIBUTES)}


# ----------------------------------------------------------------------------------------------
# build + publish


def _build_lock(root: Path) -> Any:
    return exclusive_lock(root / ".build.lock", VectorIndexError(f"{root}: another index build is running here; wait for it to finish"))


def build_sharded_index(
    embeddings: str | os.PathLike[str],
    out: str | os.PathLike[str],
    shards: int = 4,
    modality: str | None = None,
    *,
    metric: str = "cosine",
    kind: str = "auto",
    options: Mapping[str, Any] | None = None,
    model_version: str | None = None,
    map_fn: MapFn | None = None,
    keep: int = 2,
) -> dict[str, Any]:
    """Build a sharded index of every (or one) modality in ``embeddings`` and publish it under ``out``.

    Args:
        embeddings: directory of embeddings Parquet files (format: :mod:`ejc.cube.embeddings_io`).
        out: index root; a new version is added and ``CURRENT`` switched to it when complete.
        shards: number of shards per modality.
        modality: build only this modality (default: all present).
        metric, kind, options: passed to every shard's :class:`VectorIndex`.
        model_version: recorded in the manifests (which model produced the embeddings).
        map_fn: runs a list of tasks (default: sequentially here; see ``jobs/build_index.py``).
        keep: published versions kept (at least 1; older ones are deleted).

    Returns:
        A summary: version, directory, per-modality counts, dims, kinds, seconds.
    """
    if not isinstance(shards, int) or shards < 1:
        raise VectorIndexError(f"shards must be a positive integer, got {shards!r}")
    if keep < 1:
        raise VectorIndexError(f"keep must be at least 1, got {keep}")
    VectorIndex(1, metric=metric, kind=kind, **dict(options or {}))  # validate before any work
    map_fn = map_fn or sequential_map
    t0 = time.perf_counter()
    files = list_embedding_files(embeddings)
    root = Path(out)
    with _build_lock(root):
        versions = root / VERSIONS
        versions.mkdir(exist_ok=True)
        for stale in versions.glob(".tmp-*"):  # a killed build's leftovers (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        name = f"v-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
        tmp = versions / f".tmp-{name}"
        staging = tmp / "_staging"
        try:
            stats = map_fn(scatter_file, [{"path": str(f), "file_no": i, "num_shards": shards, "staging": str(staging), "modality": modality} for i, f in enumerate(files)])
            spaces = _merge_scatter_stats(files, stats, modality, embeddings)
            t_scatter = time.perf_counter() - t0
            tasks, where = [], []
            for m, info in spaces.items():
                for s in range(shards):
                    parts = sorted(str(p) for p in _shard_dir(staging, m, s).glob("part-*.parquet"))
                    tasks.append({"parts": parts, "out": str(_shard_dir(tmp, m, s)), "dim": info["dim"], "metric": metric, "kind": kind, "options": dict(options or {}), "model_version": model_version})
                    where.append(m)
            results = map_fn(build_shard, tasks)
            shutil.rmtree(staging)
            modalities: dict[str, Any] = {}
            for m, info in spaces.items():
                rs = [r for r, w in zip(results, where) if w == m]
                modalities[m] = {"dim": info["dim"], "metric": metric, "count": sum(r["count"] for r in rs), "rows_read": info["rows"], "levels": info["levels"],
                                 "duplicates_replaced": sum(r["duplicates_replaced"] for r in rs), "shards": rs}
            manifest = {"format_version": FORMAT_VERSION, "version": name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model_version": model_version,
                        "source": str(Path(embeddings).resolve()), "files": len(files), "num_shards": shards, "shard_hash": "blake2b-64(utf-8 id) mod num_shards", "modalities": modalities}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            final = versions / name
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _publish(root, name)
        _prune(root, keep)
    return {"out": str(root), "version": name, "dir": str(final), "files": len(files), "shards": shards, "scatter_s": round(t_scatter, 2), "seconds": round(time.perf_counter() - t0, 2),
            "modalities": {m: {k: v for k, v in info.items() if k != "shards"} | {"kinds": sorted({r["kind"] for r in info["shards"]})} for m, info in modalities.items()}}


def _merge_scatter_stats(files: list[Path], stats: list[dict[str, Any]], modality: str | None, source: Any) -> dict[str, dict[str, Any]]:
    spaces: dict[str, dict[str, Any]] = {}
    for f, st in zip(files, stats):
        for m, info in st.items():
            sp = spaces.setdefault(m, {"dim": info["dim"], "rows": 0, "levels": set(), "first": f})
            if sp["dim"] != info["dim"]:
                raise SchemaError(f"modality {m!r} has {sp['dim']}-dimensional vectors in {sp['first']} but {info['dim']}-dimensional ones in {f}; one modality has one dimension")
            sp["rows"] += info["rows"]
            sp["levels"].update(info["levels"])
    if modality is not None and modality not in spaces:
        raise SchemaError(f"{source}: no rows of modality {modality!r}; pass one of the modalities present or omit --modality")
    if not spaces:
        raise SchemaError(f"{source}: the embeddings files hold no rows")
    return {m: {"dim": sp["dim"], "rows": sp["rows"], "levels": sorted(sp["levels"])} for m, sp in sorted(spaces.items())}


def _publish(root: Path, name: str) -> None:
    """Point ``CURRENT`` at ``name`` atomically (write a temporary file, fsync, rename)."""
    tmp = root / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / CURRENT)


def _prune(root: Path, keep: int) -> None:
    current = current_version(root)
    published = sorted(p.name for p in (root / VERSIONS).iterdir() if p.is_dir() and p.name.startswith("v-"))
    for old in [v for v in published if v != current][: max(0, len(published) - keep)]:
        shutil.rmtree(root / VERSIONS / old, ignore_errors=True)


def current_version(root: str | os.PathLike[str]) -> str:
    """The version ``CURRENT`` names under an index root."""
    r = Path(root)
    cur = r / CURRENT
    if not cur.is_file():
        raise VectorIndexError(f"{r}: not a sharded index root (no {CURRENT} file); build one with `ejc index build --embeddings DIR --out {r}`")
    name = cur.read_text().strip()
    if not (r / VERSIONS / name / MANIFEST).is_file():
        raise VectorIndexError(f"{cur} names version {name!r}, which is missing or incomplete; rebuild the index")
    return name


def read_manifest(root: str | os.PathLike[str], version: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(version, manifest)`` of the version ``CURRENT`` names under ``root`` (or ``version``),
    with a clear error when it is unreadable or of another format."""
    r = Path(root)
    name = version or current_version(r)
    mf = r / VERSIONS / name / MANIFEST
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, ValueError) as e:
        raise VectorIndexError(f"{mf}: unreadable ({e}); rebuild the index") from e
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        got = manifest.get("format_version") if isinstance(manifest, dict) else type(manifest).__name__
        raise VectorIndexError(f"{mf}: sharded index format {got!r} is not {FORMAT_VERSION}; rebuild the index")
    return name, manifest


# ----------------------------------------------------------------------------------------------
# query


class ShardedIndex:
    """A published sharded index (one version), queried by fan-out to its shards and top-k merge.

        index = ShardedIndex.load("indices/products")
        hits = index.search(vector, k=10, modality="text", filter={"category": "c3"})
    """

    def __init__(self, root: Path, version: str, manifest: dict[str, Any], shards: dict[str, list[VectorIndex]], attributes: dict[str, dict[str, dict[str, str | None]]]) -> None:
        self.root, self.version, self.manifest = root, version, manifest
        self._shards = shards
        self._attributes = attributes  # modality -> level -> {entity_id: value}
        self._pool = ThreadPoolExecutor(max_workers=min(8, max(1, manifest["num_shards"])))

    @classmethod
    def load(cls, root: str | os.PathLike[str], *, version: str | None = None, mmap: bool = False, verify: bool = True) -> ShardedIndex:
        """Load the version ``CURRENT`` names (or ``version``); every file is checksum-verified."""
        r = Path(root)
        name, manifest = read_manifest(r, version)
        vdir = r / VERSIONS / name
        shards: dict[str, list[VectorIndex]] = {}
        attributes: dict[str, dict[str, dict[str, str | None]]] = {}
        for m, info in manifest["modalities"].items():
            shards[m], attributes[m] = [], {lvl: {} for lvl in info["levels"]}
            for s in info["shards"]:
                d = vdir / m / s["dir"]
                for fname, key in (("manifest.json", "manifest_sha256"), (ATTRIBUTES, "attributes_sha256")):
                    if not (d / fname).is_file():
                        raise VectorIndexError(f"{d / fname}: missing file of shard {s['dir']}; rebuild the index")
                    if verify and sha256_file(d / fname) != s[key]:
                        raise VectorIndexError(f"{d / fname}: SHA-256 does not match {vdir / MANIFEST} (corrupted); rebuild the index")
                shards[m].append(VectorIndex.load(d, mmap=mmap, dim=info["dim"], verify=verify))
                attrs = pq.read_table(d / ATTRIBUTES)
                ids = attrs.column(ID_COL).to_pylist()
                for lvl in info["levels"]:
                    if lvl in attrs.column_names:
                        attributes[m][lvl].update(zip(ids, attrs.column(lvl).to_pylist()))
        return cls(r, name, manifest, shards, attributes)

    @property
    def modalities(self) -> list[str]:
        return sorted(self._shards)

    def dim(self, modality: str | None = None) -> int:
        return int(self.manifest["modalities"][self._modality(modality)]["dim"])

    def count(self, modality: str | None = None) -> int:
        return sum(len(s) for s in self._shards[self._modality(modality)])

    def __contains__(self, entity_id: object) -> bool:
        return isinstance(entity_id, str) and any(entity_id in shards[shard_of(entity_id, len(shards))] for shards in self._shards.values())

    def _modality(self, modality: str | None) -> str:
        if modality is None:
            if len(self._shards) == 1:
                return next(iter(self._shards))
            raise VectorIndexError(f"this index holds several modalities {self.modalities}; say which one (--modality)")
        if modality not in self._shards:
            raise VectorIndexError(f"unknown modality {modality!r}; this index holds {self.modalities}")
        return modality

    def get(self, ids: Sequence[str], modality: str | None = None) -> np.ndarray:
        """Stored vectors ``[len(ids), d]`` of ``ids`` (each looked up in its own shard)."""
        m = self._modality(modality)
        shards = self._shards[m]
        out = np.zeros((len(ids), self.dim(m)), dtype=np.float32)
        for j, i in enumerate(ids):
            shard = shards[shard_of(i, len(shards))]
            if i not in shard:
                raise VectorIndexError(f"unknown entity {i!r} in modality {m!r}")
            out[j] = shard.get([i])[0]
        return out

    def hierarchy(self, entity_id: str, modality: str | None = None) -> dict[str, str | None]:
        """The hierarchy columns stored for ``entity_id``."""
        m = self._modality(modality)
        return {lvl: vals.get(entity_id) for lvl, vals in self._attributes[m].items()}

    def allowed_by(self, filter: Mapping[str, str | Collection[str]], modality: str | None = None) -> set[str]:
        """Ids whose hierarchy values match ``filter`` (``{level: value or values}``, all levels must match)."""
        m = self._modality(modality)
        allowed: set[str] | None = None
        for lvl, want in filter.items():
            if lvl not in self._attributes[m]:
                raise VectorIndexError(f"unknown hierarchy level {lvl!r} in modality {m!r}; this index has {sorted(self._attributes[m])}")
            wanted = {want} if isinstance(want, str) else set(want)
            ids = {i for i, v in self._attributes[m][lvl].items() if v in wanted}
            allowed = ids if allowed is None else allowed & ids
        return allowed if allowed is not None else set()

    def search(self, queries: np.ndarray, k: int = 10, modality: str | None = None, *, allowed: Collection[str] | None = None,
               exclude: Collection[str] | None = None, filter: Mapping[str, str | Collection[str]] | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(id, score)`` per query over all shards (each shard's top-k, merged)."""
        m = self._modality(modality)
        if filter:
            by_filter = self.allowed_by(filter, m)
            allowed = by_filter if allowed is None else by_filter & set(allowed)
        q = np.asarray(queries, dtype=np.float32)
        single = q.ndim == 1
        shards = self._shards[m]
        per_shard = list(self._pool.map(lambda s: s.search(q, k, allowed=allowed, exclude=exclude), shards))
        n = 1 if single else len(q)
        return [heapq.nlargest(k, (hit for res in per_shard for hit in res[i]), key=lambda h: h[1]) for i in range(n)]

    def search_entity(self, entity_id: str, k: int = 10, modality: str | None = None, **kw: Any) -> list[tuple[str, float]]:
        """Neighbours of a stored entity (the entity itself excluded)."""
        vec = self.get([entity_id], modality)[0]
        exclude = set(kw.pop("exclude", None) or ()) | {entity_id}
        return self.search(vec, k, modality, exclude=exclude, **kw)[0]

    def close(self) -> None:
        self._pool.shutdown(wait=False)


__all__ = ["ShardedIndex", "build_sharded_index", "build_shard", "current_version", "read_manifest", "scatter_file", "sequential_map", "shard_of", "thread_map"]
