"""Ingest throughput: rows/s and peak memory of `ejc ingest`, with and without embedding.

Each configuration runs in its own subprocess (so peak RSS is its own) on:
- Helpdesk with activity names (../shared/data/process/helpdesk_named.csv, 21,348 rows);
- a large CSV made from it by repeating cases under new ids (default 1,000,000 rows; written
  to benchmarks/out/, not committed), to show throughput and that memory does not grow with
  file size.
Baseline measured in the same run: `pandas.read_csv` of the same file (parse only, no
validation, no output), and `--embed text` with a cold vs warm text cache.

    .venv/bin/python benchmarks/ingest_throughput.py [--rows 1000000] [--out benchmarks/out/ingest.json]
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
DATA = HERE.parents[1] / "shared" / "data"
HELPDESK = DATA / "process" / "helpdesk_named.csv"


def _child(kind: str, src: str, out: str, embed: str, cache: str | None) -> None:
    t0 = time.perf_counter()
    if kind == "pandas":
        import pandas as pd

        rows = len(pd.read_csv(src, dtype=str))
    else:
        from ejc.data.ingest import ingest
        from ejc.data.readers import ColumnMapping

        mapping = ColumnMapping(type="concept:name", text="concept:name") if embed == "text" else None
        opts = {"cache_dir": cache} if cache else {}
        rep = ingest(src, out, embed=embed, mapping=mapping, embedder_options=opts, progress=False).report
        assert rep.read == rep.accepted + rep.quarantined
        rows = rep.read
    secs = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": secs, "rows_per_s": rows / secs, "peak_rss_mb": peak_mb}))


def run(kind: str, src: Path, out: Path, embed: str = "none", cache: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(src), str(out), embed, str(cache) if cache else ""]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    return json.loads(res.stdout.strip().splitlines()[-1])


def make_large_csv(path: Path, rows: int) -> None:
    import pandas as pd

    base = pd.read_csv(HELPDESK, dtype=str)
    reps = -(-rows // len(base))
    with path.open("w") as f:
        f.write(",".join(base.columns) + "\n")
        written = 0
        for r in range(reps):
            chunk = base.copy()
            chunk["case:concept:name"] = f"r{r}-" + chunk["case:concept:name"]
            chunk = chunk.iloc[: rows - written]
            chunk.to_csv(f, header=False, index=False)
            written += len(chunk)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "ingest.json")
    args = ap.parse_args()
    work = args.out.parent
    work.mkdir(parents=True, exist_ok=True)
    if not HELPDESK.is_file():
        sys.exit(f"{HELPDESK} is missing: this benchmark reads ../shared/data")
    large = work / f"helpdesk_x{args.rows}.csv"
    if not large.is_file():
        make_large_csv(large, args.rows)
    cache = work / "text_cache"
    if cache.exists():
        import shutil

        shutil.rmtree(cache)
    results = {
        "helpdesk_pandas_read_csv (baseline)": run("pandas", HELPDESK, work / "x"),
        "helpdesk_embed_none": run("ejc", HELPDESK, work / "h_none"),
        "helpdesk_embed_types": run("ejc", HELPDESK, work / "h_types", "types"),
        "helpdesk_embed_text_cold_cache": run("ejc", HELPDESK, work / "h_text", "text", cache),
        "helpdesk_embed_text_warm_cache": run("ejc", HELPDESK, work / "h_text2", "text", cache),
        f"large_{args.rows}_pandas_read_csv (baseline)": run("pandas", large, work / "x"),
        f"large_{args.rows}_embed_none": run("ejc", large, work / "l_none"),
        f"large_{args.rows}_embed_types": run("ejc", large, work / "l_types", "types"),
        f"large_{args.rows}_embed_text_warm_cache": run("ejc", large, work / "l_text", "text", cache),
    }
    report = {
        "benchmark": "ingest_throughput",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.python_version()}",
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6] or None)
    else:
        main()
