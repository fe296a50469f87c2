"""Transforms between embedding spaces and the registry that chains them.

Legend: ``n`` vectors, ``d_s`` / ``d_t`` source / target dimensions.

A transform maps ``[n, d_s] -> [n, d_t]``. It is either *fitted* from entities present in both
spaces (:func:`fit_linear`: least squares with a bias and a small ridge; :func:`fit_procrustes`:
scaled orthogonal map, for spaces that differ by a rotation) or *user-supplied* (any callable
or ``torch.nn.Module``; see :func:`register_model`).

Every transform carries an **error**: the fraction of variance unexplained (FVU)
``sum ||f(x) - y||^2 / sum ||y - mean(y)||^2`` on entity pairs it was not fitted on (0 is
perfect, 1 is no better than predicting the mean). :meth:`TransformRegistry.find_path` takes the
spaces as nodes and transforms as edges weighted by their error, and returns the chain with the
lowest total error (Dijkstra; ties go to fewer steps, then names). Errors of small, independent
steps roughly add, which is what makes the sum a sensible path cost.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ejc.errors import CubeError

FIT_METHODS = ("linear", "procrustes", "auto")

# name -> {"factory": class or callable, "source_space": str | None, "target_space": str | None}
MODEL_FACTORIES: dict[str, dict[str, Any]] = {}


def register_model(name: str, source_space: str | None = None, target_space: str | None = None) -> Callable[[Any], Any]:
    """Register a transform class or factory under ``name`` (seed 000's ``@register_model``).

    ``cube.add_model(name)`` then builds it: a class is called as ``cls(input_dim=d_s,
    output_dim=d_t)`` (an ``nn.Module`` whose weights you load yourself), any other callable is
    used as the transform itself. ``source_space`` / ``target_space`` are defaults for ``add_model``.
    """

    def deco(obj: Any) -> Any:
        MODEL_FACTORIES[name] = {"factory": obj, "source_space": source_space, "target_space": target_space}
        return obj

    return deco


@dataclass
class LinearMap:
    """``y = x @ W + b`` with ``W`` [d_s, d_t] and ``b`` [d_t]: the fitted transforms."""

    W: np.ndarray
    b: np.ndarray
    method: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) @ self.W + self.b).astype(np.float32)


def fit_linear(X: np.ndarray, Y: np.ndarray, ridge: float = 1e-6) -> LinearMap:
    """Least squares ``Y ~ X W + b``; ``ridge`` is relative to the mean eigenvalue of ``Xc^T Xc``."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    G = Xc.T @ Xc
    lam = ridge * max(np.trace(G) / G.shape[0], 1e-12)
    W = np.linalg.solve(G + lam * np.eye(G.shape[0]), Xc.T @ Yc)
    return LinearMap(W, my - mx @ W, "linear")


def fit_procrustes(X: np.ndarray, Y: np.ndarray) -> LinearMap:
    """Scaled orthogonal Procrustes ``Y ~ s X R + b`` with ``R`` (semi-)orthogonal [d_s, d_t]."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    U, S, Vt = np.linalg.svd(Xc.T @ Yc, full_matrices=False)
    R = U @ Vt
    scale = S.sum() / max(float((Xc**2).sum()), 1e-12)
    W = scale * R
    return LinearMap(W, my - mx @ W, "procrustes")


def fvu(pred: np.ndarray, Y: np.ndarray) -> float:
    """Fraction of variance unexplained: ``sum ||pred - Y||^2 / sum ||Y - mean(Y)||^2``."""
    Y = np.asarray(Y, np.float64)
    den = float(((Y - Y.mean(0)) ** 2).sum())
    return float(((np.asarray(pred, np.float64) - Y) ** 2).sum() / max(den, 1e-12))


def fit_pairs(X: np.ndarray, Y: np.ndarray, method: str = "auto", holdout: float = 0.2, seed: int = 0) -> tuple[LinearMap, float, dict[str, Any]]:
    """Fit on ``1 - holdout`` of the pairs, measure FVU on the rest, refit on all pairs.

    ``method="auto"`` fits both kinds and keeps the one with the lower held-out error.
    Returns ``(map, held-out error, info)``.
    """
    if method not in FIT_METHODS:
        raise CubeError(f"unknown transform method {method!r}; choose one of {FIT_METHODS}")
    n = len(X)
    n_out = int(round(n * holdout))
    if not 0 < holdout < 1 or n_out < 2 or n - n_out < 2:
        raise CubeError(f"fitting a transform needs at least 2 training and 2 held-out pairs (holdout={holdout}); "
                        f"only {n} entities have vectors in both spaces")
    perm = np.random.default_rng(seed).permutation(n)
    test, train = perm[:n_out], perm[n_out:]
    fitters = {"linear": fit_linear, "procrustes": fit_procrustes}
    methods = ["linear", "procrustes"] if method == "auto" else [method]
    errors = {m: fvu(fitters[m](X[train], Y[train])(X[test]), Y[test]) for m in methods}
    best = min(methods, key=lambda m: (errors[m], m))
    info = {"method": best, "pairs": n, "train_pairs": int(len(train)), "heldout_pairs": int(n_out), "heldout_errors": errors}
    return fitters[best](X, Y), errors[best], info


def apply_model(fn: Any, x: np.ndarray, name: str) -> np.ndarray:
    """Run a transform on ``x`` [n, d_s]; torch modules run under ``no_grad`` on float32 tensors."""
    if hasattr(fn, "parameters") and hasattr(fn, "forward"):
        import torch

        with torch.no_grad():
            p = next(iter(fn.parameters()), None)
            t = torch.as_tensor(np.asarray(x, np.float32), device=p.device if p is not None else "cpu")
            out = fn(t).detach().float().cpu().numpy()
    else:
        out = np.asarray(fn(x), dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != len(x):
        raise CubeError(f"transform {name!r} returned shape {tuple(out.shape)} for input {tuple(np.shape(x))}; expected [n, d_target]")
    if not np.isfinite(out).all():
        raise CubeError(f"transform {name!r} produced NaN or infinite values")
    return out


@dataclass
class TransformEntry:
    """One edge ``source -> target``; ``error`` None means "measure it when first needed"."""

    name: str
    source: str
    target: str
    fn: Any
    error: float | None
    kind: str  # "linear" | "procrustes" | "user"
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "target": self.target, "error": self.error, "kind": self.kind, "info": self.info}


class TransformRegistry:
    """Named transforms between spaces, and lowest-error paths through them."""

    def __init__(self) -> None:
        self._entries: dict[str, TransformEntry] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[TransformEntry]:
        return [self._entries[k] for k in sorted(self._entries)]

    def get(self, name: str) -> TransformEntry:
        if name not in self._entries:
            raise CubeError(f"no transform named {name!r}; known: {sorted(self._entries)}")
        return self._entries[name]

    def add(self, entry: TransformEntry) -> None:
        if entry.source == entry.target:
            raise CubeError(f"transform {entry.name!r} maps {entry.source!r} to itself; a transform joins two different spaces")
        if entry.error is not None and not (np.isfinite(entry.error) and entry.error >= 0):
            raise CubeError(f"transform {entry.name!r}: error must be a finite number >= 0, got {entry.error}")
        self._entries[entry.name] = entry

    def remove(self, name: str) -> None:
        self.get(name)
        del self._entries[name]

    def find_path(self, source: str, target: str, error_of: Callable[[TransformEntry], float] | None = None) -> list[str]:
        """Names of the transforms ``source -> .. -> target`` with the lowest total error.

        ``error_of`` gives an entry's error (default: its stored error, which must be set).
        ``[]`` when ``source == target``; :class:`CubeError` when no chain exists.
        """
        if source == target:
            return []
        cost = error_of or (lambda e: e.error)
        out: dict[str, list[TransformEntry]] = {}
        for e in self.entries():
            out.setdefault(e.source, []).append(e)
        best: dict[str, tuple[float, int]] = {source: (0.0, 0)}
        heap: list[tuple[float, int, list[str], str]] = [(0.0, 0, [], source)]
        while heap:
            c, hops, names, node = heapq.heappop(heap)
            if node == target:
                return names
            if (c, hops) > best.get(node, (np.inf, 0)):
                continue
            for e in out.get(node, []):
                err = cost(e)
                if err is None:
                    raise CubeError(f"transform {e.name!r} has no error; pass error= to add_model")
                key = (c + float(err), hops + 1)
                if key < best.get(e.target, (np.inf, 0)):
                    best[e.target] = key
                    heapq.heappush(heap, (key[0], key[1], names + [e.name], e.target))
        spaces = sorted({e.source for e in self.entries()} | {e.target for e in self.entries()})
        raise CubeError(f"no chain of transforms leads from {source!r} to {target!r} (spaces with transforms: {spaces}); "
                        "fit one with cube.fit_transform(source, target) or add one with cube.add_model(...)")

    def apply(self, x: np.ndarray, path: list[str]) -> np.ndarray:
        for name in path:
            e = self._entries[name]
            x = apply_model(e.fn, x, name)
        return x


__all__ = [
    "FIT_METHODS",
    "MODEL_FACTORIES",
    "LinearMap",
    "TransformEntry",
    "TransformRegistry",
    "apply_model",
    "fit_linear",
    "fit_pairs",
    "fit_procrustes",
    "fvu",
    "register_model",
]
