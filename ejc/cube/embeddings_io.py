"""The embeddings exchange format: a directory of Parquet files of entity vectors.

Written by the re-embedding job, read by the sharded index build. Columns:

==============  ======================================  ==========================================
column          type                                    meaning
==============  ======================================  ==========================================
``entity_id``   string, required, non-empty             the entity
``embedding``   list<float32> (or float64 / fixed-size   its vector in ``modality``; one length per
                list), required, non-null, finite        modality across all files
``modality``    string, optional                        the embedding space (absent: ``default``)
other string    optional                                hierarchy levels (e.g. ``category``,
columns                                                 ``brand``): stored with the index, usable
                                                        as query filters
==============  ======================================  ==========================================

Files are ``*.parquet`` anywhere under the directory, read in sorted path order; when the same
``(modality, entity_id)`` appears more than once, the last row wins (so an incremental job can
append a newer file instead of rewriting older ones). Columns of other types are ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ejc.errors import ReaderError, SchemaError

ID_COL, EMB_COL, MOD_COL = "entity_id", "embedding", "modality"
DEFAULT_MODALITY = "default"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def list_embedding_files(path: str | os.PathLike[str]) -> list[Path]:
    """The ``*.parquet`` files under ``path`` (or ``path`` itself), sorted; errors when none."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ReaderError(p, "no such file or directory; pass a directory of embeddings Parquet files (entity_id, embedding[, modality])")
    files = sorted(f for f in p.rglob("*.parquet") if f.is_file() and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts))
    if not files:
        raise ReaderError(p, "contains no .parquet files; expected embeddings files with columns entity_id, embedding[, modality]")
    return files


def check_modality_name(name: str) -> str:
    """Modality names become directory names: letters, digits, ``_ . -``, starting alphanumeric."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise SchemaError(f"modality name {name!r} is not usable: use letters, digits, '_', '.', '-' (starting with a letter or digit)")
    return name


def read_embeddings_file(path: str | os.PathLike[str]) -> dict[str, tuple[list[str], np.ndarray, dict[str, list[str | None]]]]:
    """One embeddings file as ``{modality: (ids, vectors [n, d] float32, {level: values})}``.

    Raises:
        ReaderError: the file cannot be read as Parquet.
        SchemaError: missing / mistyped columns, null or empty ids, null, ragged or non-finite
            vectors — naming the file, the column and how to fix it.
    """
    p = Path(path)
    try:
        table = pq.read_table(p)
    except (OSError, pa.ArrowException) as e:
        raise ReaderError(p, f"not a readable Parquet file: {e}") from e
    names = table.schema.names
    missing = [c for c in (ID_COL, EMB_COL) if c not in names]
    if missing:
        raise SchemaError(f"{p}: missing column(s) {missing}; embeddings files need entity_id (string) and embedding (list<float32>), found {names}")
    ids_col = table.column(ID_COL)
    if not (pa.types.is_string(ids_col.type) or pa.types.is_large_string(ids_col.type)):
        raise SchemaError(f"{p}: column entity_id must be string, got {ids_col.type}; cast the ids to strings")
    if ids_col.null_count or (len(ids_col) and pc.any(pc.equal(pc.utf8_length(ids_col), 0)).as_py()):
        raise SchemaError(f"{p}: column entity_id has null or empty values; every row needs an entity id")
    if MOD_COL in names:
        mods_col = table.column(MOD_COL)
        if not pa.types.is_string(mods_col.type) or mods_col.null_count:
            raise SchemaError(f"{p}: column modality must be non-null strings, got {mods_col.type} with {mods_col.null_count} nulls")
        modalities = mods_col.to_pylist()
    else:
        modalities = [DEFAULT_MODALITY] * table.num_rows
    levels = [c for c in names if c not in (ID_COL, EMB_COL, MOD_COL) and (pa.types.is_string(table.schema.field(c).type) or pa.types.is_large_string(table.schema.field(c).type))]
    flat, starts, lengths = _vectors(p, table.column(EMB_COL))
    ids = ids_col.to_pylist()
    hier = {c: table.column(c).to_pylist() for c in levels}
    out: dict[str, tuple[list[str], np.ndarray, dict[str, list[str | None]]]] = {}
    mod_arr = np.asarray(modalities, dtype=object)
    for m in dict.fromkeys(modalities):
        check_modality_name(m)
        rows = np.flatnonzero(mod_arr == m)
        dims = np.unique(lengths[rows])
        if len(dims) > 1:
            raise SchemaError(f"{p}: embeddings of modality {m!r} have different lengths {dims[:5].tolist()}; one modality has one dimension")
        vecs = flat[starts[rows][:, None] + np.arange(dims[0])]  # [rows, d]
        out[m] = ([ids[r] for r in rows], vecs, {c: [hier[c][r] for r in rows] for c in levels})
    return out


def _vectors(p: Path, col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values [total] float32, start [n], length [n])`` of a list column, validated."""
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) or not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        raise SchemaError(f"{p}: column embedding must be a list of floats (list<float32>), got {t}")
    if col.null_count:
        raise SchemaError(f"{p}: column embedding has {col.null_count} null vector(s); drop those rows or embed them first")
    arr = col.combine_chunks()
    if isinstance(arr, pa.ChunkedArray):  # older pyarrow keeps zero-chunk arrays chunked
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks else pa.array([], type=t)
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if flat.size and not np.isfinite(flat).all():
        raise SchemaError(f"{p}: column embedding has NaN or infinite values; fix or drop those vectors")
    if pa.types.is_fixed_size_list(t):
        lengths = np.full(len(arr), t.list_size, dtype=np.int64)
        return flat, np.arange(len(arr), dtype=np.int64) * t.list_size, lengths
    offsets = arr.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets)
    if (lengths == 0).any():
        raise SchemaError(f"{p}: column embedding has empty vectors; every row needs a vector")
    return flat, offsets[:-1], lengths


def write_embeddings(path: str | os.PathLike[str], ids: list[str], vectors: np.ndarray, modality: str | None = None, hierarchy: dict[str, list[str]] | None = None) -> Path:
    """Write one embeddings file in this format (``vectors [n, d]``); returns its path."""
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    if vecs.ndim != 2 or len(vecs) != len(ids):
        raise SchemaError(f"vectors must be [len(ids), d], got {vecs.shape} for {len(ids)} ids")
    cols: dict[str, pa.Array] = {ID_COL: pa.array(ids, pa.string()), EMB_COL: pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), vecs.shape[1]).cast(pa.list_(pa.float32()))}
    if modality is not None:
        cols[MOD_COL] = pa.array([check_modality_name(modality)] * len(ids), pa.string())
    for k, v in (hierarchy or {}).items():
        cols[k] = pa.array(v, pa.string())
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(pa.table(cols), tmp)
    os.replace(tmp, out)
    return out


__all__ = ["DEFAULT_MODALITY", "check_modality_name", "list_embedding_files", "read_embeddings_file", "write_embeddings"]
