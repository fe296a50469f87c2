"""The Serve app's request models, conversions, API-key check and body limit, without Ray."""

import asyncio
import json
import pickle

import numpy as np
import pytest
from pydantic import ValidationError

from ejc.errors import ConfigError, RequestError
from ejc.infer.anomaly import AnomalyResult
from serve.api import BodyLimit, _loc, api_keys, key_is_valid
from serve.app import AppArgs, model_user_config
from serve.schemas import (
    MAX_DIM,
    MAX_EVENTS,
    EmbedRequest,
    PredictRequest,
    SequenceIn,
    SimilarRequest,
    SimulateRequest,
    anomaly_out,
    jsonable,
    simulation_options,
    to_sequence,
)

DIMS = {"a": 3, "b": 2}
MODS = ["a", "b", "c"]  # "c": events without vectors


def seq_in(events, **kw):
    return SequenceIn.model_validate({"events": events, **kw})


def test_to_sequence_builds_the_model_input():
    s = to_sequence(
        seq_in(
            [
                {"timestamp": 10.0, "event_type": "x", "modality": "a", "embedding": [1, 2, 3]},
                {"timestamp": None, "event_type": None, "modality": "c"},
                {"timestamp": 30.0, "event_type": "y", "modality": "b", "embedding": [0.5, 0.25]},
            ],
            id="u7",
        ),
        DIMS,
        MODS,
    )
    assert s.id == "u7" and len(s) == 3
    assert s.timestamps.tolist() == [10.0, 10.0, 30.0]  # the missing time takes its predecessor's
    assert s.modalities.tolist() == ["a", "c", "b"] and s.event_types.tolist() == ["x", None, "y"]
    assert s.vectors("a").tolist() == [[1, 2, 3]] and s.vectors("b").tolist() == [[0.5, 0.25]]
    assert s.has_vector.tolist() == [True, False, True]
    untimed = to_sequence(seq_in([{"modality": "c"}, {"modality": "c"}]), DIMS, MODS)
    assert untimed.timestamps is None and untimed.event_types is None


@pytest.mark.parametrize(
    "events, field, problem",
    [
        ([{"modality": "zz"}], "sequence.events[0].modality", "unknown modality 'zz'"),
        ([{"modality": "a", "embedding": [1, 2, 3]}, {"modality": "a", "embedding": [1, 2]}], "sequence.events[1].embedding", "has 2 values but modality 'a' takes 3"),
        ([{"modality": "c", "embedding": [1.0]}], "sequence.events[0].embedding", "takes no vectors"),
        ([{"timestamp": 5.0, "modality": "c"}, {"modality": "c"}, {"timestamp": 4.0, "modality": "c"}], "sequence.events[2].timestamp", "earlier than events[0].timestamp"),
    ],
)
def test_to_sequence_names_the_bad_field(events, field, problem):
    with pytest.raises(RequestError) as e:
        to_sequence(seq_in(events), DIMS, MODS)
    assert e.value.field == field and problem in e.value.problem and e.value.status == 422


def _errors(model, payload):
    with pytest.raises(ValidationError) as e:
        model.model_validate_json(payload if isinstance(payload, str) else json.dumps(payload))
    return [(_loc(("body", *err["loc"])), err["msg"]) for err in e.value.errors()]


def test_request_models_reject_bad_input_by_field():
    one = {"modality": "a", "embedding": [1.0, 2.0, 3.0]}
    assert _errors(EmbedRequest, '{"sequence": {"events": [{"embedding": [NaN, 1]}]}}')[0][0] == "sequence.events[0].embedding[0]"
    assert "finite" in _errors(EmbedRequest, '{"sequence": {"events": [{"timestamp": Infinity}]}}')[0][1]
    assert _errors(EmbedRequest, {"sequence": {"events": []}})[0][0] == "sequence.events"
    assert _errors(EmbedRequest, {"sequence": {"events": [one] * (MAX_EVENTS + 1)}})[0][0] == "sequence.events"
    assert _errors(EmbedRequest, {"sequence": {"events": [{"embedding": [0.0] * (MAX_DIM + 1)}]}})[0][0] == "sequence.events[0].embedding"
    assert _errors(EmbedRequest, {"sequence": {"events": [{"embedding": "abc"}]}})[0][0] == "sequence.events[0].embedding"
    assert _errors(EmbedRequest, {"sequence": {"events": [{"embedding": ["x", 1]}]}})[0][0] == "sequence.events[0].embedding[0]"
    assert _errors(EmbedRequest, {"sequence": {"events": [{"embeddings": [1.0]}]}})[0] == ("sequence.events[0].embeddings", "Extra inputs are not permitted")
    assert _errors(EmbedRequest, {"sequence": {"events": {"a": 1}}})[0][0] == "sequence.events"
    assert _errors(EmbedRequest, [1, 2])[0][0] == "body"
    assert _errors(PredictRequest, {"sequence": {"events": [one]}, "num_steps": 0})[0][0] == "num_steps"
    assert _errors(PredictRequest, {"sequence": {"events": [one]}, "temperature": -1})[0][0] == "temperature"
    assert "exactly one of entity_id and vector" in _errors(SimilarRequest, {"modality": "a"})[0][1]
    assert "exactly one" in _errors(SimilarRequest, {"modality": "a", "entity_id": "e1", "vector": [1.0]})[0][1]
    assert _errors(SimilarRequest, {"modality": "a", "entity_id": "e1", "k": 1000})[0][0] == "k"
    assert "embedding needs modality" in _errors(SimulateRequest, {"sequence": {"events": [one]}, "target": {"embedding": [1.0]}})[0][1]
    assert _errors(SimulateRequest, {"sequence": {"events": [one]}, "num_paths": 65})[0][0] == "num_paths"


