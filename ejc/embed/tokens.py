"""Type tokens: hashed type vectors and the type vocabulary (seed 002, "type-based tokens").

Two ways to turn an event's categorical ``event_type`` into numbers:

* :class:`HashedTypeEmbedder` (registry name ``types``): a fixed, deterministic unit vector per
  type string. No vocabulary, no training, open-ended (an unseen type just gets its own
  vector), and identical on every process and machine: the vector is a pure function of
  the token's blake2b digest (never Python's salted ``hash()``, never a numpy stream whose
  algorithm may change between versions). Distinct tokens are nearly orthogonal
  (``|cos| ~ 1/sqrt(d)``).
* :class:`TypeVocab`: ids for a model's learned type table, with ``<pad>`` = 0 and
  ``<unk>`` = 1, built from counted types with a ``min_count`` cut-off and saved beside the
  model as a plain dict.

Shapes: ``n`` events, ``d`` embedding dimension, ``V`` vocabulary size (specials included).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ejc.embed.registry import Embedder, register_embedding_type
from ejc.errors import EmbeddingError

_TWO_PI = 2.0 * np.pi


def token_key(token: str, namespace: str = "types") -> bytes:
    """The 32-byte blake2b digest identifying ``token`` within ``namespace``."""
    ns = namespace.encode("utf-8")
    # the namespace is length-prefixed so ("ab", "c") and ("a", "bc") never collide
    payload = len(ns).to_bytes(4, "little") + ns + token.encode("utf-8")
    return hashlib.blake2b(payload, digest_size=32, person=b"ejc.hashvec.v1").digest()


def hashed_vector(token: str, dim: int, namespace: str = "types") -> np.ndarray:
    """Deterministic unit vector ``[d]`` float32 for ``token``.

    The token's blake2b digest keys a blake2b counter-mode stream of 64-bit words, turned into
    standard normals by Box-Muller and normalised: a uniformly random direction that depends on
    nothing but the token, the namespace and ``dim``.
    """
    if dim <= 0:
        raise EmbeddingError(f"hashed_vector: dim must be positive, got {dim}")
    key = token_key(token, namespace)
    n_pairs = (dim + 1) // 2
    n_words = 2 * n_pairs
    buf = bytearray()
    counter = 0
    while len(buf) < 8 * n_words:
        buf += hashlib.blake2b(counter.to_bytes(8, "little"), key=key, digest_size=64).digest()
        counter += 1
    words = np.frombuffer(bytes(buf[: 8 * n_words]), dtype="<u8")
    u = (words >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1), 53-bit resolution
    u1, u2 = 1.0 - u[:n_pairs], u[n_pairs:]  # u1 in (0, 1]: log is finite
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([r * np.cos(_TWO_PI * u2), r * np.sin(_TWO_PI * u2)])[:dim]
    norm = np.linalg.norm(z)
    if norm == 0.0:  # pragma: no cover - probability ~2^-53 per word
        z = np.ones(dim)
        norm = np.sqrt(dim)
    return (z / norm).astype(np.float32)


@register_embedding_type("types")
class HashedTypeEmbedder(Embedder):
    """Hashed type tokens: one deterministic unit vector per ``event_type`` string.

    A null type maps to its own fixed ``<none>`` vector (distinct from a real type spelled
    ``"<none>"``). Vectors are cached per token.
    """

    model_name = "blake2b-hashed-type-tokens"
    normalize = True
    NONE_TOKEN = "<none>"

    def __init__(self, dim: int = 64, modality: str | None = None, namespace: str = "types"):
        super().__init__(dim, modality)
        self.namespace = namespace
        self._cache: dict[str | None, np.ndarray] = {}

    def vector(self, token: str | None) -> np.ndarray:
        """The ``[d]`` vector of one token (``None`` -> the ``<none>`` vector)."""
        v = self._cache.get(token)
        if v is None:
            if token is None:
                v = hashed_vector(self.NONE_TOKEN, self.dim, self.namespace + "/null")
            else:
                v = hashed_vector(token, self.dim, self.namespace)
            v.setflags(write=False)
            self._cache[token] = v
        return v

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def _embed_strings(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        # dictionary-encode so each distinct type is hashed once per call, whatever n is
        values = pc.cast(values, pa.string())
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
        n = len(values)
        out = np.empty((n, self.dim), np.float32)  # [n, d]
        if n == 0:
            return out
        enc = pc.dictionary_encode(values, null_encoding="encode")
        uniques = enc.dictionary.to_pylist()
        table = np.stack([self.vector(u) for u in uniques])  # [u, d]
        idx = enc.indices.to_numpy(zero_copy_only=False)
        out[:] = table[idx]
        return out

    def embed_table(self, table: pa.Table) -> np.ndarray:
        if "event_type" not in table.column_names:
            raise EmbeddingError(f"the 'types' embedder reads the 'event_type' column; columns: {table.column_names}")
        return self._embed_strings(table.column("event_type"))

    def process(self, data: Sequence[Any]) -> np.ndarray:
        vals = [None if v is None else str(v) for v in data]
        return self._embed_strings(pa.array(vals, pa.string()))


class TypeVocab:
    """Event-type vocabulary: ``<pad>`` = 0, ``<unk>`` = 1, then types by descending count.

    Types seen fewer than ``min_count`` times, unseen types and null types encode to
    ``<unk>``. Ties in count are ordered by the type string, so a vocabulary built from the
    same counts is identical everywhere.
    """

    PAD = "<pad>"
    UNK = "<unk>"
    PAD_ID = 0
    UNK_ID = 1
    FORMAT_VERSION = 1

    def __init__(self, types: Sequence[str], counts: Sequence[int] | None = None, min_count: int = 1):
        types = list(types)
        if len(set(types)) != len(types):
            dup = sorted(t for t, c in Counter(types).items() if c > 1)
            raise EmbeddingError(f"TypeVocab: duplicate types {dup[:10]}")
        bad = [t for t in types if not isinstance(t, str) or t in (self.PAD, self.UNK)]
        if bad:
            raise EmbeddingError(f"TypeVocab: types must be strings other than {self.PAD!r}/{self.UNK!r}; got {bad[:10]}")
        if counts is not None and len(counts) != len(types):
            raise EmbeddingError(f"TypeVocab: {len(types)} types but {len(counts)} counts")
        self.types: list[str] = types
        self.counts: list[int] = [int(c) for c in counts] if counts is not None else [0] * len(types)
        self.min_count = int(min_count)
        self.itos: list[str] = [self.PAD, self.UNK, *types]
        self.stoi: dict[str, int] = {t: i + 2 for i, t in enumerate(types)}

    @classmethod
    def build(
        cls, types: Iterable[str | None] | Mapping[str, int], min_count: int = 1, max_size: int | None = None
    ) -> TypeVocab:
        """Count ``types`` (an iterable of type strings, or a ready ``{type: count}`` mapping).

        Keeps types with ``count >= min_count`` (at most ``max_size`` of them, most frequent
        first); nulls are not counted.
        """
        if min_count < 1:
            raise EmbeddingError(f"TypeVocab.build: min_count must be >= 1, got {min_count}")
        if isinstance(types, Mapping):
            counter = Counter({str(k): int(v) for k, v in types.items()})
        elif isinstance(types, (pa.Array, pa.ChunkedArray)):
            vc = pc.value_counts(pc.drop_null(pc.cast(types, pa.string())))
            counter = Counter(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
        else:
            counter = Counter(t for t in types if t is not None)
        for special in (cls.PAD, cls.UNK):
            counter.pop(special, None)
        kept = sorted(((t, c) for t, c in counter.items() if c >= min_count), key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            kept = kept[: max(0, int(max_size))]
        return cls([t for t, _ in kept], [c for _, c in kept], min_count=min_count)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TypeVocab) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"TypeVocab(size={len(self)}, min_count={self.min_count})"

    def id(self, token: str | None) -> int:
        return self.stoi.get(token, self.UNK_ID) if token is not None else self.UNK_ID

    def encode(self, types: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Type strings -> ids ``[n]`` int64 (unknown and null -> ``<unk>`` = 1)."""
        if isinstance(types, (pa.Array, pa.ChunkedArray)):
            arr = pc.cast(types, pa.string())
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
            enc = pc.dictionary_encode(arr, null_encoding="encode")
            lut = np.array([self.id(u) for u in enc.dictionary.to_pylist()] or [self.UNK_ID], np.int64)
            return lut[enc.indices.to_numpy(zero_copy_only=False)] if len(arr) else np.zeros(0, np.int64)
        get = self.stoi.get
        unk = self.UNK_ID
        return np.fromiter((unk if t is None else get(t, unk) for t in types), dtype=np.int64, count=len(types))

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Ids -> token strings (specials spelled ``<pad>`` / ``<unk>``)."""
        out = []
        for i in np.asarray(ids, np.int64).tolist():
            if not 0 <= i < len(self.itos):
                raise EmbeddingError(f"TypeVocab.decode: id {i} out of range [0, {len(self.itos)})")
            out.append(self.itos[i])
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, saved with a model's checkpoint."""
        return {
            "format_version": self.FORMAT_VERSION,
            "types": list(self.types),
            "counts": list(self.counts),
            "min_count": self.min_count,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TypeVocab:
        try:
            version = int(d.get("format_version", cls.FORMAT_VERSION))
            types, counts, min_count = d["types"], d.get("counts"), int(d.get("min_count", 1))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise EmbeddingError(f"not a saved TypeVocab (expected keys types, counts, min_count): {e}") from e
        if version != cls.FORMAT_VERSION:
            raise EmbeddingError(f"TypeVocab format_version {version} is not supported (this ejc reads {cls.FORMAT_VERSION})")
        return cls(list(types), None if counts is None else list(counts), min_count=min_count)


__all__ = ["HashedTypeEmbedder", "TypeVocab", "hashed_vector", "token_key"]
