"""Small deterministic event data shared by the model tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ejc.data.sequence import EventSequence


def random_sequences(num: int = 20, seed: int = 0, min_len: int = 10, max_len: int = 60, two_modalities: bool = False) -> list[EventSequence]:
    rng = np.random.default_rng(seed)
    out = []
    for e in range(num):
        n = int(rng.integers(min_len, max_len))
        ts = np.cumsum(rng.exponential(60, size=n)) + 1.7e9
        types = [f"t{rng.integers(5)}" for _ in range(n)]
        if two_modalities:
            mods = ["a" if i % 3 else "b" for i in range(n)]
            vecs = [rng.normal(size=8) if m == "a" else rng.normal(size=4) for m in mods]
            out.append(EventSequence(embeddings=vecs, timestamps=ts, modality=mods, event_types=types, id=f"e{e}"))
        else:
            out.append(EventSequence(embeddings=rng.normal(size=(n, 8)), timestamps=ts, event_types=types, id=f"e{e}"))
    return out


def random_table(**kw) -> pa.Table:
    return pa.concat_tables([s.to_table() for s in random_sequences(**kw)])
