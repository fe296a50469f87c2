"""Embedders for events that carry no vector, and the embedding-type registry.

Importing this package registers the built-ins ``types``, ``temporal``, ``spatial`` and
``text``; it imports neither torch nor sentence-transformers (the text model loads on first
use). Build any embedder by name::

    from ejc.embed import create_embedder
    vecs = create_embedder("types", dim=64).embed_table(events)   # [n, 64] float32
"""

from ejc.embed.registry import (
    Embedder,
    ProcessEmbedder,
    available_embedders,
    create_embedder,
    register_embedding_type,
    unregister_embedding_type,
)
from ejc.embed.spatial import SpatialHashEmbedder, spatial_hash
from ejc.embed.temporal import TemporalEmbedder, temporal_bin_counts, temporal_features
from ejc.embed.text import CacheStats, TextEmbedder
from ejc.embed.tokens import HashedTypeEmbedder, TypeVocab, hashed_vector

__all__ = [
    "CacheStats",
    "Embedder",
    "HashedTypeEmbedder",
    "ProcessEmbedder",
    "SpatialHashEmbedder",
    "TemporalEmbedder",
    "TextEmbedder",
    "TypeVocab",
    "available_embedders",
    "create_embedder",
    "hashed_vector",
    "register_embedding_type",
    "spatial_hash",
    "temporal_bin_counts",
    "temporal_features",
    "unregister_embedding_type",
]
