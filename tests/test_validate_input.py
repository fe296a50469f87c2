"""Input validation of the EventJEPA facade (``ejc.infer.validate``): fast, no model, no Ray."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from ejc.data.sequence import EventSequence
from ejc.embed.tokens import TypeVocab
from ejc.errors import EjcError, SchemaError
from ejc.infer.validate import MAX_LISTED, check_sequence, check_sequences
from ejc.train.data import DataSpec

RNG = np.random.default_rng(0)


@pytest.fixture
def spec() -> DataSpec:
    # 'log' events are known to the model but carry no vectors
    return DataSpec({"text": 16, "image": 4}, TypeVocab(["a", "b"]), ["text", "image", "log"])


def mixed(id: str = "c12", n: int = 9) -> EventSequence:
    """A valid sequence interleaving three modalities, one of them without vectors."""
    mods = [("text", "image", "log")[i % 3] for i in range(n)]
    vecs = [RNG.normal(size=16) if m == "text" else RNG.normal(size=4) if m == "image" else None for m in mods]
    return EventSequence(embeddings=vecs, timestamps=1.7e9 + 60.0 * np.arange(n), modality=mods, event_types=["a", "b", None] * (n // 3), id=id)


def raises(seqs, spec, **kw) -> SchemaError:
    with pytest.raises(SchemaError) as e:
        check_sequences(seqs, spec, **kw)
    assert isinstance(e.value, EjcError)
    return e.value


# -- valid input --------------------------------------------------------------------------------
def test_valid_inputs_pass(spec):
    untimed = EventSequence(embeddings=RNG.normal(size=(5, 16)), modality="text", id="untimed")
    no_vectors = EventSequence(embeddings=None, event_types=["a", "b", "a"], modality="log", id="novec")
    per_modality = EventSequence(
        embeddings={"text": RNG.normal(size=(3, 16)), "image": RNG.normal(size=(2, 4))},
        timestamps={"text": [5.0, 1.0, 3.0], "image": [2.0, 2.0]},  # unsorted: the constructor sorts
        id="dict",
    )
    huge = EventSequence(embeddings=np.full((4, 16), 1e30, np.float32), modality="text", id="huge")  # finite
    check_sequences([mixed(), untimed, no_vectors, per_modality, huge, mixed()[2:5]], spec)
    check_sequences((mixed(),), spec)
    check_sequences([], spec)
    check_sequence(mixed(), spec)


def test_sequence_from_table_passes(spec):
    seq = EventSequence.from_table(mixed(id="tab").to_table())
    check_sequence(seq, spec)


# -- one test per problem -----------------------------------------------------------------------
def test_empty_sequence(spec):
    empty = EventSequence(np.zeros((0, 16)), modality="text", id="c7")
    err = raises([empty], spec)
    assert "sequence 'c7' is empty" in str(err) and "pass at least one event" in str(err)
    check_sequences([empty], spec, allow_empty=True)
    with pytest.raises(SchemaError, match="'c8' is empty"):
        check_sequence(EventSequence(id="c8"), spec)


def test_nan_and_inf_vectors(spec):
    vecs = RNG.normal(size=(6, 16))
    vecs[2, 5] = np.nan
    vecs[4, 0] = -np.inf
    err = raises([EventSequence(vecs, timestamps=np.arange(6.0), modality="text", id="c12")], spec)
    msg = str(err)
    assert "sequence 'c12' event 2 (and 1 more: 4)" in msg
    assert "modality 'text'" in msg and "NaN or infinite" in msg and "pass None" in msg
    assert err.details[0]["event"] == 2 and err.details[0]["field"] == "embedding"


def test_nan_vector_event_index_is_time_order(spec):
    # the constructor sorts by time: the NaN vector given as row 0 is event 2 (the latest)
    vecs = RNG.normal(size=(3, 16))
    vecs[0] = np.nan
    seq = EventSequence(vecs, timestamps=[30.0, 10.0, 20.0], modality="text", id="late")
    err = raises([seq], spec)
    assert "sequence 'late' event 2:" in str(err)
    assert np.isnan(seq.vector_at(2)).all()


def test_nan_vector_in_a_mixed_sequence_names_the_event(spec):
    seq = mixed(id="m1")
    seq.vectors("image")[1, 0] = np.nan  # the second image vector: event 4
    err = raises([seq], spec)
    assert "sequence 'm1' event 4:" in str(err) and "modality 'image'" in str(err)


def test_wrong_width(spec):
    seq = EventSequence(RNG.normal(size=(5, 12)), modality="text", id="c12")
    err = raises([seq], spec)
    msg = str(err)
    assert "sequence 'c12' event 0 (and 4 more: 1, 2, 3, 4): embedding of modality 'text' has 12 values, the model expects 16" in msg
    assert "embedder the model was trained with (width 16)" in msg


def test_mixed_widths_in_one_modality_rejected_by_the_constructor():
    # the constructor forbids it, with a clear SchemaError of its own
    with pytest.raises(SchemaError, match=r"modality 'text' has vectors of several widths \[12, 16\]"):
        EventSequence(embeddings=[RNG.normal(size=16), RNG.normal(size=12)], modality=["text", "text"])


def test_unknown_modality(spec):
    seq = EventSequence(embeddings=[RNG.normal(size=16), RNG.normal(size=3), None], modality=["text", "audio", "audio"], timestamps=[0.0, 1.0, 2.0], id="c3")
    err = raises([seq], spec)
    msg = str(err)
    assert "sequence 'c3' event 1 (and 1 more: 2): modality 'audio' is not known to the model" in msg
    assert "'text', 'image', 'log'" in msg and "rename it" in msg
    assert len(err.problems) == 1  # its vector width is not reported as well


def test_vectors_for_a_modality_without_vectors(spec):
    seq = EventSequence(embeddings=[None, RNG.normal(size=3)], modality=["log", "log"], id="lg")
    err = raises([seq], spec)
    assert "sequence 'lg' event 1: modality 'log' takes no vectors in this model" in str(err)
    assert "pass None" in str(err)


def test_nan_timestamps_are_imputed_by_the_constructor(spec):
    seq = EventSequence(RNG.normal(size=(4, 16)), timestamps=[0.0, np.nan, 2.0, np.inf], modality="text", id="imp")
    assert np.isfinite(seq.timestamps).all() and seq.metadata["imputed_timestamps"] == 2
    check_sequence(seq, spec)
    all_nan = EventSequence(RNG.normal(size=(2, 16)), timestamps=[np.nan, np.nan], modality="text")
    assert all_nan.timestamps is None  # untimed
    check_sequence(all_nan, spec)


def test_nan_timestamp_set_on_the_sequence(spec):
    seq = EventSequence(RNG.normal(size=(5, 16)), timestamps=np.arange(5.0), modality="text", id="c12")
    seq.timestamps[3] = np.nan  # timestamps is a public array
    err = raises([seq], spec)
    msg = str(err)
    assert "sequence 'c12' event 3: timestamp is NaN or infinite" in msg and "give a real time" in msg
    assert "backwards" not in msg  # a NaN is not also reported as unsorted


def test_unsorted_timestamps_are_sorted_by_the_constructor(spec):
    seq = EventSequence(RNG.normal(size=(3, 16)), timestamps=[3.0, 1.0, 2.0], modality="text")
    assert seq.timestamps.tolist() == [1.0, 2.0, 3.0]
    check_sequence(seq, spec)


def test_unsorted_timestamps_set_on_the_sequence(spec):
    seq = EventSequence(RNG.normal(size=(6, 16)), timestamps=np.arange(6.0), modality="text", id="c12")
    seq.timestamps = np.array([0.0, 1.0, 5.0, 2.0, 3.0, 1.0])
    err = raises([seq], spec)
    msg = str(err)
    assert "sequence 'c12' event 3: time goes backwards (t=2.0 after t=5.0 at event 2) (2 places in all)" in msg
    assert "sort the events by time" in msg


def test_timestamps_of_the_wrong_length(spec):
    seq = EventSequence(RNG.normal(size=(3, 16)), timestamps=np.arange(3.0), modality="text", id="c12")
    seq.timestamps = np.arange(4.0)
    assert "sequence 'c12' has 3 events but timestamps of shape (4,)" in str(raises([seq], spec))


@pytest.mark.parametrize(("bad", "said"), [({"x": 1}, "is a dict"), (None, "is None"), (np.zeros((3, 16)), "is a numpy array of shape (3, 16)"), ("c12", "is a str")])
def test_not_an_event_sequence(spec, bad, said):
    err = raises([mixed(), bad], spec, what="embed_sequences input")
    assert f"embed_sequences input[1] {said}, not an EventSequence" in str(err)
    assert "EventSequence(embeddings=" in str(err)
    with pytest.raises(SchemaError, match=f"predict_next input {said.replace('(', '.').replace(')', '.')}, not an EventSequence"):
        check_sequence(bad, spec, what="predict_next input")


def test_one_sequence_instead_of_a_list(spec):
    with pytest.raises(SchemaError, match=r"got one EventSequence; wrap it in a list: \[seq\]"):
        check_sequences(mixed(), spec)
    with pytest.raises(SchemaError, match="must be a list of EventSequence, got a dict"):
        check_sequences({"a": mixed()}, spec)


# -- several problems ---------------------------------------------------------------------------
def test_lists_several_problems_at_once(spec):
    nan = RNG.normal(size=(4, 16))
    nan[1] = np.nan
    wide = EventSequence(RNG.normal(size=(2, 12)), modality="text", id="wide")
    back = EventSequence(RNG.normal(size=(3, 16)), timestamps=[0.0, 1.0, 2.0], modality="text", id="back")
    back.timestamps = np.array([0.0, 2.0, 1.0])
    seqs = [mixed("ok"), EventSequence(nan, modality="text", id="nan"), wide, back, EventSequence(id="empty"), 42]
    err = raises(seqs, spec, what="anomaly_scores input")
    msg = str(err)
    assert msg.startswith("invalid anomaly_scores input (5 problem(s)):")
    for part in (
        "sequence 'nan' (anomaly_scores input[1]) event 1:",
        "sequence 'wide' (anomaly_scores input[2]) event 0 (and 1 more: 1): embedding of modality 'text' has 12 values",
        "sequence 'back' (anomaly_scores input[3]) event 2: time goes backwards",
        "sequence 'empty' (anomaly_scores input[4]) is empty",
        "anomaly_scores input[5] is an int",
    ):
        assert part in msg
    assert "'ok'" not in msg
    assert [d["sequence"] for d in err.details] == [1, 2, 3, 4, 5]
    assert [d["field"] for d in err.details] == ["embedding", "embedding", "timestamp", "events", "sequence"]
    again = pickle.loads(pickle.dumps(err))  # crosses process boundaries (Ray) intact
    assert str(again) == msg and again.problems == err.problems


def test_many_problems_are_counted_and_cut(spec):
    seqs = [EventSequence(RNG.normal(size=(2, 3)), modality="text", id=f"s{i}") for i in range(25)]
    err = raises(seqs, spec)
    msg = str(err)
    assert msg.startswith("invalid input (25 problem(s)):")
    assert f"... and {25 - MAX_LISTED} more problem(s)" in msg
    assert "'s9'" in msg and "'s10'" not in msg
    assert len(err.problems) == 25


# -- speed --------------------------------------------------------------------------------------
def _best_of(fn, repeat: int = 30) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_validation_is_fast():
    spec = DataSpec({"default": 64}, TypeVocab([]))
    seq = EventSequence(RNG.normal(size=(4096, 64)), timestamps=np.cumsum(RNG.exponential(5.0, 4096)), event_types=["a"] * 4096, id="long")
    assert _best_of(lambda: check_sequence(seq, spec)) < 5e-3
    # with events without vectors and two modalities
    spec2 = DataSpec({"text": 64, "image": 32}, TypeVocab([]), ["text", "image", "log"])
    mods = [("text", "image", "log")[i % 3] for i in range(4096)]
    vecs = [RNG.normal(size=64) if m == "text" else RNG.normal(size=32) if m == "image" else None for m in mods]
    seq2 = EventSequence(embeddings=vecs, timestamps=np.arange(4096.0), modality=mods, id="mixed")
    assert _best_of(lambda: check_sequence(seq2, spec2)) < 5e-3
