"""ejc.data.sequence: EventSequence construction (array, per-modality dict, ragged list),
time ordering, imputation, slicing, table round trip, grouping, windows and collate."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ejc.data.schema import EVENT_SCHEMA, check_event_table
from ejc.data.sequence import EventSequence, collate, sequences_from_table, window_sequence
from ejc.errors import SchemaError


def arange_vectors(n: int, d: int, offset: float = 0.0) -> np.ndarray:
    """[n, d] with row i = offset + i*d .. offset + i*d + d-1, so every row is recognisable."""
    return (offset + np.arange(n * d, dtype=np.float32)).reshape(n, d)


def multi() -> EventSequence:
    """x: 3 events (2-d) at t=0,2,4; y: 2 events (4-d) at t=2,1."""
    return EventSequence(
        {"x": arange_vectors(3, 2), "y": arange_vectors(2, 4, offset=100)},
        timestamps={"x": [0.0, 2.0, 4.0], "y": [2.0, 1.0]},
        id="m",
    )


# ----------------------------------------------------------------------------------------------
# construction


def test_single_modality_array_sorted_by_time():
    emb = arange_vectors(4, 3)
    seq = EventSequence(emb, timestamps=[3.0, 1.0, 2.0, 0.0], event_types=list("abcd"), labels=["l0", "l1", "l2", "l3"], id="s1")
    order = [3, 1, 2, 0]  # time order of the given events
    assert len(seq) == 4 and seq.id == "s1"
    np.testing.assert_array_equal(seq.embeddings, emb[order])
    assert seq.embeddings.dtype == np.float32
    assert seq.timestamps.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert seq.event_types.tolist() == ["d", "b", "c", "a"]
    assert seq.labels.tolist() == ["l3", "l1", "l2", "l0"]
    assert seq.dims == {"default": 3} and seq.embedding_dim == 3
    assert seq.gaps().tolist() == [0.0, 1.0, 1.0, 1.0]
    assert repr(seq) == "EventSequence(id='s1', n=4, dims={default:3}, span=3s)"


def test_untimed_sequence_uses_positions():
    seq = EventSequence(arange_vectors(3, 2), modality="beh")
    assert seq.timestamps is None
    assert seq.times.tolist() == [0.0, 1.0, 2.0]
    assert seq.modality_names == ["beh"] and seq.dims == {"beh": 2}
    assert len(seq.id) == 12  # random id when none given
    assert EventSequence(event_types=["a", "b"]).has_vector.tolist() == [False, False]


def test_per_modality_dict_merges_in_stable_time_order():
    seq = multi()
    # times x0=0, x1=2, x2=4, y0=2, y1=1 -> x0, y1, x1, y0 (tie at 2: x1 given first), x2
    assert seq.timestamps.tolist() == [0.0, 1.0, 2.0, 2.0, 4.0]
    assert seq.modalities.tolist() == ["x", "y", "x", "y", "x"]
    assert seq.modality_names == ["x", "y"]
    np.testing.assert_array_equal(seq.vectors("x"), arange_vectors(3, 2))
    np.testing.assert_array_equal(seq.vectors("y"), arange_vectors(2, 4, 100)[[1, 0]])
    assert seq.vector_positions("y").tolist() == [1, 3]
    np.testing.assert_array_equal(seq.vector_at(3), [100, 101, 102, 103])
    np.testing.assert_array_equal(seq.vector_at(1), [104, 105, 106, 107])
    assert isinstance(seq.embeddings, dict) and seq.dims == {"x": 2, "y": 4}
    with pytest.raises(SchemaError, match="widths"):
        seq.embedding_dim
    with pytest.raises(KeyError, match="no vectors of modality 'z'"):
        seq.vectors("z")


def test_ragged_list_with_modalities_and_missing_vectors():
    vecs = [np.array([1, 2]), None, np.array([7, 8, 9]), np.array([3, 4]), None]
    seq = EventSequence(vecs, timestamps=[5.0, 1.0, 3.0, 2.0, 4.0], modality=["a", "a", "b", "a", "b"], event_types=list("vwxyz"))
    # time order: w(1) y(2) x(3) z(4) v(5)
    assert seq.event_types.tolist() == ["w", "y", "x", "z", "v"]
    assert seq.modalities.tolist() == ["a", "a", "b", "b", "a"]
    assert seq.has_vector.tolist() == [False, True, True, False, True]
    assert seq.vector_at(0) is None and seq.vector_at(3) is None
    np.testing.assert_array_equal(seq.vector_at(1), [3, 4])
    np.testing.assert_array_equal(seq.vector_at(4), [1, 2])
    np.testing.assert_array_equal(seq.vectors("a"), [[3, 4], [1, 2]])
    np.testing.assert_array_equal(seq.vectors("b"), [[7, 8, 9]])
    assert seq.dims == {"a": 2, "b": 3}


def test_missing_timestamps_imputed_and_counted():
    seq = EventSequence(arange_vectors(3, 1), timestamps=[30.0, np.nan, 10.0], event_types=["a", "b", "c"])
    # nan takes its predecessor's time (30), then the stable sort puts c first
    assert seq.timestamps.tolist() == [10.0, 30.0, 30.0]
    assert seq.event_types.tolist() == ["c", "a", "b"]
    assert seq.embeddings.ravel().tolist() == [2.0, 0.0, 1.0]
    assert seq.metadata["imputed_timestamps"] == 1

    lead = EventSequence(event_types=["a", "b", "c", "d"], timestamps=[np.nan, np.nan, 5.0, np.nan], metadata={"k": 1})
    assert lead.timestamps.tolist() == [5.0, 5.0, 5.0, 5.0]
    assert lead.metadata == {"k": 1, "imputed_timestamps": 3}

    none = EventSequence(event_types=["a", "b"], timestamps=[np.nan, np.nan])
    assert none.timestamps is None and "imputed_timestamps" not in none.metadata
    assert "imputed_timestamps" not in EventSequence(event_types=["a"], timestamps=[1.0]).metadata


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(embeddings=np.zeros((3, 2)), timestamps=[1.0, 2.0]), "3 events but 2 timestamps"),
        (dict(embeddings=np.zeros((3, 2)), event_types=["a"]), "event_types has 1 entries but there are 3 events"),
        (dict(embeddings=np.zeros((2, 2)), labels=["a", "b", "c"]), "labels has 3 entries but there are 2 events"),
        (dict(embeddings=[np.zeros(2), np.zeros(3)]), r"modality 'default' has vectors of several widths \[2, 3\]"),
        (dict(embeddings=[np.zeros(2), np.zeros(2)], modality=["a"]), "2 events but 1 modality names"),
        (dict(embeddings={"a": np.zeros((2, 2))}, timestamps={"a": [1.0]}), "modality 'a': 2 vectors but 1 timestamps"),
        (dict(embeddings={"a": np.zeros((2, 2))}, timestamps={"b": [1.0, 2.0]}), "timestamps has no entry for modality 'a'"),
        (dict(embeddings={"a": np.zeros((2, 2))}, timestamps=[1.0, 2.0]), "give timestamps per modality too"),
        (dict(embeddings={"a": np.zeros(2)}), r"embeddings\['a'\] must be \[n_m, d_m\], got shape \(2,\)"),
    ],
)
def test_construction_errors(kwargs, message):
    with pytest.raises(SchemaError, match=message):
        EventSequence(**kwargs)


# ----------------------------------------------------------------------------------------------
# slicing and select


def test_slice_keeps_vectors_aligned():
    seq = multi()
    part = seq[1:4]  # y1, x1, y0
    assert part.timestamps.tolist() == [1.0, 2.0, 2.0]
    assert part.modalities.tolist() == ["y", "x", "y"]
    np.testing.assert_array_equal(part.vectors("x"), [[2, 3]])
    np.testing.assert_array_equal(part.vectors("y"), [[104, 105, 106, 107], [100, 101, 102, 103]])
    for j, i in enumerate(range(1, 4)):
        np.testing.assert_array_equal(part.vector_at(j), seq.vector_at(i))
    assert part.id == seq.id
    with pytest.raises(TypeError, match="slicing only"):
        seq[2]


def test_select_sorts_positions_and_keeps_empty_modalities():
    seq = multi()
    sub = seq.select(np.array([4, 0]))  # both x
    assert sub.timestamps.tolist() == [0.0, 4.0]
    np.testing.assert_array_equal(sub.vectors("x"), [[0, 1], [4, 5]])
    assert sub.vectors("y").shape == (0, 4)
    assert sub.vector_positions("y").size == 0

    vecs = [np.array([1.0]), None, np.array([3.0])]
    ragged = EventSequence(vecs, timestamps=[0.0, 1.0, 2.0], event_types=["a", "b", "c"], labels=["p", "q", "r"])
    tail = ragged[-2:]
    assert tail.event_types.tolist() == ["b", "c"] and tail.labels.tolist() == ["q", "r"]
    assert tail.has_vector.tolist() == [False, True]
    np.testing.assert_array_equal(tail.vectors("default"), [[3.0]])


# ----------------------------------------------------------------------------------------------
# tables


def test_to_table_from_table_round_trip():
    vecs = [np.array([1.0, 2.0]), None, np.array([5.0, 6.0, 7.0]), np.array([3.0, 4.0])]
    seq = EventSequence(
        vecs, timestamps=[10.0, 11.5, 11.5, 20.0], modality=["a", "a", "b", "a"], event_types=["t1", None, "t2", "t3"], labels=["n", "n", "x", None], id="e7"
    )
    table = seq.to_table()
    assert table.schema == EVENT_SCHEMA
    check_event_table(table)
    assert table.to_pydict() == {
        "entity_id": ["e7"] * 4,
        "timestamp": [10.0, 11.5, 11.5, 20.0],
        "event_type": ["t1", None, "t2", "t3"],
        "modality": ["a", "a", "b", "a"],
        "embedding": [[1.0, 2.0], None, [5.0, 6.0, 7.0], [3.0, 4.0]],
        "text": [None] * 4,
        "attributes": [None] * 4,
        "label": ["n", "n", "x", None],
    }
    back = EventSequence.from_table(table)
    assert back.id == "e7"
    assert back.timestamps.tolist() == seq.timestamps.tolist()
    assert back.modalities.tolist() == seq.modalities.tolist()
    assert back.event_types.tolist() == seq.event_types.tolist()
    assert back.labels.tolist() == seq.labels.tolist()
    assert back.has_vector.tolist() == seq.has_vector.tolist()
    for m in ("a", "b"):
        np.testing.assert_array_equal(back.vectors(m), seq.vectors(m))
    assert back.to_table().equals(table)


def test_from_table_untimed_and_entity_filter():
    untimed = EventSequence(event_types=["a", "b"], id="u").to_table()
    back = EventSequence.from_table(untimed)
    assert back.timestamps is None and back.labels is None and back.event_types.tolist() == ["a", "b"]
    both = pa.concat_tables([untimed, EventSequence(event_types=["c"], timestamps=[1.0], id="v").to_table()])
    assert EventSequence.from_table(both, entity_id="v").event_types.tolist() == ["c"]
    with pytest.raises(SchemaError, match="exactly one entity, got 2 entities"):
        EventSequence.from_table(both)


def test_sequences_from_table_groups_in_first_appearance_order():
    ids = ["b", "a", "b", "c", "a", "b"]
    table = pa.table(
        {
            "entity_id": ids,
            "timestamp": [5.0, 2.0, 1.0, 0.0, 1.0, 3.0],
            "event_type": [f"r{i}" for i in range(6)],
            "modality": ["default"] * 6,
            "embedding": pa.array([[float(i)] for i in range(6)], pa.list_(pa.float32())),
            "text": pa.nulls(6, pa.string()),
            "attributes": pa.nulls(6, pa.map_(pa.string(), pa.string())),
            "label": pa.nulls(6, pa.string()),
        },
        schema=EVENT_SCHEMA,
    )
    seqs = list(sequences_from_table(table))
    assert [(s.id, len(s)) for s in seqs] == [("b", 3), ("a", 2), ("c", 1)]
    b, a, _ = seqs
    assert b.event_types.tolist() == ["r2", "r5", "r0"]  # sorted by time within the entity
    assert b.embeddings.ravel().tolist() == [2.0, 5.0, 0.0]
    assert a.event_types.tolist() == ["r4", "r1"]
    assert [s.id for s in sequences_from_table(table, min_events=2)] == ["b", "a"]
    assert list(sequences_from_table(table.slice(0, 0))) == []
    with pytest.raises(SchemaError, match="missing columns"):
        list(sequences_from_table(table.drop_columns(["label"])))


# ----------------------------------------------------------------------------------------------
# windows


@pytest.mark.parametrize(
    "n, length, stride, starts",
    [
        (10, 4, None, [0, 4, 6]),
        (10, 4, 3, [0, 3, 6]),
        (10, 4, 2, [0, 2, 4, 6]),
        (11, 4, 3, [0, 3, 6, 7]),
        (5, 5, 2, [0]),
        (3, 8, None, [0]),
    ],
)
def test_window_sequence_starts_and_coverage(n, length, stride, starts):
    seq = EventSequence(arange_vectors(n, 1), timestamps=np.arange(n) * 10.0)
    wins = window_sequence(seq, length, stride)
    assert [int(w.timestamps[0] // 10) for w in wins] == starts
    assert all(len(w) == min(length, n) for w in wins)
    assert wins[-1].timestamps[-1] == seq.timestamps[-1]  # last window ends at the end
    covered = sorted({float(x) for w in wins for x in w.embeddings.ravel()})
    assert covered == list(map(float, range(n)))  # every event is in some window, vectors aligned


def test_window_sequence_short_sequence_returned_whole_and_bad_args():
    seq = EventSequence(arange_vectors(3, 1))
    assert window_sequence(seq, 3)[0] is seq
    with pytest.raises(ValueError, match="length must be positive"):
        window_sequence(seq, 0)
    with pytest.raises(ValueError, match="stride must be positive"):
        window_sequence(EventSequence(arange_vectors(10, 1)), 3, -1)


# ----------------------------------------------------------------------------------------------
# collate


def test_collate_padding_mask_and_vector_index():
    s0 = multi()  # 5 events, x/y
    s1 = EventSequence(arange_vectors(3, 2, offset=50), timestamps=[100.0, 101.0, 103.0], modality="x", event_types=["p", "q", "p"], id="s1")
    s2 = EventSequence([None, np.array([9.0, 9.0, 9.0, 9.0])], modality=["x", "y"], id="s2")  # untimed
    vocab = {"p": 2, "q": 3}
    batch = collate([s0, s1, s2], ["y", "x"], encode_types=lambda ts: np.array([vocab.get(t, 1) for t in ts]), pad_to_multiple=4)
    L = 8
    assert batch.shape == (3, L)
    assert batch.lengths.tolist() == [5, 3, 2]
    assert batch.valid.tolist() == [[True] * 5 + [False] * 3, [True] * 3 + [False] * 5, [True] * 2 + [False] * 6]
    assert batch.ids == ["m", "s1", "s2"] and batch.modalities == ["y", "x"]
    assert batch.modality_ids.tolist() == [[1, 0, 1, 0, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]]
    assert batch.type_ids.tolist() == [[1] * 5 + [0] * 3, [2, 3, 2] + [0] * 5, [1, 1] + [0] * 6]
    assert batch.has_time.tolist() == [True, True, False]
    assert batch.times[1].tolist() == [0.0, 1.0, 3.0, 0, 0, 0, 0, 0]
    assert batch.times[2, :2].tolist() == [0.0, 1.0]
    assert batch.abs_times[1, :3].tolist() == [100.0, 101.0, 103.0]
    assert np.isnan(batch.abs_times[1, 3:]).all() and np.isnan(batch.abs_times[2]).all()
    # every packed vector sits at the flat position of its event
    seqs = [s0, s1, s2]
    assert batch.vector_index["x"].tolist() == [0, 2, 4, 8, 9, 10]
    assert batch.vector_index["y"].tolist() == [1, 3, 17]
    for m in ("x", "y"):
        assert batch.vectors[m].dtype == np.float32
        for vec, flat in zip(batch.vectors[m], batch.vector_index[m]):
            i, j = divmod(int(flat), L)
            assert batch.valid[i, j] and batch.modalities[batch.modality_ids[i, j]] == m
            np.testing.assert_array_equal(vec, seqs[i].vector_at(j))


def test_collate_max_len_keeps_last_events():
    seq = EventSequence(arange_vectors(6, 1), timestamps=[0.0, 1.0, 2.0, 3.0, 5.0, 8.0], id="long")
    short = EventSequence(arange_vectors(2, 1, offset=10), timestamps=[0.0, 1.0], id="short")
    batch = collate([seq, short], ["default"], max_len=3)
    assert batch.shape == (2, 3)
    assert batch.abs_times[0].tolist() == [3.0, 5.0, 8.0]
    assert batch.times[0].tolist() == [0.0, 2.0, 5.0]
    assert batch.vectors["default"].ravel().tolist() == [3.0, 4.0, 5.0, 10.0, 11.0]
    assert batch.vector_index["default"].tolist() == [0, 1, 2, 3, 4]
    assert len(seq) == 6  # input untouched


def test_collate_pad_to_multiple_and_errors():
    one = EventSequence(arange_vectors(1, 2))
    assert collate([one], ["default"], pad_to_multiple=4).shape == (1, 4)
    assert collate([one], ["default"], pad_to_multiple=1).shape == (1, 1)
    assert collate([EventSequence(arange_vectors(5, 2))], ["default"], pad_to_multiple=4).shape == (1, 8)
    empty = EventSequence(np.zeros((0, 2)), timestamps=np.zeros(0), id="empty")
    batch = collate([empty, one], ["default"])
    assert batch.lengths.tolist() == [0, 1] and batch.has_time.tolist() == [True, False]
    with pytest.raises(SchemaError, match=r"sequence 'm' has modalities \['y'\] the model does not know \['x'\]"):
        collate([multi()], ["x"])
    with pytest.raises(ValueError, match="at least one sequence"):
        collate([], ["x"])
