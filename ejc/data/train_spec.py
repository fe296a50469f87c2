"""Batch functions that summarise an event table for building a model's DataSpec at scale."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def modality_dims_batch(events: pa.Table) -> pa.Table:
    """``(modality, dim)`` pairs present in a batch; ``dim`` 0 for events without vectors."""
    lengths = pc.fill_null(pc.list_value_length(events.column("embedding")), 0)
    pairs = pa.table({"modality": events.column("modality"), "dim": pc.cast(lengths, pa.int64())})
    return pairs.group_by(["modality", "dim"]).aggregate([])


__all__ = ["modality_dims_batch"]
