"""The pipelines' batch functions, without Ray."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ejc.data.schema import EVENT_SCHEMA, QUARANTINE_SCHEMA, TableSpec
from ejc.data.sequence import sequences_from_table
from pipelines.batches import (
    STAGE_SCHEMA,
    WINDOW_SCHEMA,
    accepted_events,
    quarantined_records,
    read_and_validate_file,
    spec_from_dict,
    spec_to_dict,
    windows_batch,
    windows_to_sequences,
)

from helpers import random_table

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_read_and_validate_accounts_for_every_record(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text(
        "case,time,activity\n"
        "a,2024-01-01 00:00:00,x\n"
        ",2024-01-01 00:01:00,y\n"  # missing id
        "b,not a time,z\n"  # unparsable time
        "b,2024-01-01 00:02:00,x,extra\n"  # wrong field count
        "b,2024-01-01 00:03:00,y\n"
    )
    staged = pa.concat_tables(list(read_and_validate_file(str(src), "csv", None, TableSpec())))
    assert staged.schema == STAGE_SCHEMA
    assert staged.num_rows == 5
    acc, q = accepted_events(staged), quarantined_records(staged)
    assert acc.schema == EVENT_SCHEMA and q.schema == QUARANTINE_SCHEMA
    assert acc.column("entity_id").to_pylist() == ["a", "b"]
    assert staged.filter(pc.equal(staged.column("_status"), "accepted")).column("_row").to_pylist() == [0, 4]
    assert sorted(zip(q.column("row").to_pylist(), q.column("reason").to_pylist())) == [
        (1, "missing_entity_id"), (2, "unparsable_timestamp"), (3, "malformed_record")]


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not present")
def test_sequence_lines_keep_their_line_numbers():
    staged = pa.concat_tables(list(read_and_validate_file(str(DATA / "logs/hadoop_sessions/hadoop_train"), "sequences", None, TableSpec())))
    acc = accepted_events(staged)
    assert acc.num_rows == staged.num_rows  # clean file
    rows = staged.column("_row").to_numpy()
    assert rows.min() == 0 and rows.max() == 16 and len(set(rows.tolist())) == 17


def test_windows_sort_by_time_then_source_order_and_cover_every_event():
    table = random_table(num=5, seed=3, min_len=10, max_len=40)
    # shuffle rows: windows_batch must restore time order per entity
    perm = np.random.default_rng(0).permutation(table.num_rows)
    shuffled = table.take(pa.array(perm)).append_column("_row", pa.array(perm, pa.int64()))
    win = windows_batch(shuffled, length=8, stride=4, min_events=12)
    assert win.schema == WINDOW_SCHEMA
    for seq in sequences_from_table(table):
        rows = win.filter(pc.equal(win.column("entity_id"), seq.id))
        if len(seq) < 12:
            assert rows.num_rows == 0
            continue
        n = len(seq)
        starts = list(range(0, n - 8 + 1, 4))
        if starts[-1] + 8 < n:
            starts.append(n - 8)
        assert rows.column("window").to_pylist() == list(range(len(starts)))
        for w, s in zip(rows.to_pylist(), starts):
            assert w["timestamps"] == seq.timestamps[s : s + 8].tolist()
            assert w["event_types"] == seq.event_types[s : s + 8].tolist()
    seqs = windows_to_sequences(win)
    assert len(seqs) == win.num_rows and all(len(s) == 8 for s in seqs)
    assert seqs[0].dims == {"default": 8}


def test_spec_round_trip():
    from ejc.data.schema import EmbeddingConfig

    spec = TableSpec(modalities={"text": EmbeddingConfig("text", 384, "minilm")}, require_timestamps=True)
    back = spec_from_dict(spec_to_dict(spec))
    assert back.modalities["text"].dim == 384 and back.require_timestamps


def test_entity_buckets_are_stable_whole_and_balanced():
    import hashlib

    from pipelines.batches import entity_buckets

    ids = [f"u{i:06d}" for i in range(5000)]
    b = entity_buckets(pa.array(ids), 8)
    expect = [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") % 8 for s in ids[:50]]
    assert b[:50].tolist() == expect  # BLAKE2b, not Python's per-process hash
    # a chunked array of the same ids (in another order) gives each id the same bucket
    rev = entity_buckets(pa.chunked_array([ids[::-1][:2000], ids[::-1][2000:]]), 8)
    assert rev[::-1].tolist() == b.tolist()
    counts = np.bincount(b, minlength=8)
    assert counts.min() > 0.8 * 5000 / 8 and counts.max() < 1.2 * 5000 / 8
    assert entity_buckets(pa.array(ids), 1).tolist() == [0] * 5000
    with pytest.raises(ValueError, match="num_buckets"):
        entity_buckets(pa.array(ids), 0)


def test_split_stage_puts_every_accepted_event_in_its_entitys_bucket(tmp_path):
    from pipelines.batches import entity_buckets, split_stage

    src = tmp_path / "log.csv"
    src.write_text("case,time,activity\n" + "".join(f"c{i % 13},2024-01-01 00:{i % 60:02d}:00,a{i % 3}\n" for i in range(300)) + ",2024-01-01 00:00:00,a\n")
    staged = pa.concat_tables(list(read_and_validate_file(str(src), "csv", None, TableSpec())))
    parts = split_stage(staged, 4)
    assert parts.counts() == {"accepted": 300, "quarantined": 1, "reasons": {"missing_entity_id": 1}}
    assert sum(t.num_rows for t in parts.buckets.values()) == 300
    for b, t in parts.buckets.items():
        assert set(entity_buckets(t.column("entity_id"), 4).tolist()) == {b}
        assert {"_source", "_row"} <= set(t.column_names)
    assert split_stage(staged, 0).buckets == {}


def test_event_log_sink_writes_each_part_once_even_when_a_task_is_retried(tmp_path):
    from pipelines.sinks import EventLogSink, rows_on_disk

    table = random_table(num=12, seed=5, min_len=3, max_len=30)
    src = tmp_path / "log.parquet"
    pq.write_table(table, src)
    blocks = lambda: read_and_validate_file(str(src), "parquet", None, TableSpec(), chunk_rows=64)  # noqa: E731

    class Ctx:
        task_idx = 3

    sink = EventLogSink(tmp_path / "out", num_buckets=3, bucket_dir=".buckets")
    first = sink.write(blocks(), Ctx)
    again = sink.write(blocks(), Ctx)  # a retry of the same task rewrites the same files
    assert first == again and first["accepted"] == table.num_rows and first["quarantined"] == 0
    assert rows_on_disk(tmp_path / "out" / "events") == table.num_rows
    assert sum(rows_on_disk(d) for d in (tmp_path / "out" / ".buckets").iterdir()) == table.num_rows
    assert sum(first["buckets"].values()) == table.num_rows
    assert not list((tmp_path / "out").rglob(".*.tmp"))  # no temporary file left behind
