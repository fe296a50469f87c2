"""Representation and anomaly quality on `ejc synth` data with known ground truth (issue 3).

Trains an Event-JEPA model on a synthetic log, then measures in the same run:
- entity-class probe (5-fold logistic regression) on pooled representations: ejc vs the same
  architecture randomly initialised vs the mean of raw event vectors; effective rank;
- planted anomalous events: AUROC of `anomaly_scores` vs baselines (unigram type surprise,
  bigram type surprise, |log-gap z-score| per entity, distance of the vector to its type's mean).

    .venv/bin/python benchmarks/synth_quality.py --entities 240 --config small [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ejc.config import load_config
from ejc.data.synth import generate
from ejc.eval.probe import compare_probes
from ejc.infer.event_jepa import EventJEPA
from ejc.model.jepa import effective_rank
from ejc.train.data import load_sequences

HERE = Path(__file__).resolve().parent


def baselines(train, test):  # noqa: ANN001, ANN201
    uni = Counter(t for s in train for t in s.event_types)
    total = sum(uni.values())
    big = Counter((a, b) for s in train for a, b in zip(s.event_types[:-1], s.event_types[1:]))
    vecs: dict[tuple[str, str], list] = {}
    for s in train:
        for i in range(len(s)):
            v = s.vector_at(i)
            if v is not None:
                vecs.setdefault((s.modalities[i], s.event_types[i]), []).append(v)
    proto = {k: np.mean(v, 0) for k, v in vecs.items()}
    out = {"unigram_type_surprise": [], "bigram_type_surprise": [], "log_gap_zscore": [], "vector_to_type_mean": []}
    for s in test:
        t = s.event_types
        out["unigram_type_surprise"].append(np.array([-np.log((uni[x] + 1) / (total + len(uni))) for x in t]))
        bg = [0.0] + [-np.log((big[(a, b)] + 1) / (uni[a] + len(uni))) for a, b in zip(t[:-1], t[1:])]
        out["bigram_type_surprise"].append(np.array(bg))
        lg = np.log(s.gaps() + 1e-3)
        out["log_gap_zscore"].append(np.abs((lg - np.median(lg)) / (lg.std() + 1e-9)))
        d = np.zeros(len(s))
        for i in range(len(s)):
            v, key = s.vector_at(i), (s.modalities[i], t[i])
            d[i] = np.linalg.norm(v - proto[key]) if v is not None and key in proto else 0.0
        out["vector_to_type_mean"].append(d)
    return {k: np.concatenate(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="small")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "synth_quality")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table, truth = generate(args.entities, seed=args.seed)
    seqs, _ = load_sequences(table)
    # the shipped recipe (`ejc train`); synthetic entities are streams, not complete cases: no END
    cfg = load_config(args.config, [f"train.seed={args.seed}", "finetune.ends=false", *args.overrides])
    shutil.rmtree(args.out / "model", ignore_errors=True)  # always train from scratch
    t0 = time.perf_counter()
    model = EventJEPA.fit(table, args.out / "model", config=cfg)
    train_s = time.perf_counter() - t0

    cls = {e["id"]: e["class"] for e in truth["entities"]}
    y = np.array([cls[s.id] for s in seqs])
    probe = compare_probes(model, seqs, y, args.seed)
    rnd = EventJEPA.untrained_like(model, args.seed)
    rank = {"ejc": effective_rank(torch.as_tensor(model.embed_sequences(seqs))), "random_encoder": effective_rank(torch.as_tensor(rnd.embed_sequences(seqs)))}

    # planted anomalous events (calibrated on the same, mostly normal, training log: unsupervised)
    labels = np.concatenate([np.asarray(s.labels == "anomaly") for s in seqs]).astype(int)
    ejc_scores = np.concatenate([model.anomaly_scores(s).event_scores for s in seqs])
    base = baselines(seqs, seqs)
    auroc = {"ejc": float(roc_auc_score(labels, ejc_scores))}
    auroc.update({k: float(roc_auc_score(labels, v)) for k, v in base.items()})
    by_kind = {}
    kinds = {(a["entity"], a["index"]): a["kind"] for a in truth["anomalous_events"]}
    offs, pos = 0, {}
    for s in seqs:
        pos[s.id] = offs
        offs += len(s)
    normal = labels == 0
    for kind in sorted(set(kinds.values())):
        idx = np.array([pos[e] + i for (e, i), k in kinds.items() if k == kind])
        m = normal.copy()
        m[idx] = True
        lab = np.zeros(len(labels), int)
        lab[idx] = 1
        by_kind[kind] = {"ejc": float(roc_auc_score(lab[m], ejc_scores[m])), **{k: float(roc_auc_score(lab[m], v[m])) for k, v in base.items()}}

    report = {
        "benchmark": "synth_quality",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, torch {torch.__version__}, cuda={torch.cuda.is_available()}",
        "data": {"entities": args.entities, "seed": args.seed, "events": table.num_rows, "anomalous_events": int(labels.sum())},
        "config": args.config,
        "overrides": args.overrides,
        "train_seconds": round(train_s, 1),
        "probe_accuracy": probe,
        "effective_rank_pooled": rank,
        "anomaly_event_auroc": auroc,
        "anomaly_event_auroc_by_kind": by_kind,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
