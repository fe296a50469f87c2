"""Cube quality on `ejc synth --cube` data with planted structure (issue 5).

Protocol: thresholds are chosen once on a development seed (best F1 on its truth); every
figure is then measured on other seeds the method never saw, through the public
`EmbeddingCube` API:
- relationship discovery (`discover_relationships`): precision and recall of the `similar` and
  `complementary` pairs against the planted ones (unordered pairs, typed), and both together;
- hierarchy detection (`create_hierarchy(levels=None)`): number of detected levels vs the 2
  planted ones and the adjusted Rand index of each detected level against the planted level
  (coarse to fine);
- transforms (`fit_transform` on half of the entities): top-1 cross-space retrieval on the
  other half (text vector -> image space -> nearest of all image vectors) for the fitted
  least-squares and Procrustes maps, against an identity map and a random Gaussian map
  measured in the same run (chance is 1 / entities).

    .venv/bin/python benchmarks/cube_quality.py --entities 1000 --dev-seed 0 --seeds 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from ejc.cube.cube import EmbeddingCube
from ejc.cube.entity import entities_from_table
from ejc.data.synth_cube import CubeSynthConfig, generate_cube

HERE = Path(__file__).resolve().parent


def build(num: int, seed: int, cfg: CubeSynthConfig) -> tuple[EmbeddingCube, dict]:
    ents, events, truth = generate_cube(num, seed, cfg)
    cube = EmbeddingCube()
    cube.add_entities(entities_from_table(ents))
    cube.add_cooccurrence(events)
    return cube, truth


def planted(truth: dict, kind: str) -> set[tuple[str, str]]:
    return {tuple(sorted((r["source"], r["target"]))) for r in truth["relationships"] if r["type"] == kind}


def found_pairs(cube: EmbeddingCube, kind: str, threshold: float) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for r in cube.discover_relationships(threshold=threshold, types=(kind,)):
        key = tuple(sorted((r.source, r.target)))
        out[key] = max(out.get(key, -np.inf), r.confidence)
    return out


def pr(found: set, truth: set) -> dict[str, float]:
    tp = len(found & truth)
    p = tp / len(found) if found else 0.0
    r = tp / len(truth) if truth else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "found": len(found), "planted": len(truth)}


def best_threshold(scored: dict[tuple[str, str], float], truth: set) -> float:
    """The threshold (midpoint between consecutive scores) with the best F1 on the dev seed."""
    vals = np.sort(np.unique(list(scored.values())))
    cands = np.concatenate([(vals[:-1] + vals[1:]) / 2, vals[-1:]])
    f1 = [pr({k for k, v in scored.items() if v >= t}, truth)["f1"] for t in cands]
    return float(cands[int(np.argmax(f1))])


def retrieval(cube: EmbeddingCube, queries: np.ndarray, ids: list[str]) -> float:
    hits = 0
    for q, i in zip(queries, ids):
        nb = cube.find_similar(q, "image", k=1)
        hits += bool(nb) and nb[0].entity_id == i
    return hits / len(ids)


def evaluate(num: int, seed: int, cfg: CubeSynthConfig, thr: dict[str, float]) -> dict:
    t0 = time.perf_counter()
    cube, truth = build(num, seed, cfg)
    res: dict = {"seed": seed, "build_s": time.perf_counter() - t0}
    # relationships
    t = time.perf_counter()
    rel = {}
    typed_found, typed_truth = set(), set()
    for kind in ("similar", "complementary"):
        f = set(found_pairs(cube, kind, thr[kind]))
        rel[kind] = pr(f, planted(truth, kind))
        typed_found |= {(kind, *k) for k in f}
        typed_truth |= {(kind, *k) for k in planted(truth, kind)}
    rel["all"] = pr(typed_found, typed_truth)
    res["relationships"] = rel
    res["relationships_s"] = time.perf_counter() - t
    # hierarchy
    t = time.perf_counter()
    h = cube.create_hierarchy(hierarchy_type="found", levels=None, modality="text")
    ids = [e["id"] for e in truth["entities"]]
    levels = {}
    for name, det in zip(truth["hierarchy"]["levels"], h["levels"] + [None] * 2):
        want = [e[name] for e in truth["entities"]]
        got = [h["values"][det][i] for i in ids] if det else [0] * len(ids)
        levels[name] = {"detected_level": det, "clusters": len(set(got)), "planted_clusters": len(set(want)),
                        "ari": adjusted_rand_score(want, got)}
    res["hierarchy"] = {"detected_levels": len(h["levels"]), "planted_levels": len(truth["hierarchy"]["levels"]), "levels": levels}
    res["hierarchy_s"] = time.perf_counter() - t
    # transforms: fit on half, retrieve the other half among all entities
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ids))
    train = [ids[i] for i in perm[: len(ids) // 2]]
    test = [ids[i] for i in perm[len(ids) // 2 :]]
    X = np.stack([cube.vector(i, "text") for i in test])
    tr: dict = {"train_entities": len(train), "test_entities": len(test), "chance": 1.0 / len(ids)}
    for method in ("linear", "procrustes"):
        desc = cube.fit_transform("text", "image", method=method, entity_ids=train, name=method)
        path = cube.find_path("text", "image")
        mapped = cube.transforms.apply(X, [method])
        tr[method] = {"top1": retrieval(cube, mapped, test), "heldout_fvu": desc["error"]}
        tr["find_path"] = path
    tr["identity"] = {"top1": retrieval(cube, X, test)}
    R = rng.standard_normal((X.shape[1], cube.dim("image"))) / np.sqrt(X.shape[1])
    tr["random_map"] = {"top1": retrieval(cube, (X @ R).astype(np.float32), test)}
    res["transforms"] = tr
    res["transforms_s"] = time.perf_counter() - t
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entities", type=int, default=1000)
    ap.add_argument("--dev-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--out", type=Path, default=HERE / "out" / "cube_quality")
    args = ap.parse_args()
    if args.dev_seed in args.seeds:
        ap.error("the dev seed must not be among the evaluation seeds")
    cfg = CubeSynthConfig()
    # thresholds from the dev seed only
    cube, truth = build(args.entities, args.dev_seed, cfg)
    thr = {k: best_threshold(found_pairs(cube, k, -np.inf), planted(truth, k)) for k in ("similar", "complementary")}
    runs = [evaluate(args.entities, s, cfg, thr) for s in args.seeds]

    def agg(get) -> dict[str, float]:  # noqa: ANN001
        v = np.array([get(r) for r in runs], float)
        return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}

    summary = {
        "similar_precision": agg(lambda r: r["relationships"]["similar"]["precision"]),
        "similar_recall": agg(lambda r: r["relationships"]["similar"]["recall"]),
        "complementary_precision": agg(lambda r: r["relationships"]["complementary"]["precision"]),
        "complementary_recall": agg(lambda r: r["relationships"]["complementary"]["recall"]),
        "all_precision": agg(lambda r: r["relationships"]["all"]["precision"]),
        "all_recall": agg(lambda r: r["relationships"]["all"]["recall"]),
        "detected_levels": agg(lambda r: r["hierarchy"]["detected_levels"]),
        "ari_category": agg(lambda r: r["hierarchy"]["levels"]["category"]["ari"]),
        "ari_subcategory": agg(lambda r: r["hierarchy"]["levels"]["subcategory"]["ari"]),
        "top1_linear": agg(lambda r: r["transforms"]["linear"]["top1"]),
        "top1_procrustes": agg(lambda r: r["transforms"]["procrustes"]["top1"]),
        "top1_identity": agg(lambda r: r["transforms"]["identity"]["top1"]),
        "top1_random_map": agg(lambda r: r["transforms"]["random_map"]["top1"]),
    }
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "entities": args.entities,
        "dev_seed": args.dev_seed,
        "seeds": args.seeds,
        "config": cfg.to_dict(),
        "thresholds_from_dev_seed": thr,
        "summary": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"thresholds_from_dev_seed": thr, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
