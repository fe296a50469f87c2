"""Readers: real files with exact counts and hand-computed timestamps, malformed input, errors."""

from __future__ import annotations

import calendar
import csv
import gzip
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ejc.data.readers import FORMATS, ColumnMapping, RawChunk, detect_format, pack_attributes, read_events
from ejc.data.schema import EVENT_COLUMNS, QUARANTINE_SCHEMA, Reason, Validator, attributes_from_columns
from ejc.errors import ReaderError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent (see ../shared/data/README.md)")

LOGHUB = ("BGL", "HDFS", "Hadoop", "OpenStack", "Spark", "Thunderbird", "Zookeeper")


def utc(*parts: int, frac: float = 0.0) -> float:
    return calendar.timegm(tuple(parts) + (0, 0, 0)) + frac


def read_all(path: Path, **kw) -> tuple[pa.Table, pa.Table, list[RawChunk]]:
    chunks = list(read_events(path, **kw))
    for c in chunks:
        assert set(c.table.column_names) <= set(EVENT_COLUMNS) | {"_row"}
        assert c.table.schema.field("_row").type == pa.int64()
        assert c.quarantine.schema == QUARANTINE_SCHEMA
    tables = [c.table for c in chunks if c.table.num_rows]
    table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({"_row": pa.array([], pa.int64())})
    quarantine = pa.concat_tables([c.quarantine for c in chunks]) if chunks else QUARANTINE_SCHEMA.empty_table()
    return table, quarantine, chunks


def validate(chunks: list[RawChunk], source: str = "") -> tuple[pa.Table, pa.Table]:
    v = Validator()
    acc, qua = [], []
    for c in chunks:
        a, q = v.validate(c.table, source)
        acc.append(a)
        qua.append(q)
    return pa.concat_tables(acc), pa.concat_tables(qua)


def rows_of(table: pa.Table) -> list[int]:
    return table.column("_row").to_pylist()


# ----------------------------------------------------------------------------------------------
# real data


@needs_data
def test_helpdesk_tax_csv():
    path = DATA / "process" / "helpdesk_tax.csv"
    assert detect_format(path) == "csv"
    table, quarantine, chunks = read_all(path)
    assert table.num_rows == 13_710 and quarantine.num_rows == 0
    assert rows_of(table) == list(range(13_710))
    acc, q = validate(chunks)
    assert acc.num_rows == 13_710 and q.num_rows == 0
    assert len(set(acc.column("entity_id").to_pylist())) == 3_804
    assert len(set(acc.column("event_type").to_pylist())) == 9
    first = acc.slice(0, 1).to_pylist()[0]
    assert first["entity_id"] == "2" and first["event_type"] == "1"
    assert first["timestamp"] == utc(2012, 4, 3, 16, 55, 38)
    assert acc.column("timestamp").to_pylist()[1] == utc(2012, 4, 3, 16, 55, 53)
    assert "attributes" not in table.column_names  # every column was mapped


@needs_data
def test_helpdesk_named_csv():
    path = DATA / "process" / "helpdesk_named.csv"
    table, quarantine, chunks = read_all(path)
    assert table.num_rows == 21_348 and quarantine.num_rows == 0
    acc, q = validate(chunks)
    assert q.num_rows == 0
    assert len(set(acc.column("entity_id").to_pylist())) == 4_580
    first = acc.slice(0, 1).to_pylist()[0]
    assert (first["entity_id"], first["event_type"]) == ("1", "Assign seriousness")
    assert first["timestamp"] == utc(2012, 10, 9, 14, 50, 17)


