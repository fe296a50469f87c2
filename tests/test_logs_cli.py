"""``ejc logs train | stream | process | parse`` as users run them: real files, real subprocesses."""

from __future__ import annotations

import csv
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ANOMALY_LINE, syslog_lines

from ejc.cli import main

EJC = [sys.executable, "-m", "ejc.cli"]
FAST_EVENT_MODEL = ["train.steps=4", "train.min_events=1", "finetune.max_epochs=2", "finetune.patience=1", "train.device=cpu"]


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("logs")
    (d / "train.log").write_text("\n".join(syslog_lines(1500, seed=0)) + "\n")
    out = d / "model"
    r = subprocess.run([*EJC, "logs", "train", "--input", str(d / "train.log"), "--out", str(out), "--no-event-model"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    summary = _last_json(r.stdout)
    assert summary["lines"] == 1500 and summary["parsed_share"] == {"rfc3164": 1.0} and summary["sessions"] == 4
    assert summary["model"] == str(out) and (out / "log_model.json").is_file() and (out / "templates").is_dir()
    assert not (out / "event_model").exists()
    return out


def _test_file(tmp_path: Path, anomaly_at: int = 200) -> tuple[Path, list[str]]:
    lines = syslog_lines(400, seed=3, start=1_764_900_000.0)
    lines.insert(anomaly_at - 1, ANOMALY_LINE)  # 1-based line `anomaly_at`
    f = tmp_path / "test.log"
    f.write_text("\n".join(lines) + "\n")
    return f, lines


def test_process_writes_alerts_scores_and_plot(model, tmp_path, capsys):
    src, lines = _test_file(tmp_path)
    out = tmp_path / "anomalies.json"
    rc = main(["logs", "process", "--input", str(src), "--model", str(model), "--output", str(out), "--scores", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "plots")])
    assert rc == 0
    summary = _last_json(capsys.readouterr().out)
    alerts = json.loads(out.read_text())
    assert summary["lines"] == len(lines) == 401 and summary["alerts"] == len(alerts)
    hit = [a for a in alerts if a["line"] == 200]
    assert hit and hit[0]["raw"] == ANOMALY_LINE and hit[0]["template_id"] is None
    assert len(alerts) <= 5  # the regular part of the log stays quiet
    with open(tmp_path / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["line"]) for r in rows] == list(range(1, 402))
    assert sum(r["is_anomaly"] == "1" for r in rows) == len(alerts)
    assert {int(r["line"]) for r in rows if r["is_anomaly"] == "1"} == {a["line"] for a in alerts}
    png = tmp_path / "plots" / "timeline.png"
    assert summary["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sum(summary["alerts_by_main_component"].values()) == len(alerts)


def test_stream_writes_each_alert_before_stdin_closes(model):
    p = subprocess.Popen([*EJC, "logs", "stream", "--model", str(model), "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in syslog_lines(50, seed=5, start=1_764_900_000.0):
            p.stdin.write((line + "\n").encode())
            p.stdin.flush()
        p.stdin.write((ANOMALY_LINE + "\n").encode())
        p.stdin.flush()
        deadline = time.monotonic() + 60
        got = None
        while time.monotonic() < deadline and got is None:
            ready, _, _ = select.select([p.stdout], [], [], 1.0)
            if ready:
                alert = json.loads(p.stdout.readline())
                if alert["raw"] == ANOMALY_LINE:
                    got = alert
        assert got is not None, "no alert for the anomalous line while stdin was still open"
        assert p.poll() is None  # still running: the alert came before EOF
        assert got["line"] == 51 and "never seen" in got["reason"] and got["score"] > got["threshold"]
        assert {"time", "source", "template_id", "template", "components"} <= set(got)
    finally:
        p.stdin.close()
        rc = p.wait(timeout=30)
    err = p.stderr.read().decode()
    assert rc == 0, err
    assert json.loads(err.strip().splitlines()[-1])["lines"] == 51


def test_stream_survives_hostile_bytes(model):
    junk = b"\n".join([
        b"\xff\xfe\xfa invalid utf-8 \xc3\x28",
        b"\x00\x01\x02 binary \x00 bytes",
        b"",
        b"x" * 1_000_000,
        b'{"level": "error", "msg": "json in a syslog file"}',
        b"Dec  4 09:00:00 web1 sshd[1]: time going backwards",
        ANOMALY_LINE.encode(),
    ]) + b"\n"
    r = subprocess.run([*EJC, "logs", "stream", "--model", str(model), "--json"], input=junk, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert json.loads(r.stderr.decode().strip().splitlines()[-1])["lines"] == 7
    alerts = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert any(a["raw"] == ANOMALY_LINE for a in alerts)
    assert all(isinstance(a["score"], float) and a["score"] == a["score"] for a in alerts)  # no NaN


def test_stream_closed_pipe_and_sigint_end_quietly(model, tmp_path):
    src, _ = _test_file(tmp_path, anomaly_at=2)
    # `ejc logs stream ... | head -1`: the reader goes away after the first alert
    r = subprocess.run(f"{' '.join(EJC)} logs stream --model {model} --json < {src} | head -c 10", shell=True, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr
    p = subprocess.Popen([*EJC, "logs", "stream", "--model", str(model)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write((ANOMALY_LINE + "\n").encode())
    p.stdin.flush()
    ready, _, _ = select.select([p.stdout], [], [], 60)
    assert ready and b"never seen" in p.stdout.readline()  # the readable (non-JSON) form
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=30)
    err = p.stderr.read().decode()
    assert rc == 0 and "Traceback" not in err
    assert json.loads(err.strip().splitlines()[-1]) ["lines"] == 1


def test_parse_learns_or_matches_templates(model, tmp_path, capsys):
    src, lines = _test_file(tmp_path)
    assert main(["logs", "parse", "--input", str(src), "--out", str(tmp_path / "p.csv")]) == 0
    learned = _last_json(capsys.readouterr().out)
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert learned["lines"] == len(rows) == 401 and [int(r["line"]) for r in rows] == list(range(1, 402))
    assert all(r["template_id"] for r in rows) and learned["templates"] == len({r["template_id"] for r in rows})
    assert main(["logs", "parse", "--input", str(src), "--model", str(model), "--out", str(tmp_path / "m.csv")]) == 0
    matched = _last_json(capsys.readouterr().out)
    with open(tmp_path / "m.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert matched["unseen_lines"] == 1 and rows[199]["template_id"] == "" and rows[199]["template"] == ""
    assert all(r["template_id"] for i, r in enumerate(rows) if i != 199)


def test_commands_refuse_bad_arguments(model, tmp_path, capsys):
    assert main(["logs", "train", "--input", str(tmp_path / "nope.log"), "--out", str(tmp_path / "m")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["logs", "train", "--input", str(tmp_path), "--out", str(model)]) == 2
    assert "not empty" in capsys.readouterr().err
    src, _ = _test_file(tmp_path)
    assert main(["logs", "process", "--input", str(src), "--model", str(model), "--output", str(tmp_path / "a.json"), "--threshold", "lots"]) == 2
    assert "robust sigmas" in capsys.readouterr().err
    assert main(["logs", "process", "--input", str(src), "--model", str(tmp_path), "--output", str(tmp_path / "a.json")]) == 2
    assert "not a log model" in capsys.readouterr().err


def test_train_ships_the_event_model_with_the_recipe(tmp_path):
    """The template sequences train the `ejc train` recipe into MODEL/event_model, which the
    facade loads (small budget: this checks the wiring, not quality)."""
    from ejc.infer.event_jepa import EventJEPA

    (tmp_path / "train.log").write_text("\n".join(syslog_lines(600, seed=0)) + "\n")
    out = tmp_path / "m"
    r = subprocess.run([*EJC, "logs", "train", "--input", str(tmp_path / "train.log"), "--out", str(out), "--config", "tiny", "-o", *FAST_EVENT_MODEL],
                       capture_output=True, text=True, timeout=400, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    ev = _last_json(r.stdout)["event_model"]
    assert ev["model"] == str(out / "event_model") and ev["sessions"] == 4
    card = json.loads((out / "event_model" / "card.json").read_text())
    assert card["config"]["train"]["steps"] == 4
    from ejc.data.sequence import EventSequence

    m = EventJEPA.from_pretrained(out / "event_model")
    (pred,) = m.predict_next(EventSequence(timestamps=[1.0, 3.0], modality="log", event_types=["T1", "T1"]))
    # the vocabulary is the templates (T<id>) plus the end of a session
    assert pred.if_continuing.startswith("T") and set(pred.type_probs) <= {f"T{i}" for i in range(1, 50)} | {"<end>"}
    assert 0.0 < sum(pred.type_probs.values()) <= 1.0 + 1e-6
