"""`ejc synth --cube`: planted entity structure with a truth file, deterministic under --seed."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from ejc.cli import main
from ejc.cube.entity import entities_from_table
from ejc.data.synth_cube import CubeSynthConfig, generate_cube
from ejc.errors import ConfigError


def test_cli_writes_entities_sessions_and_truth(tmp_path, capsys):
    assert main(["synth", "--cube", "--out", str(tmp_path / "a"), "--entities", "100", "--seed", "7"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["entities"] == 100 and summary["relationships"] == {"complementary": 5, "similar": 5}
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())
    ents = pq.read_table(tmp_path / "a" / "entities.parquet")
    assert ents.column_names == ["id", "category", "subcategory", "text", "image"]
    assert truth["hierarchy"]["levels"] == ["category", "subcategory"] and len(truth["hierarchy"]["parent"]) == 20
    events = pq.read_table(tmp_path / "a" / "events.parquet")
    assert events.num_rows == summary["events"] and set(events.column("event_type").to_pylist()) <= set(ents.column("id").to_pylist())
    assert main(["synth", "--cube", "--out", str(tmp_path / "b"), "--entities", "100", "--seed", "7"]) == 0
    assert (tmp_path / "a" / "truth.json").read_bytes() == (tmp_path / "b" / "truth.json").read_bytes()
    assert pq.read_table(tmp_path / "b" / "entities.parquet").equals(ents)


def test_planted_structure_holds():
    ents, events, truth = generate_cube(200, seed=1)
    E = {e.id: e for e in entities_from_table(ents)}
    info = {e["id"]: e for e in truth["entities"]}
    members = [x for r in truth["relationships"] for x in (r["source"], r["target"])]
    assert len(members) == len(set(members))  # every entity in at most one planted pair
    for r in truth["relationships"]:
        a, b = info[r["source"]], info[r["target"]]
        if r["type"] == "similar":
            assert a["subcategory"] == b["subcategory"]
            va, vb = E[a["id"]].embeddings["text"], E[b["id"]].embeddings["text"]
            assert float(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb)) > 0.98
        else:
            assert a["category"] != b["category"]
    # the hidden map: image = A text + small noise
    A = np.array(truth["maps"]["image"]["matrix"])
    X = np.stack([E[i].embeddings["text"] for i in info])
    Y = np.stack([E[i].embeddings["image"] for i in info])
    resid = np.linalg.norm(Y - X @ A.T) / np.linalg.norm(Y)
    assert 0.05 < resid < 0.3
    # complementary partners co-occur in sessions far more than chance
    sessions: dict[str, set[str]] = {}
    for s, item in zip(events.column("entity_id").to_pylist(), events.column("event_type").to_pylist()):
        sessions.setdefault(s, set()).add(item)
    r = next(r for r in truth["relationships"] if r["type"] == "complementary")
    with_a = [s for s in sessions.values() if r["source"] in s]
    assert sum(r["target"] in s for s in with_a) / len(with_a) > 0.7


def test_coverage_and_config_errors():
    ents, _, truth = generate_cube(120, seed=0, config=CubeSynthConfig(coverage={"image": 0.5}))
    missing = sum(v is None for v in ents.column("image").to_pylist())
    assert 35 < missing < 85 and sum("image" not in e["modalities"] for e in truth["entities"]) == missing
    with pytest.raises(ConfigError, match="num_entities must be >= 60"):
        generate_cube(30)
    with pytest.raises(ConfigError, match="coverage names unknown modalities"):
        generate_cube(100, config=CubeSynthConfig(coverage={"audio": 0.5}))


def test_readme_cube_example_runs(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## The cube\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    out = capsys.readouterr().out
    assert "['found.0', 'found.1']" in out and "['text->image']" in out
    assert "entity_id='i00000'" in out  # cross-space retrieval found the entity itself
    assert len(ns["cube"]) == 400 and (tmp_path / "runs" / "cube" / "manifest.json").is_file()
    assert ns["pairs"] and all(r.type == "complementary" for r in ns["pairs"])
