"""Print Markdown tables of `ejc evaluate` result files: python benchmarks/eval_table.py benchmarks/out/eval_*.json"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ejc.eval.report import metrics_table  # noqa: E402

if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as f:
            print(metrics_table(json.load(f)) + "\n")
