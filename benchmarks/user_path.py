"""The user path, measured: training cases as a CSV -> `ejc ingest` -> `ejc train` -> `EventJEPA.from_pretrained`.

    python benchmarks/user_path.py ../shared/data/process/helpdesk_tax.csv --work runs/user_path_helpdesk [--score] [train overrides ...]

Splits the log with the Tax et al. protocol (cases by start time; first 2/3 train), writes the
training cases' original rows to WORK/train.csv, runs the two commands exactly as a user would
(subprocesses; `ejc train` with its defaults plus any overrides given), and prints the model
card's holdout metrics and the wall time. With ``--score`` (the final run only: the test set is
frozen) it also predicts every test prefix through the facade
(`EventJEPA.from_pretrained(MODEL).predict_next_batch`) and prints the metrics, with the
prediction rate (prefixes/s) and that of the n-gram of the same model directory beside it.
One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--score", action="store_true", help="score the test prefixes (the final run)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from ejc.eval.protocol import chronological_split, load_log

    args.work.mkdir(parents=True, exist_ok=True)
    log = load_log(args.src)
    split = chronological_split(log.sequences)
    train_ids = {s.id for s in split.train}
    with open(args.src, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    with open(args.work / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(r for r in body if r[0] in train_ids)
    ejc = [sys.executable, "-m", "ejc.cli"]
    t0 = time.perf_counter()
    subprocess.run([*ejc, "ingest", str(args.work / "train.csv"), "--out", str(args.work / "events")], check=True, stdout=subprocess.DEVNULL)
    model = args.work / "model"
    if model.exists():
        import shutil

        shutil.rmtree(model)
    cmd = [*ejc, "train", "--events", str(args.work / "events"), "--out", str(model), "--no-track", *(["--threads", str(args.threads)] if args.threads else []), *args.overrides]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    card = json.loads((model / "card.json").read_text())
    out = {"src": str(args.src), "train_cases": len(split.train), "wall_seconds_ingest_and_train": round(wall, 1), "train_seconds": card["train_seconds"], "holdout": card["holdout"]}
    if args.score:
        from ejc.eval.next_event import score_test_prefixes

        out["test"] = score_test_prefixes(model, split.test)
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
