"""README's Python example runs as written against a model `ejc train` wrote (README's own
`ejc ingest` / `ejc train` commands on the Helpdesk log, the training kept short)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from ejc.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FAST = ["--config", "tiny", "train.steps=4", "train.min_events=1", "finetune.max_epochs=2", "finetune.patience=1", "finetune.half_lives=[null]", "finetune.ensemble=1"]


def _readme_command(prefix: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
    return shlex.split(line)[1:]


@pytest.mark.skipif(not (DATA / "process" / "helpdesk_tax.csv").is_file(), reason="../shared/data is absent")
def test_readme_python_example_runs(tmp_path, capsys):
    import torch

    torch.set_num_threads(1)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        ingest = _readme_command("ejc ingest ../shared/data/process/helpdesk_tax.csv")
        assert main([a.replace("../shared/data", str(DATA)) for a in ingest]) == 0
        train = _readme_command("ejc train --events runs/helpdesk")
        assert train[:5] == ["train", "--events", "runs/helpdesk", "--out", "runs/helpdesk_model"]
        assert main([*train, "--no-track", *FAST]) == 0
        capsys.readouterr()
        text = (ROOT / "README.md").read_text()
        block = re.search(r"## Python\n\n```python\n(.*?)```", text, re.S).group(1)
        code = block.split("# seed-style construction")[0]
        env: dict = {}
        exec(compile(code, "README.md:Python", "exec"), env)
    finally:
        os.chdir(cwd)
    from ejc import END

    nxt, res = env["nxt"], env["res"]
    assert 1 <= len(nxt) <= 3 and nxt[0].if_continuing != END
    assert 0 < sum(nxt[0].type_probs.values()) <= 1 + 1e-6 and isinstance(res.sequence_is_anomalous, bool)  # the top 5 types
    assert env["model"].predictor is not None and env["model"].detector is not None