def test_simulation_options_are_checked_against_the_model():
    base = {"sequence": {"events": [{"modality": "a", "embedding": [1, 2, 3]}]}}
    types = ["t1", "t2"]
    c, t = simulation_options(SimulateRequest.model_validate({**base, "constraints": {"allowed_types": ["t1"], "causal_order": [["t1", "t2"]], "min_delay": 5}, "target": {"event_type": "t2"}}), types, DIMS, MODS)
    assert c["allowed_types"] == {"t1"} and c["causal_order"] == [("t1", "t2")] and c["min_delay"] == 5.0
    assert t["event_type"] == "t2" and t["embedding"] is None
    for extra, field in [
        ({"constraints": {"allowed_types": ["nope"]}}, "constraints"),
        ({"constraints": {"min_delay": 10, "max_delay": 5}}, "constraints"),
        ({"target": {"event_type": "nope"}}, "target.event_type"),
        ({"target": {"embedding": [1.0, 2.0], "modality": "a"}}, "target.embedding"),
        ({"target": {"embedding": [1.0], "modality": "c"}}, "target.modality"),
    ]:
        with pytest.raises(RequestError) as e:
            simulation_options(SimulateRequest.model_validate({**base, **extra}), types, DIMS, MODS)
        assert e.value.field == field


def test_anomaly_out_is_json_safe_with_and_without_calibration():
    res = AnomalyResult(
        event_scores=np.array([0.0, 5.0, np.nan, 1.0]),
        components={"type": np.array([np.nan, 2.0, 1.0, 0.5])},
        sequence_score=1.5,
        event_threshold=2.0,
        sequence_threshold=1.0,
    )
    out = anomaly_out(res, True, "v1", "u1")
    assert out.event_scores == [0.0, 5.0, None, 1.0] and out.components["type"][0] is None
    assert out.anomalous_events == [1] and out.sequence_anomalous is True and out.event_threshold == 2.0
    json.dumps(out.model_dump(), allow_nan=False)
    res.event_threshold = res.sequence_threshold = float("inf")
    raw = anomaly_out(res, False, "v1", None)
    assert raw.event_threshold is None and raw.sequence_anomalous is None and raw.anomalous_events == []
    assert jsonable({"a": np.float32(1.5), "b": {2, 1}, "c": (np.int64(3), float("nan")), "d": np.arange(2)}) == {"a": 1.5, "b": [1, 2], "c": [3, None], "d": [0, 1]}


def test_api_keys_and_constant_time_check(monkeypatch):
    monkeypatch.setenv("EJC_TEST_KEYS", " k2 , ,k3")
    keys = api_keys(["k1", "k2"], "EJC_TEST_KEYS")
    assert keys == [b"k1", b"k2", b"k3"]
    assert key_is_valid("k3", keys) and key_is_valid("k1", keys)
    assert not key_is_valid("k", keys) and not key_is_valid("k1 ", keys) and not key_is_valid(None, keys) and not key_is_valid("", keys)
    assert api_keys([], None) == []


def test_request_error_survives_pickling():
    e = pickle.loads(pickle.dumps(RequestError("entity_id", "unknown entity 'x'", status=404)))
    assert (e.field, e.problem, e.status, str(e)) == ("entity_id", "unknown entity 'x'", 404, "entity_id: unknown entity 'x'")


def _asgi(middleware, headers, chunks):
    """Run one request through ``middleware``; returns (status, body bytes, bytes the app read)."""
    sent, read = [], []

    async def app(scope, receive, send):
        while True:
            msg = await receive()
            read.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    msgs = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return msgs.pop(0)

    async def send(msg):
        sent.append(msg)

    asyncio.run(middleware(app)({"type": "http", "headers": headers}, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), b"".join(read)


def test_body_limit_rejects_before_and_while_reading():
    mw = lambda app: BodyLimit(app, max_bytes=10)  # noqa: E731
    assert _asgi(mw, [(b"content-length", b"5")], [b"12345"])[:2] == (200, b"ok")
    status, body, read = _asgi(mw, [(b"content-length", b"11")], [b"12345678901"])
    assert status == 413 and read == b"" and json.loads(body)["errors"][0]["field"] == "body"
    status, body, read = _asgi(mw, [], [b"123456", b"789012", b"345"])  # chunked, no length
    assert status == 413 and "limit of 10 bytes" in json.loads(body)["detail"] and read == b"123456"
    assert _asgi(mw, [(b"content-length", b"abc")], [b""])[0] == 400


def test_app_args(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    a = AppArgs.model_validate({"model": "run", "api_keys": "k1,k2"})
    assert a.api_keys == ["k1", "k2"]
    cfg = model_user_config(a)
    assert cfg["model"] == str(tmp_path / "run") and cfg["tracking_uri"] is None and cfg["max_batch_size"] == 16
    reg = model_user_config(AppArgs(model="models:/m/2"))
    assert reg["model"] == "models:/m/2" and reg["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ConfigError, match="does not exist"):
        model_user_config(AppArgs(model="missing"))
    with pytest.raises(ValidationError, match="give model"):
        AppArgs()
    with pytest.raises(ValidationError):
        AppArgs(model="run", max_batch_size=0)
