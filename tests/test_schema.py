"""ejc.data.schema: the Validator's reason codes, accounting, timestamp parsing, quarantine
records, IngestReport, check_event_table and EmbeddingConfig, on hand-made raw tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from ejc.data.schema import (
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    QUARANTINE_SCHEMA,
    EmbeddingConfig,
    IngestReport,
    Reason,
    TableSpec,
    Validator,
    check_event_table,
    empty_event_table,
    parse_embeddings,
    parse_timestamps,
)
from ejc.errors import SchemaError

T0 = 1704067200.0  # 2024-01-01 00:00:00 UTC


def strict_json(text: str) -> object:
    """json.loads that fails on NaN / Infinity tokens (not valid JSON)."""

    def bad(token: str) -> None:
        raise AssertionError(f"record is not strict JSON: contains {token}")

    return json.loads(text, parse_constant=bad)


def check_accounting(raw: pa.Table, accepted: pa.Table, quarantine: pa.Table) -> None:
    assert raw.num_rows == accepted.num_rows + quarantine.num_rows
    assert accepted.schema == EVENT_SCHEMA
    assert quarantine.schema == QUARANTINE_SCHEMA


# ----------------------------------------------------------------------------------------------
# every reason code on one table

# one row per case; (_row, entity, timestamp, modality, embedding, expected reason or None)
CASES = [
    (100, "a", "2024-01-01T00:00:00Z", "m", "[1, 2]", None),
    (101, None, "2024-01-01T00:00:01Z", "m", "[1, 2]", Reason.MISSING_ENTITY_ID),
    (102, "  ", "2024-01-01T00:00:02Z", "m", "[1, 2]", Reason.MISSING_ENTITY_ID),
    (103, "b", None, "m", "[1, 2]", Reason.MISSING_TIMESTAMP),
    (104, "b", "", "m", "[1, 2]", Reason.MISSING_TIMESTAMP),
    (105, "c", "the day after", "m", "[1, 2]", Reason.UNPARSABLE_TIMESTAMP),
    (106, "d", "2024-01-01T00:00:06Z", "m", "[1, two]", Reason.UNPARSABLE_EMBEDDING),
    (107, "e", "2024-01-01T00:00:07Z", "m", "[1, nan]", Reason.NONFINITE_EMBEDDING),
    (108, "e", "2024-01-01T00:00:08Z", "m", "[inf, 1]", Reason.NONFINITE_EMBEDDING),
    (109, "f", "2024-01-01T00:00:09Z", "m", "[1, 2, 3]", Reason.WRONG_DIMENSION),
    (110, "g", "2024-01-01T00:00:10Z", "m", "[]", Reason.WRONG_DIMENSION),
    (111, "h", "2024-01-01T00:00:11Z", "other", "[1, 2]", Reason.UNKNOWN_MODALITY),
    (112, "i", "2024-01-01T00:00:12Z", None, "[1, 2]", Reason.UNKNOWN_MODALITY),  # null -> "default", undeclared
    (113, None, "garbage", "other", "[1]", Reason.MISSING_ENTITY_ID),  # first failing check wins
    (114, "j", "1704067214", "m", None, None),  # no vector is fine
    (115, "k", "2024-01-01T00:00:15Z", "m", "3 4", None),  # space-separated vector text
]


def raw_cases() -> pa.Table:
    cols = list(zip(*CASES))
    return pa.table(
        {
            "_row": pa.array(cols[0], pa.int64()),
            "entity_id": pa.array(cols[1], pa.string()),
            "timestamp": pa.array(cols[2], pa.string()),
            "modality": pa.array(cols[3], pa.string()),
            "embedding": pa.array(cols[4], pa.string()),
            "event_type": pa.array([f"t{i}" for i in range(len(CASES))], pa.string()),
        }
    )


def test_every_reason_code_with_declared_spec():
    raw = raw_cases()
    spec = TableSpec.from_configs([EmbeddingConfig("m", 2)], require_timestamps=True)
    accepted, quarantine = Validator(spec).validate(raw, "hand.csv")
    check_accounting(raw, accepted, quarantine)

    want_bad = [(r, why) for r, *_, why in CASES if why is not None]
    assert list(zip(quarantine.column("row").to_pylist(), quarantine.column("reason").to_pylist())) == want_bad
    assert set(quarantine.column("source").to_pylist()) == {"hand.csv"}
    details = dict(zip(quarantine.column("row").to_pylist(), quarantine.column("detail").to_pylist()))
    assert details[105] == "cannot parse timestamp 'the day after'"
    assert details[109] == "modality 'm' has dimension 2, this embedding has 3"
    assert details[110] == "embedding is empty"
    assert details[111] == "modality 'other' is not declared; declared: ['m']"
    assert details[112] == "modality 'default' is not declared; declared: ['m']"

    # accepted rows: source order, parsed values
    assert accepted.column("entity_id").to_pylist() == ["a", "j", "k"]
    assert accepted.column("event_type").to_pylist() == ["t0", "t14", "t15"]
    assert accepted.column("timestamp").to_pylist() == [T0, T0 + 14, T0 + 15]
    assert accepted.column("embedding").to_pylist() == [[1.0, 2.0], None, [3.0, 4.0]]
    assert accepted.column("modality").to_pylist() == ["m", "m", "m"]


def test_every_reason_code_counted_in_report():
    raw = raw_cases()
    spec = TableSpec.from_configs([EmbeddingConfig("m", 2)], require_timestamps=True)
    report = IngestReport()
    report.add(*Validator(spec).validate(raw))
    report.check()
    assert (report.read, report.accepted, report.quarantined) == (16, 3, 13)
    assert report.to_dict()["reasons"] == {
        "missing_entity_id": 3,
        "missing_timestamp": 2,
        "nonfinite_embedding": 2,
        "unknown_modality": 2,
        "unparsable_embedding": 1,
        "unparsable_timestamp": 1,
        "wrong_dimension": 2,
    }
    assert list(report.to_dict()["reasons"]) == sorted(report.to_dict()["reasons"])


def test_open_spec_positions_as_time_and_any_modality():
    """Without require_timestamps a missing time is kept as null; without declared modalities
    every modality is accepted and its first valid vector fixes its dimension."""
    raw = raw_cases()
    v = Validator()
    accepted, quarantine = v.validate(raw)
    check_accounting(raw, accepted, quarantine)
    reasons = dict(zip(quarantine.column("row").to_pylist(), quarantine.column("reason").to_pylist()))
    assert reasons == {
        101: Reason.MISSING_ENTITY_ID,
        102: Reason.MISSING_ENTITY_ID,
        105: Reason.UNPARSABLE_TIMESTAMP,
        106: Reason.UNPARSABLE_EMBEDDING,
        107: Reason.NONFINITE_EMBEDDING,
        108: Reason.NONFINITE_EMBEDDING,
        109: Reason.WRONG_DIMENSION,
        110: Reason.WRONG_DIMENSION,
        113: Reason.MISSING_ENTITY_ID,
    }
    assert accepted.column("entity_id").to_pylist() == ["a", "b", "b", "h", "i", "j", "k"]
    assert accepted.column("timestamp").to_pylist() == [T0, None, None, T0 + 11, T0 + 12, T0 + 14, T0 + 15]
    assert accepted.column("modality").to_pylist() == ["m", "m", "m", "other", "default", "m", "m"]
    assert v.dims == {"m": 2, "other": 2, "default": 2}


def test_first_seen_dimension_ignores_rejected_rows():
    raw = pa.table(
        {
            "entity_id": [None, "a", "a", "a", "b"],
            "embedding": pa.array([[1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0], [5.0, 6.0], [1.0, 2.0, 3.0]], pa.list_(pa.float64())),
            "modality": ["x", "x", "x", "x", "y"],
        }
    )
    v = Validator()
    accepted, quarantine = v.validate(raw)
    check_accounting(raw, accepted, quarantine)
    assert quarantine.column("row").to_pylist() == [0, 2]  # no _row column: positions
    assert quarantine.column("reason").to_pylist() == [Reason.MISSING_ENTITY_ID, Reason.WRONG_DIMENSION]
    assert v.dims == {"x": 2, "y": 3}
    assert accepted.column("embedding").to_pylist() == [[1.0, 2.0], [5.0, 6.0], [1.0, 2.0, 3.0]]


def test_dimension_memory_across_validate_calls():
    v = Validator()
    first = pa.table({"entity_id": ["a"], "embedding": ["[1, 2, 3]"], "_row": pa.array([0], pa.int64())})
    second = pa.table({"entity_id": ["a", "a"], "embedding": ["[1, 2]", "[4, 5, 6]"], "_row": pa.array([1, 2], pa.int64())})
    acc1, q1 = v.validate(first)
    assert (acc1.num_rows, q1.num_rows) == (1, 0)
    acc2, q2 = v.validate(second)
    assert acc2.column("embedding").to_pylist() == [[4.0, 5.0, 6.0]]
    assert q2.to_pylist()[0]["row"] == 1
    assert q2.to_pylist()[0]["reason"] == Reason.WRONG_DIMENSION
    assert q2.to_pylist()[0]["detail"] == "modality 'default' has dimension 3, this embedding has 2"
    assert v.dims == {"default": 3}


def test_declared_dimension_beats_first_seen():
    v = Validator(TableSpec.from_configs([EmbeddingConfig("default", 3)]))
    raw = pa.table({"entity_id": ["a", "b"], "embedding": ["[1, 2]", "[1, 2, 3]"]})
    accepted, quarantine = v.validate(raw)
    assert accepted.column("entity_id").to_pylist() == ["b"]
    assert quarantine.column("reason").to_pylist() == [Reason.WRONG_DIMENSION]


# ----------------------------------------------------------------------------------------------
# accepted table: order, schema, values


def test_accepted_keeps_source_order_schema_and_values():
    attrs = pa.array([[("k", "v")], None, [("a", "1"), ("b", "2")]], pa.map_(pa.string(), pa.string()))
    raw = pa.table(
        {
            "entity_id": pa.array([7, 3, 9], pa.int64()),  # numbers become strings
            "timestamp": [30.0, 10.0, 20.0],
            "event_type": pa.array([1, 2, 3], pa.int32()),
            "text": ["x", None, "z"],
            "attributes": attrs,
            "label": ["0", "1", None],
            "_row": pa.array([5, 1, 9], pa.int64()),
        }
    )
    accepted, quarantine = Validator().validate(raw)
    assert quarantine.num_rows == 0
    assert accepted.schema == EVENT_SCHEMA
    assert accepted.column_names == list(EVENT_COLUMNS)
    assert accepted.to_pydict() == {
        "entity_id": ["7", "3", "9"],
        "timestamp": [30.0, 10.0, 20.0],  # source order, not time order
        "event_type": ["1", "2", "3"],
        "modality": ["default"] * 3,
        "embedding": [None, None, None],
        "text": ["x", None, "z"],
        "attributes": [[("k", "v")], None, [("a", "1"), ("b", "2")]],
        "label": ["0", "1", None],
    }


def test_empty_raw_table():
    raw = pa.table({"entity_id": pa.array([], pa.string()), "_row": pa.array([], pa.int64())})
    accepted, quarantine = Validator().validate(raw)
    check_accounting(raw, accepted, quarantine)
    assert accepted.num_rows == quarantine.num_rows == 0


def test_unknown_raw_column_is_a_schema_error():
    with pytest.raises(SchemaError, match=r"\['colour'\].*column mapping"):
        Validator().validate(pa.table({"entity_id": ["a"], "colour": ["red"]}))


# ----------------------------------------------------------------------------------------------
# timestamps


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("2024-01-01T00:00:00Z", T0),
        ("2024-01-01T00:00:00.250Z", T0 + 0.25),
        ("2024-01-01 00:00:00", T0),  # naive = UTC
        ("2024-01-01T02:00:00+02:00", T0),
        ("2023-12-31T19:00:00-05:00", T0),
        ("2012-04-03 16:55:38", 1333472138.0),
        ("1700000000.5", 1700000000.5),
        (" 42 ", 42.0),
        ("-1", -1.0),
    ],
)
def test_timestamp_strings_parse_to_exact_epoch_seconds(text, seconds):
    accepted, quarantine = Validator().validate(pa.table({"entity_id": ["a"], "timestamp": [text]}))
    assert quarantine.num_rows == 0
    assert accepted.column("timestamp").to_pylist() == [seconds]


def test_mixed_timestamp_strings_in_one_column():
    secs, missing, bad = parse_timestamps(
        pa.array(["2024-01-01T00:00:00Z", "2024-01-01 01:00:00", "1700000000", "soon", None, "  ", "2024-01-01T03:00:00+01:00"])
    )
    np.testing.assert_array_equal(secs[[0, 1, 2, 6]], [T0, T0 + 3600, 1700000000.0, T0 + 7200])
    assert np.isnan(secs[[3, 4, 5]]).all()
    assert missing.tolist() == [False, False, False, False, True, True, False]
    assert bad.tolist() == [False, False, False, True, False, False, False]


def test_arrow_timestamp_column_with_timezone():
    berlin = dt.timezone(dt.timedelta(hours=1))
    values = [dt.datetime(2024, 1, 1, 1, 0, tzinfo=berlin), None, dt.datetime(2024, 1, 1, 1, 0, 1, 500000, tzinfo=berlin)]
    col = pa.array(values, pa.timestamp("ms", tz="+01:00"))
    raw = pa.table({"entity_id": ["a", "b", "c"], "timestamp": col})
    accepted, quarantine = Validator(TableSpec(require_timestamps=True)).validate(raw)
    assert accepted.column("timestamp").to_pylist() == [T0, T0 + 1.5]
    assert quarantine.column("reason").to_pylist() == [Reason.MISSING_TIMESTAMP]
    # the quarantined record keeps the original (null) value
    assert strict_json(quarantine.column("record")[0].as_py()) == {"entity_id": "b", "timestamp": None}


def test_naive_arrow_timestamp_and_date_are_utc():
    secs, _, _ = parse_timestamps(pa.array([dt.datetime(2024, 1, 1, 0, 0, 2)], pa.timestamp("us")))
    assert secs.tolist() == [T0 + 2]
    secs, _, _ = parse_timestamps(pa.array([dt.date(2024, 1, 2)], pa.date32()))
    assert secs.tolist() == [T0 + 86400]


def test_numeric_timestamp_columns():
    secs, missing, bad = parse_timestamps(pa.array([0, None, 86400], pa.int64()))
    assert secs[[0, 2]].tolist() == [0.0, 86400.0] and missing.tolist() == [False, True, False] and not bad.any()
    secs, missing, bad = parse_timestamps(pa.array([1.5, float("nan"), float("inf"), None]))
    assert secs[0] == 1.5
    assert bad.tolist() == [False, False, True, False]  # inf cannot be a time
    assert missing.tolist() == [False, True, False, True]  # NaN is pandas' "missing"
    secs, missing, bad = parse_timestamps(pa.nulls(2))
    assert missing.all() and not bad.any()


def test_explicit_time_format():
    spec = TableSpec(time_format="%d.%m.%Y %H:%M")
    raw = pa.table({"entity_id": ["a", "b"], "timestamp": ["01.01.2024 00:01", "2024-01-01 00:01"]})
    accepted, quarantine = Validator(spec).validate(raw)
    assert accepted.column("timestamp").to_pylist() == [T0 + 60]
    assert quarantine.column("reason").to_pylist() == [Reason.UNPARSABLE_TIMESTAMP]


# ----------------------------------------------------------------------------------------------
# embeddings and quarantine records


def test_list_embeddings_with_nonfinite_values_and_empty_lists():
    emb = pa.array([[1.0, 2.0], [], None, [float("nan"), 1.0], [1.0, float("-inf")], [3.0, 4.0]], pa.list_(pa.float64()))
    raw = pa.table({"entity_id": list("abcdef"), "embedding": emb})
    accepted, quarantine = Validator().validate(raw)
    check_accounting(raw, accepted, quarantine)
    assert accepted.column("entity_id").to_pylist() == ["a", "c", "f"]
    assert accepted.column("embedding").to_pylist() == [[1.0, 2.0], None, [3.0, 4.0]]
    assert quarantine.column("reason").to_pylist() == [Reason.WRONG_DIMENSION, Reason.NONFINITE_EMBEDDING, Reason.NONFINITE_EMBEDDING]
    records = [strict_json(r) for r in quarantine.column("record").to_pylist()]
    assert records == [
        {"entity_id": "b", "embedding": []},
        {"entity_id": "d", "embedding": ["nan", 1.0]},
        {"entity_id": "e", "embedding": [1.0, "-inf"]},
    ]


def test_quarantine_record_holds_the_original_values():
    raw = pa.table(
        {
            "entity_id": ["a", None],
            "timestamp": [" not-a-time ", "2024-01-01"],
            "event_type": ["login", "logout"],
            "embedding": ["[1,2]", "[1, nan]"],
            "attributes": pa.array([[("ip", "10.0.0.1")], [("ip", "10.0.0.2")]], pa.map_(pa.string(), pa.string())),
            "label": ["x", None],
            "_row": pa.array([40, 41], pa.int64()),
        }
    )
    accepted, quarantine = Validator().validate(raw, "src.csv")
    assert accepted.num_rows == 0
    rows = quarantine.to_pylist()
    assert [(r["source"], r["row"], r["reason"]) for r in rows] == [
        ("src.csv", 40, Reason.UNPARSABLE_TIMESTAMP),
        ("src.csv", 41, Reason.MISSING_ENTITY_ID),
    ]
    assert strict_json(rows[0]["record"]) == {
        "entity_id": "a",
        "timestamp": " not-a-time ",
        "event_type": "login",
        "embedding": "[1,2]",
        "attributes": [["ip", "10.0.0.1"]],
        "label": "x",
    }
    assert strict_json(rows[1]["record"])["embedding"] == "[1, nan]"  # text kept verbatim, no _row


def test_parse_embeddings_text_forms_and_string_lists():
    vecs, bad = parse_embeddings(pa.array(["[0.5, 1]", "0.5, 1", "0.5 1", "", None, "[a]", "{}", "[1, [2]]"]))
    assert vecs.to_pylist()[:5] == [[0.5, 1.0], [0.5, 1.0], [0.5, 1.0], None, None]
    assert bad.tolist() == [False] * 5 + [True] * 3
    vecs, bad = parse_embeddings(pa.array([["1", "2.5"], ["x", "1"], None], pa.list_(pa.string())))
    assert vecs.to_pylist() == [[1.0, 2.5], None, None]
    assert bad.tolist() == [False, True, False]
    fixed = pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2.0, 3.0, 4.0], pa.float64()), 2)
    vecs, bad = parse_embeddings(fixed)
    assert vecs.type == pa.list_(pa.float32()) and vecs.to_pylist() == [[1.0, 2.0], [3.0, 4.0]] and not bad.any()
    with pytest.raises(SchemaError, match="embedding column has type int64"):
        parse_embeddings(pa.array([1, 2]))


# ----------------------------------------------------------------------------------------------
# report, table check, configs


def test_ingest_report_accumulates_over_chunks():
    v = Validator()
    report = IngestReport()
    report.add(*v.validate(pa.table({"entity_id": ["a", None, "b"]})))
    report.add(*v.validate(pa.table({"entity_id": ["", "c"], "timestamp": ["x", "1"]})))
    from ejc.data.schema import quarantine_records

    report.add_quarantine(quarantine_records("f", [9], [Reason.MALFORMED_RECORD], ["bad line"], ["a,b,c"]))
    report.check()
    assert report.to_dict() == {
        "read": 6,
        "accepted": 3,
        "quarantined": 3,
        "reasons": {"malformed_record": 1, "missing_entity_id": 2},
    }
    assert report.reasons == Counter({"missing_entity_id": 2, "malformed_record": 1})


def test_check_event_table():
    check_event_table(empty_event_table())
    check_event_table(empty_event_table().append_column("extra", pa.array([], pa.int8())))  # extra columns allowed
    with pytest.raises(SchemaError, match=r"missing columns \['modality', 'label'\].*ejc ingest"):
        check_event_table(empty_event_table().drop_columns(["modality", "label"]))
    wrong = empty_event_table().set_column(1, "timestamp", pa.array([], pa.string()))
    with pytest.raises(SchemaError, match="column 'timestamp' has type string, expected double"):
        check_event_table(wrong)


def test_embedding_config_validation():
    cfg = EmbeddingConfig("text", 384, model_name="minilm", normalize=True)
    assert cfg.to_dict() == {"modality": "text", "dim": 384, "model_name": "minilm", "normalize": True, "version": "1"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dim = 3  # type: ignore[misc]
    with pytest.raises(SchemaError, match="modality must be a non-empty string"):
        EmbeddingConfig("", 4)
    for dim in (0, -2):
        with pytest.raises(SchemaError, match=rf"\('m'\)\.dim must be positive, got {dim}"):
            EmbeddingConfig("m", dim)
    spec = TableSpec.from_configs([EmbeddingConfig("a", 2), EmbeddingConfig("b", 5)], require_timestamps=True)
    assert spec.require_timestamps and sorted(spec.modalities) == ["a", "b"]
    assert Validator(spec).dims == {"a": 2, "b": 5}
