"""Print Markdown tables of `ejc evaluate` result files: python benchmarks/eval_table.py benchmarks/out/eval_*.json"""

from __future__ import annotations

import json
import sys


def table(res: dict) -> str:
    methods = list(res["metrics"])
    keys = [k for k in res["metrics"][methods[0]] if k != "threshold"]
    lines = [f"**{res['dataset']}** ({res['task']}; ejc training {res['train_seconds']:.0f} s; {res['machine']})", "",
             "| method | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for m in methods:
        vals = res["metrics"][m]
        lines.append(f"| {m} | " + " | ".join("n/a" if vals.get(k) is None else f"{vals[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as f:
            print(table(json.load(f)) + "\n")
