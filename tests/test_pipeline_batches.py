"""The pipelines' batch functions, without Ray."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
