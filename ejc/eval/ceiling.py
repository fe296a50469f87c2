"""How well *any* predictor could do on a test set: in-sample ceilings of next-event metrics.

A predictor that sees only the types of a prefix maps equal type sequences to equal answers. Its
best possible score on a test set is therefore reached by answering, for every distinct prefix,
the type that most often follows it *in that test set* (and, for the time, the median of the
gaps that follow it). :func:`prefix_ceiling` computes that answer sheet from the test targets
themselves: an optimistic bound, never a method to compare against as an equal. It tells how
much headroom a target leaves: a target above it can only be met with information beyond the
prefix's types (its times, other cases) or by chance.

With ``last`` the cells are the last ``last`` types instead of the whole prefix (the bound of an
order-``last`` Markov predictor). :func:`cell_ceiling` does the same for any cell key, e.g. the
last type with a bucket of the last gap; once the key holds continuous features it is no longer
a bound (fine enough cells fit anything) but shows how much a feature could add at best.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from ejc.data.sequence import EventSequence
from ejc.eval.protocol import PrefixTargets, type_list

CellKey = Callable[[list[str], np.ndarray | None], Hashable]  # (prefix types, prefix timestamps or None) -> cell


def cell_ceiling(cases: list[EventSequence], targets: PrefixTargets, key: CellKey) -> dict[str, float]:
    """In-sample best ``accuracy`` (incl. END), ``accuracy_excl_end`` (the most frequent type other
    than END, on the targets that are not END), ``time_mae_days`` (the cell's median gap, on the
    targets that are not END and have a gap) and ``cells`` (distinct keys), over ``targets`` of
    ``cases`` grouped by ``key``."""
    cells: dict[Hashable, list[int]] = defaultdict(list)
    for j, (c, k) in enumerate(zip(targets.case, targets.length)):
        ts = cases[c].timestamps
        cells[key(type_list(cases[c])[:k], None if ts is None else np.asarray(ts[:k]))].append(j)
    is_end = targets.is_end
    hit_all = hit_cont = 0
    abs_err: list[float] = []
    for idx in cells.values():
        ix = np.asarray(idx)
        hit_all += Counter(targets.types[ix]).most_common(1)[0][1]
        cont = ix[~is_end[ix]]
        if len(cont):
            hit_cont += Counter(targets.types[cont]).most_common(1)[0][1]
            g = targets.gaps[cont]
            g = g[np.isfinite(g)]
            if len(g):
                abs_err.extend(np.abs(g - np.median(g)))
    n, n_cont = len(targets), int((~is_end).sum())
    nan = float("nan")
    return {
        "accuracy": hit_all / n if n else nan,
        "accuracy_excl_end": hit_cont / n_cont if n_cont else nan,
        "time_mae_days": float(np.mean(abs_err)) / 86400.0 if abs_err else nan,
        "cells": len(cells),
    }


def prefix_ceiling(cases: list[EventSequence], targets: PrefixTargets, last: int | None = None) -> dict[str, float]:
    """:func:`cell_ceiling` with the prefix's types as the cell (its last ``last`` types when given):
    no predictor that sees only those types scores more (accuracies) or less (MAE) on ``targets``."""
    if last is not None and last < 1:
        raise ValueError(f"last must be at least 1 or None (the whole prefix), got {last}")
    return cell_ceiling(cases, targets, lambda types, _: tuple(types if last is None else types[-last:]))


def ceiling_details(cases: list[EventSequence], targets: PrefixTargets) -> dict[str, Any]:
    """What a next-event result reports as ``details["ceiling"]``."""
    return {
        "prefix_types": prefix_ceiling(cases, targets),
        "last_type": prefix_ceiling(cases, targets, last=1),
        "note": "optimistic, fitted on the test targets: the best any predictor that sees only the prefix's types (or only its last type) can score on this test set",
    }


__all__ = ["CellKey", "cell_ceiling", "ceiling_details", "prefix_ceiling"]