def _session_lines(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            sid, _, toks = line.partition(",")
            out.append((sid, toks.split()))
    return out


@needs_data
@pytest.mark.parametrize("name,sessions", [("hadoop_train", 17), ("hadoop_test_normal", 150), ("hadoop_test_abnormal", 811)])
def test_hadoop_sessions(name: str, sessions: int):
    path = DATA / "logs" / "hadoop_sessions" / name
    assert detect_format(path) == "sequences"
    table, quarantine, chunks = read_all(path)
    expected = _session_lines(path)
    assert len(expected) == sessions
    assert quarantine.num_rows == 0
    assert table.num_rows == sum(len(t) for _, t in expected)
    assert table.column("event_type").to_pylist() == [tok for _, toks in expected for tok in toks]
    assert table.column("entity_id").to_pylist() == [sid for sid, toks in expected for _ in toks]
    # one source line per session: every event of line i has _row i
    assert rows_of(table) == [i for i, (_, toks) in enumerate(expected) for _ in toks]
    acc, q = validate(chunks)
    assert q.num_rows == 0 and acc.column("timestamp").null_count == acc.num_rows
    assert len(set(acc.column("entity_id").to_pylist())) == sessions


@needs_data
@pytest.mark.parametrize("name,rows,anomalous", [("train.csv", 12_000, 6_000), ("test.csv", 2_000, 1_000)])
def test_hdfs_sessions(name: str, rows: int, anomalous: int):
    path = DATA / "logs" / "hdfs_sessions" / name
    assert detect_format(path) == "sequences"
    with open(path, newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == rows
    table, quarantine, chunks = read_all(path, chunk_rows=10_000)
    n_events = sum(len(r["Sequence"].split()) for r in records)
    assert quarantine.num_rows == 0 and table.num_rows == n_events
    assert [c.table.num_rows for c in chunks[:-1]] == [10_000] * (len(chunks) - 1)
    assert len(chunks) == -(-n_events // 10_000)
    acc, q = validate(chunks)
    assert q.num_rows == 0
    stem = name.split(".")[0]
    ents = acc.column("entity_id").to_pylist()
    assert len(set(ents)) == rows and ents[0] == f"{stem}:0"
    label_of = dict(zip(ents, acc.column("label").to_pylist()))
    assert sum(v == "1" for v in label_of.values()) == anomalous
    # the events of record 7 are its tokens, in order
    seven = [t for e, t in zip(ents, acc.column("event_type").to_pylist()) if e == f"{stem}:7"]
    assert seven == records[7]["Sequence"].split()


@needs_data
@pytest.mark.parametrize("system", LOGHUB)
def test_loghub_reads_every_line(system: str):
    path = DATA / "logs" / "loghub_2k" / f"{system}_2k.log_structured.csv"
    assert detect_format(path) == "loghub"
    table, quarantine, chunks = read_all(path)
    assert table.num_rows == 2_000 and quarantine.num_rows == 0
    assert rows_of(table) == list(range(2_000))
    acc, q = validate(chunks)
    assert q.num_rows == 0 and acc.column("timestamp").null_count == 0
    assert set(acc.column("entity_id").to_pylist()) == {system}
    with open(path, newline="") as f:
        src = list(csv.DictReader(f))
    assert acc.column("event_type").to_pylist() == [r["EventId"] for r in src]
    assert acc.column("text").to_pylist() == [r["Content"] for r in src]
    attrs = dict(acc.column("attributes")[0].as_py())
    assert attrs["EventTemplate"] == src[0]["EventTemplate"] and "Date" not in attrs and "Content" not in attrs


# first line of each file, by hand: naive Date/Time read as UTC; epoch columns are UTC already
LOGHUB_FIRST_TIMES = {
    "HDFS": utc(2008, 11, 9, 20, 36, 15),  # 081109 203615
    "Hadoop": utc(2015, 10, 18, 18, 1, 47, frac=0.978),  # 2015-10-18 18:01:47,978
    "Zookeeper": utc(2015, 7, 29, 17, 41, 44, frac=0.747),  # 2015-07-29 17:41:44,747
    "OpenStack": utc(2017, 5, 16, 0, 0, 0, frac=0.008),  # 2017-05-16 00:00:00.008
    "Spark": utc(2017, 6, 9, 20, 10, 40),  # 17/06/09 20:10:40
    "Thunderbird": 1131566461.0,  # epoch; Date/Time 2005.11.09 12:01:01 is PST wall clock
    "BGL": 1117838570 + 0.675872,  # epoch + the microseconds of 2005-06-03-15.42.50.675872 (PDT)
}


@needs_data
@pytest.mark.parametrize("system", LOGHUB)
def test_loghub_timestamps(system: str):
    path = DATA / "logs" / "loghub_2k" / f"{system}_2k.log_structured.csv"
    acc, _ = validate(list(read_events(path)))
    ts = np.asarray(acc.column("timestamp").to_pylist())
    assert ts[0] == pytest.approx(LOGHUB_FIRST_TIMES[system], abs=1e-6)
    # the 2k samples span minutes (OpenStack, Hadoop) to months (BGL); all within 2005-2018
    assert ts.min() >= utc(2005, 1, 1) and ts.max() < utc(2018, 1, 1)


@needs_data
def test_loghub_bgl_labels():
    path = DATA / "logs" / "loghub_2k" / "BGL_2k.log_structured.csv"
    acc, _ = validate(list(read_events(path)))
    labels = Counter(acc.column("label").to_pylist())
    assert labels["-"] == 1_857 and sum(labels.values()) - labels["-"] == 143
    # the epoch column is the true time: within a whole time-zone offset of the local Time column
    assert acc.column("timestamp")[1].as_py() == pytest.approx(1117838573.276129, abs=1e-6)


@needs_data
def test_loghub_entity_pattern_hdfs():
    path = DATA / "logs" / "loghub_2k" / "HDFS_2k.log_structured.csv"
    with open(path, newline="") as f:
        contents = [r["Content"] for r in csv.DictReader(f)]
    expected = [m.group(0) if (m := re.search(r"blk_-?\d+", c)) else None for c in contents]
    table, quarantine, chunks = read_all(path, mapping=ColumnMapping(entity_pattern=r"blk_-?\d+"), chunk_rows=700)
    assert len(chunks) == 3 and quarantine.num_rows == 0
    assert table.column("entity_id").to_pylist() == expected
    acc, q = validate(chunks)
    n_missing = sum(e is None for e in expected)
    assert q.num_rows == n_missing and set(q.column("reason").to_pylist()) <= {Reason.MISSING_ENTITY_ID}
    assert acc.num_rows == 2_000 - n_missing
    assert len(set(acc.column("entity_id").to_pylist())) == len({e for e in expected if e})
    # blocks ids of the form blk_-6952295868487656571 keep their sign
    assert "blk_-6952295868487656571" in set(acc.column("entity_id").to_pylist())


@needs_data
@pytest.mark.parametrize("name", ["hawkes1", "renewal"])
def test_npz_arrival_times(name: str):
    path = DATA / "tpp" / f"{name}.npz"
    assert detect_format(path) == "npz"
    with np.load(path, allow_pickle=False) as z:
        times = z["arrival_times"]
    assert times.shape == (64, 1024) and np.isfinite(times).all() and (times > 0).all()  # not padded
    table, quarantine, chunks = read_all(path, chunk_rows=10_000)
    assert table.num_rows == 64 * 1024 and quarantine.num_rows == 0 and len(chunks) == 7
    acc, q = validate(chunks)
    assert q.num_rows == 0
    ents = acc.column("entity_id").to_pylist()
    assert len(set(ents)) == 64 and ents[0] == f"{name}:0" and ents[-1] == f"{name}:63"
    np.testing.assert_array_equal(np.asarray(acc.column("timestamp").to_pylist()), times.ravel())


@needs_data
def test_chunking_keeps_totals_and_order():
    path = DATA / "process" / "helpdesk_tax.csv"
    whole, _, one = read_all(path)
    parts, _, many = read_all(path, chunk_rows=1_000)
    assert len(one) == 1 and len(many) == 14
    assert [c.table.num_rows for c in many] == [1_000] * 13 + [710]
    assert parts.equals(whole)


# ----------------------------------------------------------------------------------------------
# csv: malformed rows


def test_csv_malformed_rows_are_quarantined(tmp_path: Path):
    path = tmp_path / "events.csv"
    lines = ["case,time,activity,extra"]
    lines += ["a,2024-01-01T00:00:00Z,start,x"]  # record 0
    lines += ["a,2024-01-01T00:01:00Z,stop"]  # record 1: 3 fields
    lines += ['b,2024-01-01T00:02:00Z,"multi\nline",y']  # record 2: quoted newline, valid
    lines += ["b,2024-01-01T00:03:00Z,go,y,too,many"]  # record 3: 6 fields
    lines += ["c,,noop,z"]  # record 4: empty time (missing, valid)
    path.write_text("\n".join(lines) + "\n")
    table, quarantine, chunks = read_all(path)
    assert rows_of(table) == [0, 2, 4]
    assert quarantine.column("row").to_pylist() == [1, 3]
    assert set(quarantine.column("reason").to_pylist()) == {Reason.MALFORMED_RECORD}
    assert quarantine.column("record").to_pylist() == ["a,2024-01-01T00:01:00Z,stop", "b,2024-01-01T00:03:00Z,go,y,too,many"]
    assert quarantine.column("detail").to_pylist() == ["expected 4 fields, found 3", "expected 4 fields, found 6"]
    assert quarantine.column("source").to_pylist() == [str(path)] * 2
    assert table.column("event_type").to_pylist() == ["start", "multi\nline", "noop"]
    assert table.column("attributes").to_pylist() == [[("extra", "x")], [("extra", "y")], [("extra", "z")]]
    acc, q = validate(chunks)
    assert acc.num_rows == 3 and q.num_rows == 0
    assert acc.column("timestamp").to_pylist() == [utc(2024, 1, 1, 0, 0, 0), utc(2024, 1, 1, 0, 2, 0), None]


def test_csv_invalid_utf8_row_and_gzip(tmp_path: Path):
    body = b"id,activity\n1,caf\xc3\xa9\n2,caf\xe9\n3,tea\n"  # row 1 is latin-1, not UTF-8
    (tmp_path / "enc.csv").write_bytes(body)
    with gzip.open(tmp_path / "enc.csv.gz", "wb") as f:
        f.write(body)
    for name in ("enc.csv", "enc.csv.gz"):
        assert detect_format(tmp_path / name) == "csv"
        table, quarantine, _ = read_all(tmp_path / name)
        assert table.column("event_type").to_pylist() == ["caf\u00e9", "tea"] and rows_of(table) == [0, 2]
        assert quarantine.column("row").to_pylist() == [1]
        assert quarantine.column("detail").to_pylist() == ["invalid UTF-8"]
        assert quarantine.column("record").to_pylist() == ["2,caf\\xe9"]


def test_csv_malformed_rows_across_blocks(tmp_path: Path):
    """A file of several 1 MiB parser blocks: pyarrow reports bad rows ahead of their batch."""
    n = 120_000
    bad = set(range(5, n, 9_973)) | {n - 1}
    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write("id,n,payload\n")
        for i in range(n):
            f.write(f"e{i % 50},{i}\n" if i in bad else f"e{i % 50},{i},p{i:08d}\n")
    assert path.stat().st_size > 2 << 20
    chunks = list(read_events(path, chunk_rows=25_000))
    assert len(chunks) == 5
    assert all(c.table.num_rows <= 25_000 for c in chunks)
    table = pa.concat_tables([c.table for c in chunks])
    quarantine = pa.concat_tables([c.quarantine for c in chunks])
    assert table.num_rows == n - len(bad) and quarantine.num_rows == len(bad)
    assert sorted(quarantine.column("row").to_pylist()) == sorted(bad)
    # each good record carries its own number in column n: _row must equal it
    n_col = [int(dict(a)["n"]) for a in table.column("attributes").to_pylist()]
    assert rows_of(table) == n_col
    assert quarantine.column("record").to_pylist()[0] == "e5,5"
    # nothing lost, nothing twice
    assert sorted(rows_of(table) + quarantine.column("row").to_pylist()) == list(range(n))


def test_csv_explicit_mapping_and_attributes(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("who,when,what,vec,w1,w2\nu1,10.5,click,\"[1, 2]\",a,\nu2,11,view,\"[3, 4]\",b,c\n")
    m = ColumnMapping(entity="who", time="when", type="what", embedding="vec", attributes=["w2"])
    table, _, chunks = read_all(path, mapping=m)
    assert table.column("attributes").to_pylist() == [[], [("w2", "c")]]
    acc, q = validate(chunks)
    assert q.num_rows == 0
    assert acc.column("timestamp").to_pylist() == [10.5, 11.0]
    assert acc.column("embedding").to_pylist() == [[1.0, 2.0], [3.0, 4.0]]
    # a mapped column name is matched case-insensitively when unambiguous
    t2, _, _ = read_all(path, mapping=ColumnMapping(entity="WHO"))
    assert t2.column("entity_id").to_pylist() == ["u1", "u2"]


def test_pack_attributes_matches_schema_helper():
    t = pa.table({"a": ["x", None, "z"], "b": pa.array([1, 2, None]), "c": [None, None, None]})
    cols = ["a", "b", "c"]
    assert pack_attributes(t, cols).equals(attributes_from_columns(t, cols))
    assert pack_attributes(t, []).equals(attributes_from_columns(t, []))


# ----------------------------------------------------------------------------------------------
# jsonl


def test_jsonl_broken_lines(tmp_path: Path):
    path = tmp_path / "e.jsonl"
    recs = [
        json.dumps({"user_id": "u1", "timestamp": "2024-05-01T10:00:00+02:00", "event": "login", "ip": "1.2.3.4"}),
        '{"user_id": "u1", "timestamp": ',  # broken
        "",  # blank line: not a record
        json.dumps({"user_id": "u2", "timestamp": 1714550400, "event": "buy", "attributes": {"sku": 7}, "embedding": [0.5, 1]}),
        "[1, 2]",  # not an object
        json.dumps({"user_id": 3, "timestamp": None, "event": "x", "label": 1}),
    ]
    path.write_text("\n".join(recs) + "\n")
    assert detect_format(path) == "jsonl"
    chunks = list(read_events(path, chunk_rows=2))
    assert [c.table.num_rows for c in chunks] == [2, 1]  # loose types may differ between chunks
    table, quarantine, chunks = read_all(path)
    assert rows_of(table) == [0, 3, 5]
    assert quarantine.column("row").to_pylist() == [1, 4]
    assert quarantine.column("record").to_pylist() == ['{"user_id": "u1", "timestamp": ', "[1, 2]"]
    acc, q = validate(chunks)
    assert q.num_rows == 0
    assert acc.column("entity_id").to_pylist() == ["u1", "u2", "3"]
    assert acc.column("timestamp").to_pylist() == [utc(2024, 5, 1, 8, 0, 0), 1714550400.0, None]
    assert acc.column("attributes").to_pylist() == [[("ip", "1.2.3.4")], [("sku", "7")], []]
    assert acc.column("embedding").to_pylist()[1] == [0.5, 1.0]
    assert acc.column("label").to_pylist() == [None, None, "1"]


# ----------------------------------------------------------------------------------------------
# xes


def _write_xes(path: Path, traces: dict[str, list[tuple[str, str]]], namespaced: bool, extra: str = "") -> None:
    ns = ' xmlns="http://www.xes-standard.org/"' if namespaced else ""
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<log xes.version="1.0"{ns}>']
    out.append('<extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>')
    out.append('<global scope="event"><string key="concept:name" value="__INVALID__"/></global>')
    for case, events in traces.items():
        out.append(f'<trace><string key="concept:name" value={quoteattr(case)}/>')
        for act, ts in events:
            out.append(
                f'<event><string key="concept:name" value={quoteattr(act)}/>'
                f'<date key="time:timestamp" value="{ts.replace(" ", "T")}.000+00:00"/>'
                f'<string key="org:resource" value="r1"/></event>'
            )
        out.append("</trace>")
    out.append(extra + "</log>\n")
    text = "\n".join(out)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


@needs_data
@pytest.mark.parametrize("name,namespaced", [("helpdesk.xes", False), ("helpdesk.xes.gz", True)])
def test_xes_roundtrip_helpdesk(tmp_path: Path, name: str, namespaced: bool):
    src = DATA / "process" / "helpdesk_named.csv"
    traces: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with open(src, newline="") as f:
        for r in csv.DictReader(f):
            traces[r["case:concept:name"]].append((r["concept:name"], r["time:timestamp"]))
    path = tmp_path / name
    _write_xes(path, traces, namespaced)
    assert detect_format(path) == "xes"
    xes_table, xes_q, xes_chunks = read_all(path, chunk_rows=5_000)
    assert xes_q.num_rows == 0 and len(xes_chunks) == 5
    assert rows_of(xes_table) == list(range(21_348))
    acc_x, q_x = validate(xes_chunks)
    acc_c, q_c = validate(list(read_events(src)))
    assert q_x.num_rows == q_c.num_rows == 0
    assert acc_x.num_rows == acc_c.num_rows == 21_348

    def by_entity(t: pa.Table) -> dict[str, list[tuple[float, str]]]:
        d: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for e, ts, ty in zip(*(t.column(c).to_pylist() for c in ("entity_id", "timestamp", "event_type"))):
            d[e].append((ts, ty))
        return d

    assert by_entity(acc_x) == by_entity(acc_c)
    assert len(by_entity(acc_x)) == 4_580
    assert acc_x.column("attributes")[0].as_py() == [("org:resource", "r1")]


def test_xes_unnamed_trace_label_and_nesting(tmp_path: Path):
    path = tmp_path / "small.xes"
    path.write_text(
        """<?xml version="1.0"?>
<log xmlns="http://www.xes-standard.org/">
  <trace>
    <event><string key="concept:name" value="a"/><date key="time:timestamp" value="2020-01-01T00:00:00Z"/></event>
  </trace>
  <trace>
    <event><string key="concept:name" value="b"/><string key="label" value="anomaly"/>
      <list key="tags"><values><string key="t" value="nested"/></values></list>
      <int key="cost" value="3"/></event>
    <string key="concept:name" value="late-name"/>
  </trace>
</log>
"""
    )
    table, quarantine, chunks = read_all(path)
    assert quarantine.num_rows == 0 and rows_of(table) == [0, 1]
    assert table.column("entity_id").to_pylist() == [None, "late-name"]
    assert table.column("label").to_pylist() == [None, "anomaly"]
    assert table.column("attributes").to_pylist() == [[], [("cost", "3")]]
    acc, q = validate(chunks)
    assert acc.num_rows == 1 and q.column("reason").to_pylist() == [Reason.MISSING_ENTITY_ID]
    assert q.column("row").to_pylist() == [0]


# ----------------------------------------------------------------------------------------------
# sequences, parquet, npz


def test_sequences_malformed_lines(tmp_path: Path):
    path = tmp_path / "sessions"
    path.write_bytes(b"s1,1 2 3\nno comma here\n\ns2,\ns3,  4   5 \n,6 7\ns4,\xff 1\n")
    table, quarantine, chunks = read_all(path, format="sequences")
    assert table.column("entity_id").to_pylist() == ["s1"] * 3 + ["s3"] * 2
    assert table.column("event_type").to_pylist() == ["1", "2", "3", "4", "5"]
    assert rows_of(table) == [0, 0, 0, 4, 4]
    assert quarantine.column("row").to_pylist() == [1, 3, 5, 6]
    assert quarantine.column("record").to_pylist() == ["no comma here", "s2,", ",6 7", "s4,\\xff 1"]
    assert quarantine.column("detail").to_pylist()[-1] == "invalid UTF-8"
    # source lines = sequence lines + malformed lines; the blank line 2 is not a record
    assert len(set(rows_of(table))) + quarantine.num_rows == 6


def test_sequences_csv_with_entity_and_empty(tmp_path: Path):
    path = tmp_path / "s.csv"
    path.write_text("session_id,EventSequence,label\nA,x y,0\nB,,1\nC, z ,1\nD,\"  \",0\n")
    assert detect_format(path) == "sequences"
    table, quarantine, _ = read_all(path)
    assert table.column("entity_id").to_pylist() == ["A", "A", "C"]
    assert table.column("label").to_pylist() == ["0", "0", "1"]
    assert rows_of(table) == [0, 0, 2]
    assert quarantine.column("row").to_pylist() == [1, 3]
    assert set(quarantine.column("reason").to_pylist()) == {Reason.MALFORMED_RECORD}
    assert json.loads(quarantine.column("record")[0].as_py()) == {"session_id": "B", "EventSequence": None, "label": "1"}


def test_parquet_event_table_passes_through(tmp_path: Path):
    raw = pa.table(
        {
            "entity_id": ["a", "a", "b"],
            "timestamp": [1.0, 2.0, 3.5],
            "event_type": ["x", "y", None],
            "modality": ["default"] * 3,
            "embedding": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]],
            "text": [None, "hi", None],
            "attributes": pa.array([[("k", "v")], [], None], pa.map_(pa.string(), pa.string())),
            "label": [None, None, "1"],
        }
    )
    accepted, _ = Validator().validate(raw)
    path = tmp_path / "events.parquet"
    pq.write_table(accepted, path, row_group_size=2)
    assert detect_format(path) == "parquet"
    table, quarantine, chunks = read_all(path, chunk_rows=2)
    assert len(chunks) == 2 and quarantine.num_rows == 0
    assert rows_of(table) == [0, 1, 2]
    again, q = validate(chunks)
    assert q.num_rows == 0 and again.equals(accepted)


def test_parquet_with_other_names(tmp_path: Path):
    path = tmp_path / "x.pq"
    pq.write_table(pa.table({"CaseID": [1, 2], "Activity": ["a", "b"], "Time": pa.array([0, 60_000_000], pa.timestamp("us")), "cost": [1.5, None]}), path)
    table, _, chunks = read_all(path)
    assert table.column("attributes").to_pylist() == [[("cost", "1.5")], []]
    acc, q = validate(chunks)
    assert q.num_rows == 0
    assert acc.column("entity_id").to_pylist() == ["1", "2"] and acc.column("timestamp").to_pylist() == [0.0, 60.0]


def test_npz_padding_is_not_counted(tmp_path: Path):
    times = np.array([[0.5, 1.0, 2.0, 0.0, 0.0], [0.0, 3.0, 4.0, 5.0, 6.0], [1.0, np.nan, np.nan, np.nan, np.nan]])
    path = tmp_path / "pad.npz"
    np.savez(path, arrival_times=times, marks=np.arange(15).reshape(3, 5))
    table, quarantine, chunks = read_all(path)
    assert quarantine.num_rows == 0
    assert table.column("entity_id").to_pylist() == ["pad:0"] * 3 + ["pad:1"] * 5 + ["pad:2"]
    assert table.column("timestamp").to_pylist() == [0.5, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0, 1.0]
    assert table.column("event_type").to_pylist() == ["0", "1", "2", "5", "6", "7", "8", "9", "10"]
    assert rows_of(table) == [0, 1, 2, 5, 6, 7, 8, 9, 10]  # flat index into (3, 5)
    # an explicit lengths array wins over guessing
    np.savez(path, arrival_times=times, lengths=np.array([2, 5, 1]))
    assert read_all(path)[0].num_rows == 8


def test_loghub_bad_time_value_is_left_for_the_validator(tmp_path: Path):
    path = tmp_path / "Mini_2k.log_structured.csv"
    path.write_text(
        "LineId,Date,Time,Level,Content,EventId,EventTemplate\n"
        "1,081109,203615,INFO,open blk_1,E1,open <*>\n"
        "2,081109,2036xx,INFO,close blk_1,E2,close <*>\n"
        "3,081110,000001,WARN,open blk_2,E1,open <*>\n"
    )
    table, _, chunks = read_all(path)
    # one value failed: the column turns to text, the parsed seconds as numbers, the failure as written
    ts = table.column("timestamp").to_pylist()
    assert ts[1] == "081109 2036xx"
    assert [float(ts[0]), float(ts[2])] == [utc(2008, 11, 9, 20, 36, 15), utc(2008, 11, 10, 0, 0, 1)]
    acc, q = validate(chunks)
    assert acc.column("timestamp").to_pylist() == [utc(2008, 11, 9, 20, 36, 15), utc(2008, 11, 10, 0, 0, 1)]
    assert q.column("reason").to_pylist() == [Reason.UNPARSABLE_TIMESTAMP] and q.column("row").to_pylist() == [1]
    assert set(acc.column("entity_id").to_pylist()) == {"Mini"}


# ----------------------------------------------------------------------------------------------
# errors and format detection


def _error(path: Path, **kw) -> str:
    with pytest.raises(ReaderError) as ei:
        list(read_events(path, **kw))
    msg = str(ei.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    return msg


def test_reader_errors(tmp_path: Path):
    assert "no such file" in _error(tmp_path / "missing.csv")
    assert "directory" in _error(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    assert "empty" in _error(tmp_path / "empty.csv")
    (tmp_path / "data.weird").write_text("a,b\n1,2\n")
    msg = _error(tmp_path / "data.weird")
    assert "'.weird'" in msg and all(f in msg for f in FORMATS)
    good = tmp_path / "good.csv"
    good.write_text("case,activity\n1,a\n")
    msg = _error(good, mapping=ColumnMapping(time="when"))
    assert "'when'" in msg and "['case', 'activity']" in msg
    (tmp_path / "noent.csv").write_text("activity,when\na,1\n")
    assert "no entity column found among ['activity', 'when']; pass --entity-col NAME" in _error(tmp_path / "noent.csv")
    (tmp_path / "log.xes.gz").write_text("<log></log>")
    assert "not a gzip file" in _error(tmp_path / "log.xes.gz")
    (tmp_path / "junk.parquet").write_bytes(b"\x00\x01garbage" * 10)
    assert "Parquet" in _error(tmp_path / "junk.parquet")
    (tmp_path / "junk.npz").write_bytes(b"\x00\x01garbage" * 10)
    assert "npz" in _error(tmp_path / "junk.npz")
    (tmp_path / "junk.csv").write_bytes(b"\x89PNG\x00\x00\x01\xff" * 10)
    assert "binary" in _error(tmp_path / "junk.csv")
    (tmp_path / "bad.xes").write_text("<log><trace><event></trace></log>")
    assert "XES" in _error(tmp_path / "bad.xes")
    (tmp_path / "notjson.jsonl").write_text("a,b\n1,2\n")
    assert "JSON" in _error(tmp_path / "notjson.jsonl")
    assert "unknown format" in _error(good, format="excel")
    # the call itself raises: no need to start iterating
    with pytest.raises(ReaderError):
        read_events(tmp_path / "missing.csv")


def test_detect_format(tmp_path: Path):
    cases = {
        "a.csv": "case,time\n1,2\n",
        "b.csv": "LineId,Date,Content,EventId\n1,2,3,4\n",
        "c.csv": "Sequence,label\n1 2,0\n",
        "d.ndjson": '{"a": 1}\n',
        "e": "id1,1 2 3\nid2,4\n",
        "f": '{"a": 1}\n',
    }
    want = {"a.csv": "csv", "b.csv": "loghub", "c.csv": "sequences", "d.ndjson": "jsonl", "e": "sequences", "f": "jsonl"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert detect_format(tmp_path / name) == want[name], name
    (tmp_path / "g").write_text("just some words\nmore words\n")
    with pytest.raises(ReaderError, match="without extension"):
        detect_format(tmp_path / "g")
