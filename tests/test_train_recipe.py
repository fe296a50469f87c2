"""`ejc train` and the model it ships: the CLI on an ingested log, the artifact, END as a
predicted type, exact reloads, the predictor's and the n-gram's persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ejc.cli import main
from ejc.data.sequence import END, EventSequence

FAST = ["train.steps=4", "train.min_events=1", "finetune.max_epochs=3", "finetune.patience=2", "finetune.half_lives=[null, 0.5]", "finetune.ensemble=2", "train.device=cpu"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cases_csv(path: Path, n: int = 40) -> Path:
    """``n`` cases, one a day: ``a b c`` (1 h, 2 h apart); every 4th ``a b d``. A case always ends after c or d."""
    rows = ["case,activity,time"]
    for i in range(n):
        t0 = 1_600_000_000 + i * 86400
        last = "d" if i % 4 == 3 else "c"
        for typ, t in (("a", t0), ("b", t0 + 3600), (last, t0 + 3 * 3600)):
            rows.append(f"c{i},{typ},{t}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    import contextlib
    import io

    assert main(["ingest", str(cases_csv(d / "log.csv")), "--out", str(d / "events")]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", "--events", str(d / "events"), "--out", str(d / "model"), "--config", "tiny", "--no-track", *FAST]) == 0
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    return {"dir": d, "model": d / "model", "summary": summary}


def seq(types: list[str], t0: float = 1_600_000_000 + 50 * 86400, cid: str = "q") -> EventSequence:
    ts = t0 + np.array([0, 3600, 3 * 3600][: len(types)], np.float64)
    return EventSequence(embeddings=None, timestamps=ts, event_types=types, id=cid)


def test_train_command_writes_the_whole_model(trained):
    m, s = trained["model"], trained["summary"]
    assert s["model"] == str(m) and s["data"]["entities"] == 40 and s["data"]["fit_entities"] == 32 and s["data"]["holdout_entities"] == 8
    assert set(s["holdout"]) == {"accuracy", "accuracy_excl_end", "time_mae_days", "accuracy_excl_end_as_predicted"}
    for name in ("latest", "calibration.json", "card.json", "predictor/predictor.json", "predictor/ngram.json", "predictor/member_0.safetensors"):
        assert (m / name).is_file(), name
    card = json.loads((m / "card.json").read_text())
    assert card["command"][:2] == ["ejc", "train"] and "--events" in card["command"]
    assert card["config"]["preset"] == "tiny" and card["config"]["finetune"]["ensemble"] == 2
    meta = json.loads((m / "predictor" / "predictor.json").read_text())
    assert END in meta["names"] and set(meta["roles"]) == {"type", "gap", "cont"}
    assert len(meta["members"]) == len(list((m / "predictor").glob("member_*.safetensors")))


def test_shipped_model_predicts_end_and_reloads_exactly(trained):
    from ejc import END as public_end
    from ejc.infer.event_jepa import EventJEPA

    assert public_end == END == "<end>"
    a, b = EventJEPA.from_pretrained(trained["model"]), EventJEPA.from_pretrained(trained["model"])
    qs = [seq(["a"]), seq(["a", "b"]), seq(["a", "b", "c"]), seq(["a", "b", "d"])]
    pa, pb = a.predict_next_batch(qs, top_k=10), b.predict_next_batch(qs, top_k=10)
    for x, y in zip(pa, pb):  # two loads of one directory answer identically
        assert (x[0].event_type, x[0].gap, x[0].type_probs, x[0].if_continuing) == (y[0].event_type, y[0].gap, y[0].type_probs, y[0].if_continuing)
    for p in pa:
        ev = p[0]
        assert END in ev.type_probs and sum(ev.type_probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert ev.if_continuing != END and ev.if_continuing in a.predictor.names
        assert ev.event_type == max(ev.type_probs, key=ev.type_probs.get)
    # after c (or d) every training case ended; after a, b always followed
    assert pa[2][0].event_type == END and pa[3][0].event_type == END
    assert pa[0][0].event_type == "b"
    # a predicted END ends the path: at most one event after "a b c" however many steps are asked
    long = a.predict_next(seq(["a", "b", "c"]), num_steps=5)
    assert [e.event_type for e in long] == [END]
    path = a.predict_next(seq(["a"]), num_steps=5)
    assert path[-1].event_type == END or len(path) == 5
    assert all(e.timestamp > seq(["a"]).timestamps[-1] for e in path[:1])


def test_fit_facade_equals_the_saved_model(tmp_path):
    from ejc.infer.event_jepa import EventJEPA
    from ejc.eval.protocol import load_log

    seqs = load_log(cases_csv(tmp_path / "log.csv", 24)).sequences
    m = EventJEPA.fit(seqs, tmp_path / "m", config="tiny", overrides=[*FAST, "finetune.ensemble=1"])
    again = EventJEPA.from_pretrained(tmp_path / "m")
    qs = [s[:k] for s in seqs[-6:] for k in (1, 2, 3)]
    x, y = m.predict_next_batch(qs), again.predict_next_batch(qs)
    assert [p[0].event_type for p in x] == [p[0].event_type for p in y] and [p[0].gap for p in x] == [p[0].gap for p in y]
    with pytest.raises(Exception, match="not empty"):
        EventJEPA.fit(seqs, tmp_path / "m", config="tiny", overrides=FAST)


def test_ngram_round_trips_through_json():
    from ejc.model.ngram import NGramPredictor

    cases = [["a", "b", "c"], ["a", "b", "d"], ["a", "c"]]
    gaps = [[np.nan, 10.0, 20.0], [np.nan, 10.0, 40.0], [np.nan, 5.0]]
    m = NGramPredictor(3).fit(cases, gaps)
    r = NGramPredictor.from_dict(json.loads(json.dumps(m.to_dict())))
    names = ["a", "b", "c", "d", END]
    for prefix in (["a"], ["a", "b"], ["a", "b", "c"], ["x"], []):
        assert r.predict(prefix) == m.predict(prefix) or (np.isnan(m.predict(prefix)[1]) and r.predict(prefix)[0] == m.predict(prefix)[0])
        assert np.array_equal(r.distribution(prefix, names), m.distribution(prefix, names))


def test_corrupted_predictor_is_a_clear_error(trained, tmp_path):
    import shutil

    from ejc.errors import CheckpointError
    from ejc.infer.event_jepa import EventJEPA

    bad = tmp_path / "bad"
    shutil.copytree(trained["model"], bad)
    (bad / "predictor" / "member_0.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="member_0.safetensors"):
        EventJEPA.from_pretrained(bad)
    (bad / "predictor" / "predictor.json").write_text("{")
    with pytest.raises(CheckpointError, match="predictor.json"):
        EventJEPA.from_pretrained(bad)


def test_train_refuses_bad_input(tmp_path, capsys):
    assert main(["ingest", str(cases_csv(tmp_path / "log.csv", 6)), "--out", str(tmp_path / "events")]) == 0
    capsys.readouterr()
    assert main(["train", "--events", str(tmp_path / "events"), "--out", str(tmp_path / "m"), "--config", "tiny", "finetune.ensemble=0"]) == 2
    assert "finetune.ensemble must be at least 1" in capsys.readouterr().err
    assert main(["train", "--events", str(tmp_path / "missing"), "--out", str(tmp_path / "m"), "--no-track"]) == 2
