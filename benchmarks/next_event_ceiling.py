"""How much headroom a next-event test set leaves: in-sample ceilings on the Tax et al. split.

    python benchmarks/next_event_ceiling.py ../shared/data/process/helpdesk_tax.csv \
        [--result benchmarks/out/eval_helpdesk.json] [--out benchmarks/out/ceiling_helpdesk.json]

For the validation and the test cases of ``ejc evaluate next-event``'s split, each table row groups
the targets into cells and answers, in every cell, what most often follows there *in that very
set* (and the median gap): the best score any predictor mapping the cell to an answer can reach.

- ``prefix types`` (the whole prefix) and ``last k types`` are true bounds for predictors that see
  only the prefix's types (``ejc.eval.ceiling.prefix_ceiling``);
- the rows adding a time feature (bucket of the last gap, of the case's elapsed time, hour of day,
  weekday, calendar month of the last event) are *not* bounds: finer cells fit anything. They show
  what the feature could add at best, fitted on the labels it is scored on.

With ``--result`` (a result JSON of ``ejc evaluate next-event`` on the same file and split) the
measured methods are listed beside the ceilings.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ejc.eval.ceiling import CellKey, cell_ceiling, prefix_ceiling  # noqa: E402
from ejc.eval.protocol import chronological_split, load_log, prefix_targets  # noqa: E402
from ejc.eval.report import machine  # noqa: E402


def _log2_bucket(seconds: float) -> int:
    return int(math.log2(1.0 + seconds / 60.0))  # 0: under a minute, then doubling


def time_cells() -> dict[str, CellKey]:
    """Cell keys ``(types, timestamps) -> cell`` of the last type with one time feature."""
    gmt = time.gmtime
    return {
        "last type x log2 bucket of the last gap": lambda ty, ts: (ty[-1], _log2_bucket(ts[-1] - ts[-2]) if len(ts) > 1 else -1),
        "last type x log2 bucket of the elapsed time": lambda ty, ts: (ty[-1], _log2_bucket(ts[-1] - ts[0])),
        "last type x hour of day (UTC)": lambda ty, ts: (ty[-1], gmt(ts[-1]).tm_hour),
        "last type x weekday": lambda ty, ts: (ty[-1], gmt(ts[-1]).tm_wday),
        "last type x calendar month": lambda ty, ts: (ty[-1], gmt(ts[-1]).tm_year, gmt(ts[-1]).tm_mon),
        "last two types x log2 bucket of the last gap": lambda ty, ts: (tuple(ty[-2:]), _log2_bucket(ts[-1] - ts[-2]) if len(ts) > 1 else -1),
    }


def ceilings(cases: list, with_time: bool) -> dict[str, dict[str, float]]:
    t = prefix_targets(cases)
    rows = {"prefix types (bound)": prefix_ceiling(cases, t)}
    for k in (1, 2, 3):
        rows[f"last {k} type{'s' if k > 1 else ''} (bound)"] = prefix_ceiling(cases, t, last=k)
    if with_time:
        for name, key in time_cells().items():
            rows[f"{name} (not a bound)"] = cell_ceiling(cases, t, key)
    return rows


def markdown(rows: dict[str, dict[str, float]], measured: dict[str, dict[str, float]] | None) -> str:
    keys = ("accuracy", "accuracy_excl_end", "time_mae_days")
    out = ["| cells (in-sample, fitted on the scored targets) | " + " | ".join(keys) + " | cells |", "|---|" + "---:|" * (len(keys) + 1)]
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + f" | {r['cells']} |")
    for name, r in (measured or {}).items():
        out.append(f"| measured: {name} | " + " | ".join("n/a" if r.get(k) is None else f"{r[k]:.4f}" for k in keys) + " | |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="event log with case ids, types and timestamps (any format `ejc ingest` reads)")
    ap.add_argument("--format", default="auto")
    ap.add_argument("--test-fraction", type=float, default=1 / 3)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--result", type=Path, default=None, help="an `ejc evaluate next-event` result JSON to list beside the ceilings")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables as JSON")
    args = ap.parse_args()

    log = load_log(args.src, args.format)
    split = chronological_split(log.sequences, args.test_fraction, args.val_fraction)
    timed = all(s.timestamps is not None for s in split.test + split.val)
    measured = None
    if args.result is not None:
        try:
            res = json.loads(args.result.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"--result {args.result}: not a readable result JSON ({e}); write one with `ejc evaluate next-event SRC --out FILE`") from e
        if res.get("details", {}).get("split", {}).get("test_cases") != len(split.test):
            raise SystemExit(f"{args.result} was measured on another split ({res.get('details', {}).get('split')}) than {split.sizes()}")
        measured = res["metrics"]
    out = {"source": str(args.src), "split": split.sizes(), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "validation": ceilings(split.val, timed), "test": ceilings(split.test, timed)}
    print(f"**{args.src.name}**: {split.sizes()} ({out['date']}, {out['machine']})\n")
    print("Validation cases:\n\n" + markdown(out["validation"], None) + "\n")
    print("Test cases:\n\n" + markdown(out["test"], measured))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
