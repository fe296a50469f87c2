"""Encoder scaling: time and peak memory against sequence length, hierarchical vs full attention.

One sequence of n events (random vectors, irregular times) goes through the encoder forward and
backward, each (encoder, n) in its own subprocess so peak RSS is its own. The full-attention
encoder is the quadratic baseline measured in the same run; it is skipped above --full-max.
Writes benchmarks/out/encoder_scaling.json and encoder_scaling.png.

    .venv/bin/python benchmarks/encoder_scaling.py [--lengths 1024 2048 ...] [--full-max 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _child(encoder: str, n: int, reps: int) -> None:
    import numpy as np
    import torch

    from ejc.config import load_config
    from ejc.data.sequence import EventSequence
    from ejc.model.jepa import EventJEPAModel
    from ejc.train.data import DataSpec

    torch.manual_seed(0)
    cfg = load_config("small", [f"model.encoder={encoder}"])
    rng = np.random.default_rng(0)
    seq = EventSequence(embeddings=rng.normal(size=(n, 16)).astype(np.float32), timestamps=np.cumsum(rng.exponential(60, n)) + 1.7e9, event_types=[f"t{i % 7}" for i in range(n)])
    spec = DataSpec.from_sequences([seq])
    model = EventJEPAModel(cfg, spec.modality_dims, len(spec.vocab))
    from ejc.model.encoder import to_tensors

    pad = 2 ** (cfg.model.num_levels - 1) if encoder == "hierarchical" else 1
    bt = to_tensors(spec.collate([seq], pad_to_multiple=pad))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        out = model.context(bt)
        out.events.sum().backward()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"encoder": encoder, "n": n, "seconds": min(times[1:]), "peak_rss_mb": peak, "rss_before_mb": base_rss}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768, 65536])
    ap.add_argument("--full-max", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "encoder_scaling.json")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.lengths:
        for enc in ("hierarchical", "full"):
            if enc == "full" and n > args.full_max:
                continue
            res = subprocess.run([sys.executable, __file__, "--child", enc, str(n), str(args.reps)], capture_output=True, text=True)
            if res.returncode != 0:
                rows.append({"encoder": enc, "n": n, "error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"})
            else:
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "benchmark": "encoder_scaling",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "config": "small preset (d=64, 3 levels, window 16), one sequence, forward + backward of the context encoder",
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for enc, color in (("hierarchical", "C0"), ("full", "C1")):
        pts = [r for r in rows if r["encoder"] == enc and "seconds" in r]
        axes[0].loglog([r["n"] for r in pts], [r["seconds"] for r in pts], "o-", color=color, label=enc)
        axes[1].loglog([r["n"] for r in pts], [r["peak_rss_mb"] for r in pts], "o-", color=color, label=enc)
    axes[0].set_xlabel("events")
    axes[0].set_ylabel("seconds (forward + backward)")
    axes[1].set_xlabel("events")
    axes[1].set_ylabel("peak RSS (MB)")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=100)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
