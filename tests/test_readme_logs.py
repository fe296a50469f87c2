"""README's "Logs" commands run as written (the event model's budget kept short) and do what the
section says."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FAST = "--config tiny -o train.steps=4 train.min_events=1 finetune.max_epochs=2 finetune.patience=1"


@pytest.mark.skipif(not (DATA / "logs" / "loghub_2k" / "BGL_2k.log").is_file(), reason="../shared/data is absent")
def test_readme_logs_commands_run(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Logs\n.*?```bash\n(.*?)```", text, re.S).group(1)
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert [ln.split()[0] for ln in lines] == ["mkdir", "head", "tail", "ejc", "ejc", "ejc", "ejc"]
    script = "\n".join(ln + (f" {FAST}" if ln.startswith("ejc logs train") else "") for ln in lines).replace("../shared/data", str(DATA))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = tmp_path / "runs"
    assert (runs / "bgl_logmodel" / "event_model" / "card.json").is_file()
    alerts = json.loads((runs / "bgl_alerts.json").read_text())
    streamed = [json.loads(x) for x in (runs / "bgl_alerts.jsonl").read_text().splitlines()]
    # stream and process score the same lines the same way (both adapt the same way from the same start)
    assert [a["line"] for a in streamed] == [a["line"] for a in alerts] and len(alerts) > 0
    assert [a["score"] for a in streamed] == [a["score"] for a in alerts]
    with open(runs / "bgl_scores.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 1000
    assert (runs / "bgl_plots" / "timeline.png").is_file()
    with open(runs / "bgl_parsed.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1000 and rows[0].keys() == {"line", "template_id", "template"}
