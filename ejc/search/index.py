"""The on-disk snippet index: build it from a directory, update it incrementally, publish atomically.

Layout of ``INDEX/`` (what ``ejc search index DIR --out INDEX`` writes)::

    INDEX/CURRENT                   the published version's name (one line); readers start here
    INDEX/.lock                     held (flock) while an indexer writes
    INDEX/versions/<version>/
        manifest.json               format, settings, counts, the indexed root, SHA-256 of the tables
        files.parquet               path, sha256, size, snippets: one row per indexed file
        snippets.parquet            id, path, start, end (1-based, inclusive), text, key (SHA-1 of the embedded text)
        cube/                       an EmbeddingCube: one entity per snippet, its ``text`` vector
                                    (all-MiniLM-L6-v2 of "<path>\\n<lines>"), hierarchy levels
                                    ``directory`` and ``file`` (declared hierarchy ``tree``)
        bm25/                       the BM25 index (bm25s) over the code-aware tokens of the same text
                                    (names the snippet defines counted twice: ``lexical.document_tokens``)

Publishing: a new version is written completely under ``versions/.tmp-*``, renamed to
``versions/<version>``, and only then ``CURRENT`` is replaced (``os.replace`` of a fully written
temporary file). A crash or an error anywhere before that last step leaves ``CURRENT`` naming
the previous version, which stays complete and searchable; the next indexer removes the debris.
After publishing, versions older than the previous one are deleted (a server that has the
previous one loaded keeps working while it swaps).

Incremental: re-running on the same directory with the same settings re-cuts only the files
whose SHA-256 changed (or that are new), re-embeds only snippets whose embedded text was not in
the previous version (so moving a block inside a file costs nothing), drops deleted files, and
rebuilds the BM25 index (cheap: no model). Changed settings (window, includes, embedder) rebuild
everything.

Shapes: ``n`` snippets, ``d`` = 384.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ejc.errors import SearchError
from ejc.search.lexical import BM25Index, document_tokens, tokenize
from ejc.search.snippets import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_LINE_CHARS,
    DEFAULT_OVERLAP,
    DEFAULT_SNIPPET_LINES,
    Snippet,
    SourceFile,
    check_window,
    cut_snippets,
    walk_tree,
)

FORMAT = "ejc-search-index"
FORMAT_VERSION = 1
CURRENT = "CURRENT"
VERSIONS = "versions"
MODALITY = "text"
TEXT_FORMAT = 1  # how a snippet becomes the embedded text: "<path>\n<lines>"


@dataclass
class IndexSettings:
    """How a directory is indexed (saved in the manifest; a change rebuilds everything).

    ``include``: gitignore-style globs a file must match (none: every text file).
    ``max_tokens``: word pieces of a snippet the embedder reads (MiniLM reads at most 256; 128,
    chosen on the validation queries of ``ejc evaluate search``, scores higher in hybrid mode and
    embeds twice as fast: benchmarks/RESULTS.md, "Snippet search").
    """

    snippet_lines: int = DEFAULT_SNIPPET_LINES
    overlap: int = DEFAULT_OVERLAP
    include: list[str] = field(default_factory=list)
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_line_chars: int = DEFAULT_MAX_LINE_CHARS
    max_tokens: int = 128

    def check(self) -> None:
        check_window(self.snippet_lines, self.overlap)
        if self.max_file_bytes < 1 or self.max_line_chars < 1:
            raise SearchError("--max-file-bytes and --max-line-chars must be positive")
        if not 8 <= self.max_tokens <= 512:
            raise SearchError(f"--max-tokens must be in [8, 512], got {self.max_tokens}")

    def cut_key(self) -> dict[str, Any]:
        return {"snippet_lines": self.snippet_lines, "overlap": self.overlap}


def embedded_text(s: Snippet) -> str:
    """What the embedder and BM25 read for a snippet: its path on the first line, then its lines."""
    return f"{s.path}\n{s.text}"


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


_MODELS: dict[str, Any] = {}  # device -> the loaded SentenceTransformer, shared in the process


def shared_minilm(device: str = "cpu") -> Any:
    """all-MiniLM-L6-v2 loaded once per process and device (indexing, queries and servers share it)."""
    if device not in _MODELS:
        from ejc.embed.text import load_minilm

        _MODELS[device] = load_minilm(device)
    return _MODELS[device]


class SnippetEmbedder:
    """all-MiniLM-L6-v2 (the project's :class:`~ejc.embed.text.TextEmbedder`) reading at most
    ``max_tokens`` word pieces per text. ``cache_dir``: the TextEmbedder's persistent cache
    (kept per ``max_tokens``). ``model``: a loaded SentenceTransformer (default: the process's
    shared one, loaded on the first text to embed). ``cache=False``: no cache at all, every text
    is encoded (query time: a server's memory does not grow with the queries it has seen)."""

    def __init__(self, max_tokens: int = 128, batch_size: int = 32, cache_dir: str | os.PathLike[str] | None = None, model: Any = None,
                 cache: bool = True) -> None:
        from ejc.embed.text import MODEL_DIM, MODEL_NAME, TextEmbedder

        self.max_tokens = int(max_tokens)
        self.dim = MODEL_DIM
        self.key = {"model": MODEL_NAME, "max_tokens": self.max_tokens, "text_format": TEXT_FORMAT}
        cache = Path(cache_dir) / f"max_tokens_{self.max_tokens}" if cache_dir is not None else None
        self.text = TextEmbedder(batch_size=batch_size, cache_dir=cache, model=model)
        self.cache = bool(cache)
        self.calls = 0

    @property
    def stats(self) -> Any:
        return self.text.stats

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Texts ``[n]`` -> unit vectors ``[n, d]`` float32."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.text._model is None:
            self.text._model = shared_minilm(self.text.device)
        self.text.model.max_seq_length = self.max_tokens  # the shared model may have served another setting
        self.calls += 1
        return self.text.embed_texts(list(texts)) if self.cache else self.text._encode(list(texts))


class HashEmbedder:
    """A deterministic stand-in embedder (test seam, no model): the signed feature hashing of a
    text's code-aware tokens into ``dim`` buckets, L2-normalised. Texts sharing tokens are near;
    nothing is learned. An index built with it is queried with it (the manifest says so)."""

    NAME = "ejc-hash-v1"

    def __init__(self, dim: int = 64) -> None:
        self.dim = int(dim)
        self.key = {"model": self.NAME, "dim": self.dim, "text_format": TEXT_FORMAT}
        self.calls = 0
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.embedded += len(texts)
        out = np.zeros((len(texts), self.dim), np.float32)  # [n, dim]
        for i, t in enumerate(texts):
            for tok in tokenize(t) or ["<empty>"]:
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
            norm = float(np.linalg.norm(out[i]))
            if norm == 0.0:
                out[i, 0], norm = 1.0, 1.0
            out[i] /= norm
        return out


def embedder_for(manifest: dict[str, Any]) -> Any:
    """The embedder that answers queries of an index (the kind it was built with; MiniLM without
    a cache, so every query is encoded and memory does not grow with the queries seen)."""
    key = manifest["settings"]["embed"]
    if key.get("model") == HashEmbedder.NAME:
        return HashEmbedder(int(key["dim"]))
    return SnippetEmbedder(int(key["max_tokens"]), cache=False)


# ----------------------------------------------------------------------------------------------
# reading a published version


def current_version_dir(index: str | os.PathLike[str]) -> Path:
    """The directory of the version ``INDEX/CURRENT`` names (or ``index`` itself if it is a version)."""
    p = Path(index)
    if (p / "manifest.json").is_file():
        return p
    cur = p / CURRENT
    if not p.exists():
        raise SearchError(f"{p}: no such index; build one with `ejc search index DIR --out {p}`")
    if not cur.is_file():
        raise SearchError(f"{p}: not a search index (no {CURRENT} file); build one with `ejc search index DIR --out {p}`")
    name = cur.read_text().strip()
    d = p / VERSIONS / name
    if not name or not (d / "manifest.json").is_file():
        raise SearchError(f"{cur} names version {name!r}, which is missing; run `ejc search index` again to rebuild {p}")
    return d


def read_manifest(version_dir: Path) -> dict[str, Any]:
    mf = version_dir / "manifest.json"
    try:
        m = json.loads(mf.read_text())
    except (OSError, ValueError) as e:
        raise SearchError(f"{mf}: unreadable manifest ({e}); run `ejc search index` again") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
        raise SearchError(f"{mf}: not an {FORMAT} index of format version {FORMAT_VERSION}; rebuild it with this ejc version")
    from ejc.cube.index import sha256_file

    for f, digest in m["tables"].items():
        if not (version_dir / f).is_file() or sha256_file(version_dir / f) != digest:
            raise SearchError(f"{version_dir / f}: missing or corrupted (SHA-256 differs from the manifest); run `ejc search index` again")
    return m


def read_table(path: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path)


# ----------------------------------------------------------------------------------------------
# building


def _locked(out: Path) -> Any:
    from ejc.cube.index import exclusive_lock

    return exclusive_lock(out / ".lock", SearchError(f"{out}: another `ejc search index` is writing this index; wait for it to finish"))


def _old_state(out: Path, settings: IndexSettings, embed_key: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str], dict[str, list[dict[str, Any]]], dict[str, np.ndarray]]:
    """The previous version's manifest, file hashes, snippet rows per file and vectors by text key
    (empty when there is none, or none this build can reuse)."""
    try:
        vdir = current_version_dir(out)
        m = read_manifest(vdir)
    except SearchError:
        return None, {}, {}, {}
    if m["settings"].get("embed") != embed_key:
        return m, {}, {}, {}
    files = read_table(vdir / "files.parquet").to_pylist()
    snips = read_table(vdir / "snippets.parquet").select(["id", "path", "start", "end", "text", "key"]).to_pylist()
    from ejc.cube.cube import EmbeddingCube

    cube = EmbeddingCube.load(vdir / "cube")
    vectors = {r["key"]: cube.vector(r["id"], MODALITY) for r in snips}
    same_cut = {k: m["settings"].get(k) for k in settings.cut_key()} == settings.cut_key()
    hashes = {f["path"]: f["sha256"] for f in files} if same_cut else {}
    by_file: dict[str, list[dict[str, Any]]] = {}
    if same_cut:
        for r in snips:
            by_file.setdefault(r["path"], []).append(r)
    return m, hashes, by_file, vectors


def build_index(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: IndexSettings | None = None,
    *,
    embedder: Any = None,
    batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Index (or re-index) the directory ``root`` into ``out`` and publish it; returns the summary.

    ``embedder``: an object with ``embed(texts) -> [n, d]`` and ``key`` (a dict naming it and its
    settings, saved in the manifest; vectors are reused only under the same key); default
    :class:`SnippetEmbedder`, its model loaded only when something needs embedding.
    ``progress``: tqdm bar while embedding (None: only on a terminal). Raises :class:`SearchError` when nothing under ``root`` can be indexed.
    """
    t0 = time.perf_counter()
    settings = settings or IndexSettings()
    settings.check()
    say = log or (lambda msg: print(f"ejc search: {msg}", file=sys.stderr, flush=True))
    outp = Path(out)
    rootp = Path(root)
    with _locked(outp):
        walked = walk_tree(rootp, settings.include, max_file_bytes=settings.max_file_bytes, max_line_chars=settings.max_line_chars, exclude=[outp])
        if not walked.files:
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(walked.skipped.items())) or "no files at all"
            raise SearchError(f"{root}: nothing to index (skipped: {skipped}); point at a directory with text files or widen --include")
        for reason in ("unreadable", "not_utf8"):
            if walked.skipped.get(reason):
                say(f"skipped {walked.skipped[reason]} {reason.replace('_', '-')} file(s), e.g. {walked.examples[reason][:3]}")
        emb = embedder if embedder is not None else SnippetEmbedder(settings.max_tokens, batch_size, cache_dir)
        old, old_hashes, old_by_file, old_vectors = _old_state(outp, settings, emb.key)
        t_walk = time.perf_counter()

        snippets: list[Snippet] = []
        keys: list[str] = []
        changed = unchanged = 0
        for f in walked.files:
            rows = old_by_file.get(f.path) if old_hashes.get(f.path) == f.sha256 else None
            if rows is not None:
                unchanged += 1
                snippets.extend(Snippet(r["path"], r["start"], r["end"], r["text"]) for r in rows)
                keys.extend(r["key"] for r in rows)
            else:
                changed += 1
                cut = cut_snippets(f.path, f.text, settings.snippet_lines, settings.overlap)
                snippets.extend(cut)
                keys.extend(text_key(embedded_text(s)) for s in cut)
        deleted = sorted(set(old_hashes) - {f.path for f in walked.files})
        if not snippets:
            raise SearchError(f"{root}: the files hold only whitespace; nothing to index")

        todo: list[tuple[str, int]] = []  # (text key, first snippet with it) of texts to embed
        seen: set[str] = set()
        for i, k in enumerate(keys):
            if k not in old_vectors and k not in seen:
                seen.add(k)
                todo.append((k, i))
        vectors = dict(old_vectors)
        if todo:
            texts = [embedded_text(snippets[i]) for _, i in todo]
            vecs = _embed_with_progress(emb, texts, progress)
            vectors.update({k: v for (k, _), v in zip(todo, vecs)})
        t_embed = time.perf_counter()

        version = _next_version(old)
        summary = _publish(outp, rootp, walked.files, snippets, keys, vectors, settings, emb.key, version, walked)
        t_done = time.perf_counter()
    embed_s = t_embed - t_walk
    return {
        "index": str(outp),
        "version": version,
        "root": str(rootp.resolve()),
        "files": len(walked.files),
        "snippets": len(snippets),
        "files_indexed": changed,
        "files_unchanged": unchanged,
        "files_deleted": len(deleted),
        "snippets_embedded": len(todo),
        "snippets_reused": len(snippets) - len(todo),
        "skipped": dict(sorted(walked.skipped.items())),
        "skipped_examples": walked.examples,
        "seconds": round(t_done - t0, 3),
        "seconds_by_stage": {"walk": round(t_walk - t0, 3), "embed": round(embed_s, 3), "publish": round(t_done - t_embed, 3)},
        "snippets_per_s": round(len(todo) / embed_s, 1) if todo and embed_s > 0 else None,
        **summary,
    }


def tree_fingerprint(root: str | os.PathLike[str], exclude: Iterable[str | os.PathLike[str]] = ()) -> str:
    """A digest of every file's path, size and mtime under ``root`` (``exclude`` directories left
    out): what :func:`watch_index` compares to see that something may have changed, without
    reading any file."""
    h = hashlib.blake2b(digest_size=16)
    skip = {Path(p).resolve() for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if (d / n).resolve() not in skip)
        for n in sorted(filenames):
            try:
                st = os.stat(d / n)
                h.update(f"{d / n}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
            except OSError:
                h.update(f"{d / n}\0unreadable\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def watch_index(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: IndexSettings | None = None,
    *,
    interval: float = 2.0,
    max_builds: int | None = None,
    log: Callable[[str], None] | None = None,
    **build_kw: Any,
) -> Iterator[dict[str, Any]]:
    """Index ``root`` into ``out`` (:func:`build_index`), then again whenever a file under it
    changes, polling every ``interval`` seconds; yields each build's summary. The model stays loaded between builds, so a re-index costs the walk, the
    changed snippets' embedding and the publish. A failed re-index (e.g. the tree emptied) is
    reported through ``log`` and the previous version stays published; the first build's error
    is raised. Stops after ``max_builds`` builds (None: never; Ctrl-C ends the caller's loop).
    """
    if not interval > 0:
        raise SearchError(f"--watch must be a positive number of seconds, got {interval}")
    say = log or (lambda msg: print(f"ejc search: {msg}", file=sys.stderr, flush=True))
    if build_kw.get("embedder") is None:  # one embedder, its model loaded now: a change costs no model load
        settings = settings or IndexSettings()
        settings.check()
        emb = SnippetEmbedder(settings.max_tokens, build_kw.get("batch_size", 32), build_kw.get("cache_dir"))
        emb.text._model = shared_minilm(emb.text.device)
        build_kw["embedder"] = emb
    builds = 0
    seen = tree_fingerprint(root, [out])
    summary = build_index(root, out, settings, log=say, **build_kw)
    builds += 1
    yield summary
    while max_builds is None or builds < max_builds:
        time.sleep(interval)
        now = tree_fingerprint(root, [out])
        if now == seen:
            continue
        seen = now
        try:
            summary = build_index(root, out, settings, log=say, **build_kw)
        except SearchError as e:
            say(f"re-index failed, the previous version stays published: {e}")
            continue
        builds += 1
        yield summary


def _embed_with_progress(emb: Any, texts: list[str], progress: bool | None, chunk: int = 256) -> np.ndarray:
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=len(texts), desc="embed snippets", unit="snippet", disable=None if progress is None else not progress, file=sys.stderr) as bar:
        for i in range(0, len(texts), chunk):
            part = texts[i:i + chunk]
            out.append(np.asarray(emb.embed(part), np.float32))
            bar.update(len(part))
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def _next_version(old: dict[str, Any] | None) -> str:
    seq = int(old.get("sequence", 0)) + 1 if old else 1
    return f"v{seq:06d}-{uuid.uuid4().hex[:8]}"


def _publish(out: Path, root: Path, files: list[SourceFile], snippets: list[Snippet], keys: list[str], vectors: dict[str, np.ndarray],
             settings: IndexSettings, embed_key: dict[str, Any], version: str, walked: Any) -> dict[str, Any]:
    """Write the version under a temporary name, rename it, then swap ``CURRENT`` (module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ejc.cube.cube import EmbeddingCube
    from ejc.cube.entity import Entity
    from ejc.cube.index import sha256_file

    versions = out / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    for debris in versions.glob(".tmp-*"):  # left by a crashed indexer (we hold the lock)
        shutil.rmtree(debris, ignore_errors=True)
    tmp = versions / f".tmp-{version}"
    tmp.mkdir()
    try:
        per_file: dict[str, int] = {}
        for s in snippets:
            per_file[s.path] = per_file.get(s.path, 0) + 1
        pq.write_table(pa.table({
            "path": pa.array([f.path for f in files], pa.string()),
            "sha256": pa.array([f.sha256 for f in files], pa.string()),
            "size": pa.array([f.size for f in files], pa.int64()),
            "snippets": pa.array([per_file.get(f.path, 0) for f in files], pa.int32()),
        }), tmp / "files.parquet")
        pq.write_table(pa.table({
            "id": pa.array([s.id for s in snippets], pa.string()),
            "path": pa.array([s.path for s in snippets], pa.string()),
            "start": pa.array([s.start for s in snippets], pa.int32()),
            "end": pa.array([s.end for s in snippets], pa.int32()),
            "text": pa.array([s.text for s in snippets], pa.string()),
            "key": pa.array(keys, pa.string()),
        }), tmp / "snippets.parquet")
        cube = EmbeddingCube(metric="cosine")
        cube.add_entities(
            Entity(s.id, {MODALITY: vectors[k]}, {"directory": s.path.rpartition("/")[0] or ".", "file": s.path}, {"path": s.path, "start": s.start, "end": s.end})
            for s, k in zip(snippets, keys)
        )
        cube.create_hierarchy(levels=["directory", "file"], hierarchy_type="tree")
        cube.save(tmp / "cube")
        BM25Index.build(document_tokens(embedded_text(s)) for s in snippets).save(tmp / "bm25")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            "sequence": int(version[1:7]),
            "created": time.time(),
            "root": str(root.resolve()),
            "settings": {**asdict(settings), "embed": embed_key},
            "files": len(files),
            "snippets": len(snippets),
            "skipped": dict(sorted(walked.skipped.items())),
            "cube_version": cube.version,
            "tables": {f: sha256_file(tmp / f) for f in ("files.parquet", "snippets.parquet")},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _fsync_tree(tmp)
        final = versions / version
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    previous = (out / CURRENT).read_text().strip() if (out / CURRENT).is_file() else None
    _write_atomic(out / CURRENT, version + "\n")
    for d in versions.iterdir():
        if d.is_dir() and d.name not in (version, previous) and not d.name.startswith(".tmp-"):
            shutil.rmtree(d, ignore_errors=True)
    return {"previous_version": previous}


def _fsync_tree(d: Path) -> None:
    for p in sorted(d.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["HashEmbedder", "IndexSettings", "SnippetEmbedder", "build_index", "current_version_dir", "embedded_text", "embedder_for", "read_manifest", "shared_minilm", "tree_fingerprint", "watch_index"]
