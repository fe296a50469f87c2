"""README's "Search" commands run as written (in a directory holding a copy of ejc/search) and
print what the section says they print."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIT = re.compile(r"^(\S+):(\d+)-(\d+)  (\S+)$")


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Search\n.*?```bash\n(.*?)```", text, re.S).group(1)
    return [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_search_commands_run(tmp_path):
    lines = _commands()
    assert [" ".join(ln.split()[:3]) for ln in lines] == [
        "mkdir -p runs", "ejc search index", "ejc search query", "ejc search query", "ejc search similar", "ejc search index", "ejc evaluate search"]
    shutil.copytree(ROOT / "ejc" / "search", tmp_path / "ejc" / "search", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    out = []
    for ln in lines:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", ln], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, (ln, r.stderr[-3000:])
        assert "Traceback" not in r.stderr, ln
        out.append(r.stdout)

    py_files = sorted(p.name for p in (tmp_path / "ejc" / "search").glob("*.py"))
    first = json.loads(out[1].strip().splitlines()[-1])
    assert first["files"] == len(py_files) and first["files_indexed"] == len(py_files) and first["snippets"] == first["snippets_embedded"] > len(py_files)

    hits = [HIT.match(x) for x in out[2].strip().splitlines()]
    assert len(hits) == 5 and all(hits), out[2]
    assert {h.group(1) for h in hits} <= set(py_files) and "index.py" in {h.group(1) for h in hits}
    scores = [float(h.group(4)) for h in hits]
    assert scores == sorted(scores, reverse=True) and all(1 <= int(h.group(2)) <= int(h.group(3)) for h in hits)

    lexical = json.loads(out[3])
    assert lexical["query"] == "split camelCase identifiers into tokens" and len(lexical["results"]) == 10
    assert all(list(r) == ["path", "start", "end", "score"] for r in lexical["results"])
    assert "lexical.py" in [r["path"] for r in lexical["results"][:3]]

    # similar: three results, each followed by its own lines indented by four spaces
    sim_hits = [HIT.match(x) for x in out[4].splitlines() if HIT.match(x)]
    assert len(sim_hits) == 3
    query_file = (tmp_path / "ejc" / "search" / "query.py").read_text().splitlines()
    assert not any(h.group(1) == "query.py" and int(h.group(2)) <= 257 <= int(h.group(3)) for h in sim_hits)
    for h in sim_hits:
        src = (tmp_path / "ejc" / "search" / h.group(1)).read_text().splitlines()
        assert src[int(h.group(2)) - 1].strip() in out[4]
    assert len(query_file) >= 257

    again = json.loads(out[5].strip().splitlines()[-1])
    assert int(again["version"][1:7]) == int(first["version"][1:7]) + 1 and again["snippets_embedded"] == 0 and again["files_unchanged"] == len(py_files)

    result = json.loads((tmp_path / "runs" / "search_click.json").read_text())
    assert result["task"] == "search" and set(result["metrics"]) == {"ejc", "dense", "bm25", "keyword_overlap"}
    for m in result["metrics"].values():
        assert 0.0 <= m["recall_at_1"] <= m["recall_at_10"] <= 1.0 and 0.0 <= m["mrr_at_10"] <= 1.0
    assert json.loads(out[6].strip().splitlines()[-1]) == result
