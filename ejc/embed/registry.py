"""The embedding-type registry: named embedders that turn event-table rows into vectors.

An :class:`Embedder` gives events that carry no vector one, computed from the canonical
event-table columns (:data:`ejc.data.schema.EVENT_COLUMNS`): ``event_type``, ``timestamp``,
``attributes``, ``text``. Built-ins (``types``, ``temporal``, ``spatial``, ``text``) register
themselves when :mod:`ejc.embed` is imported; users add their own with
:func:`register_embedding_type` and build any of them by name with :func:`create_embedder`.

A user class does not have to subclass :class:`Embedder`: the seed-000 style ::

    @register_embedding_type("custom")
    class CustomEmbedding:
        def __init__(self, dim): self.dim = dim
        def process(self, data): return np.random.randn(len(data), self.dim)

is enough. :func:`create_embedder` wraps such an object in an adapter whose ``embed_table``
feeds ``process`` the ``text`` column, falling back to ``event_type`` where text is null.

Shapes: ``n`` events, ``d`` embedding dimension.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ejc.data.schema import EmbeddingConfig
from ejc.errors import EmbeddingError


class Embedder(ABC):
    """Base class of every built-in embedder.

    ``name`` is the registry name, ``dim`` the vector size and ``modality`` the embedding
    space the vectors belong to (by default the registry name).
    """

    name: ClassVar[str] = ""
    dim: int
    modality: str
    model_name: ClassVar[str] = ""
    normalize: ClassVar[bool] = False
    version: ClassVar[str] = "1"

    def __init__(self, dim: int, modality: str | None = None):
        if int(dim) <= 0:
            raise EmbeddingError(f"{type(self).__name__}: dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.modality = modality or self.name or type(self).__name__.lower()

    @abstractmethod
    def embed_table(self, table: pa.Table) -> np.ndarray:
        """Embed every row of an event table. Returns ``[n, d]`` float32, never NaN."""

    @abstractmethod
    def process(self, data: Sequence[Any]) -> np.ndarray:
        """Embed raw values (strings, timestamps, ``(x, y)`` pairs, ...). Returns ``[n, d]`` float32."""

    def config(self) -> EmbeddingConfig:
        """The :class:`EmbeddingConfig` declaring the space these vectors live in."""
        return EmbeddingConfig(
            modality=self.modality,
            dim=self.dim,
            model_name=self.model_name or self.name,
            normalize=self.normalize,
            version=self.version,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, modality={self.modality!r})"


def check_output(out: Any, n: int, dim: int, who: str) -> np.ndarray:
    """Coerce an embedder's output to ``[n, dim]`` float32 and reject wrong shapes and NaN/inf."""
    try:
        arr = np.asarray(out, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise EmbeddingError(f"{who} returned something that is not a numeric array: {type(out).__name__}") from e
    if n == 0 and arr.size == 0:
        return np.zeros((0, dim), np.float32)
    if arr.shape != (n, dim):
        raise EmbeddingError(f"{who} returned shape {arr.shape}, expected ({n}, {dim})")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise EmbeddingError(f"{who} produced NaN or inf in {bad} of {n} vectors")
    return arr


def text_or_type(table: pa.Table) -> list[str | None]:
    """Per row: the ``text`` column, falling back to ``event_type`` where text is null."""
    n = table.num_rows
    cols = [table.column(c) for c in ("text", "event_type") if c in table.column_names]
    if not cols:
        raise EmbeddingError(
            f"cannot embed text: the table has neither a 'text' nor an 'event_type' column (columns: {table.column_names})"
        )
    out = pc.cast(cols[0], pa.string())
    if len(cols) == 2:
        out = pc.coalesce(out, pc.cast(cols[1], pa.string()))
    vals = out.to_pylist()
    assert len(vals) == n
    return vals


class ProcessEmbedder(Embedder):
    """Adapter giving a duck-typed ``process(data)`` object the full :class:`Embedder` interface.

    ``embed_table`` feeds ``process`` the per-row ``text`` (else ``event_type``); rows with
    neither get the empty string.
    """

    def __init__(self, inner: Any, name: str):
        dim = getattr(inner, "dim", None)
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim <= 0:
            raise EmbeddingError(
                f"embedding type {name!r} ({type(inner).__name__}) must set a positive integer attribute 'dim'; got {dim!r}"
            )
        self.inner = inner
        self.name = name  # type: ignore[misc]  # per instance: one adapter class serves every duck-typed type
        super().__init__(int(dim), getattr(inner, "modality", None) or name)

    def process(self, data: Sequence[Any]) -> np.ndarray:
        data = list(data)
        return check_output(self.inner.process(data), len(data), self.dim, f"embedding type {self.name!r}")

    def embed_table(self, table: pa.Table) -> np.ndarray:
        return self.process(["" if v is None else v for v in text_or_type(table)])

    def config(self) -> EmbeddingConfig:
        inner_cfg = getattr(self.inner, "config", None)
        if callable(inner_cfg):
            cfg = inner_cfg()
            if isinstance(cfg, EmbeddingConfig):
                return cfg
        return EmbeddingConfig(
            modality=self.modality,
            dim=self.dim,
            model_name=str(getattr(self.inner, "model_name", "") or type(self.inner).__name__),
            normalize=bool(getattr(self.inner, "normalize", False)),
            version=str(getattr(self.inner, "version", "1")),
        )

    def __repr__(self) -> str:
        return f"ProcessEmbedder(name={self.name!r}, inner={type(self.inner).__name__}, dim={self.dim})"


_REGISTRY: dict[str, type] = {}


def register_embedding_type(name: str, *, override: bool = False) -> Callable[[type], type]:
    """Class decorator registering an embedding type under ``name``.

    The class is either an :class:`Embedder` subclass or any class whose instances have
    ``dim`` and ``process(data)``. Registering a taken name raises :class:`EmbeddingError`
    unless ``override=True``.
    """
    if not isinstance(name, str) or not name.strip():
        raise EmbeddingError(f"embedding type name must be a non-empty string, got {name!r}")

    def decorator(cls: type) -> type:
        if not isinstance(cls, type):
            raise EmbeddingError(f"register_embedding_type({name!r}) decorates a class, got {cls!r}")
        if not callable(getattr(cls, "process", None)):
            raise EmbeddingError(
                f"embedding type {name!r} ({cls.__name__}) needs a method process(data) -> array [n, dim]"
            )
        if name in _REGISTRY and _REGISTRY[name] is not cls and not override:
            raise EmbeddingError(
                f"embedding type {name!r} is already registered ({_REGISTRY[name].__qualname__}); "
                f"pick another name or pass override=True"
            )
        entry = cls
        if issubclass(cls, Embedder):
            own = cls.__dict__.get("name") or ""
            if own in ("", name):
                cls.name = name
            else:  # the same class under a second name: a thin subclass carries the new name
                entry = type(cls.__name__, (cls,), {"name": name, "__module__": cls.__module__})
        _REGISTRY[name] = entry
        return cls

    return decorator


def unregister_embedding_type(name: str) -> None:
    """Remove ``name`` from the registry (for tests and plugins that re-register)."""
    if name not in _REGISTRY:
        raise EmbeddingError(f"embedding type {name!r} is not registered; registered: {available_embedders()}")
    del _REGISTRY[name]


def available_embedders() -> list[str]:
    """Registered embedding-type names, sorted."""
    return sorted(_REGISTRY)


def create_embedder(name: str, **kwargs: Any) -> Embedder:
    """Build the embedder registered as ``name`` with constructor arguments ``kwargs``."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise EmbeddingError(f"unknown embedding type {name!r}; registered: {', '.join(available_embedders())}")
    try:
        obj = cls(**kwargs)
    except TypeError as e:
        raise EmbeddingError(f"cannot create embedding type {name!r} with arguments {sorted(kwargs)}: {e}") from e
    if isinstance(obj, Embedder):
        return obj
    return ProcessEmbedder(obj, name)


__all__ = [
    "Embedder",
    "ProcessEmbedder",
    "available_embedders",
    "check_output",
    "create_embedder",
    "register_embedding_type",
    "text_or_type",
    "unregister_embedding_type",
]
