"""The Serve app over real HTTP on a local Ray: every route, bad inputs, API keys, the README's
curl lines, and a model + index version swap under concurrent load without a failed request.

One Ray + Serve for the module. The served model is a tiny one trained on the quickstart's kind
of synthetic log (behavior/text/image events, types t00..t11) and registered in a SQLite MLflow
registry; the cube is built by the README's own snippet. Answers are compared with the same
model and cube called in-process. The snippet index behind ``/v1/search`` is this repository's
``ejc/search`` sources indexed with the model-free HashEmbedder.
"""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from ejc.config import load_config
from ejc.data.sequence import sequences_from_table
from ejc.data.synth import generate
from ejc.infer.event_jepa import EventJEPA
from ejc.train.loop import pretrain
from ejc.train.mlflow_tracker import MLflowTracker
from ejc.train.recipe import track_model, train_model
from serve.app import deploy, deploy_config
from serve.schemas import MAX_EVENTS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
KEY, ENV_KEY = "test-key-1", "env-key-2"
H = {"X-API-Key": KEY}
MAX_BODY = 1 << 20


def _serving_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Serving (Ray Serve)", 1)[1].split("\n## ", 1)[0]


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", _serving_section(), re.S)


def readme_curl_commands() -> list[str]:
    block = next(b for b in _bash_blocks() if "curl" in b)
    joined = re.sub(r"\\\n\s*", "", block)  # line continuations
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.startswith("curl ")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Training and the in-process reference calls run on one thread: on a busy 2-core box two
    threads are several times slower (measured 15 s vs 68 s for the fixture's training)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def assets(tmp_path_factory, one_torch_thread):
    d = tmp_path_factory.mktemp("serve")
    table, _ = generate(num_entities=24, seed=0)
    run = d / "run"
    pretrain(load_config("tiny", ["train.steps=10", "train.checkpoint_every=5"]), table, run, progress=False)
    seqs = list(sequences_from_table(table))
    EventJEPA.from_pretrained(run).calibrate(seqs[:6], save_to=run)
    # the registered version 1 is what `ejc train` ships (the pretraining-only run above is the
    # version the swap test moves to); synthetic entities are not complete cases: no END
    cfg = load_config("tiny", ["train.steps=10", "finetune.ends=false", "finetune.max_epochs=2", "finetune.patience=1", "finetune.half_lives=[null]", "finetune.ensemble=1"])
    model_dir = train_model(cfg, seqs, d / "model", command=["test"])
    uri = f"sqlite:///{d / 'mlflow.db'}"
    tracker = MLflowTracker(uri, experiment="serve-test")
    assert track_model(tracker, model_dir, cfg, "ejc-serve")["model"]["version"] == "1"
    tracker.finish()
    # the cube, built by the README's snippet (it writes runs/cube under the working directory)
    snippet = next(b for b in _bash_blocks() if "cube.save" in b).split("-c '", 1)[1].split("'", 1)[0]
    cwd = os.getcwd()
    os.chdir(d)
    try:
        exec(compile(snippet, "README.md:Serving", "exec"), {})
    finally:
        os.chdir(cwd)
    from ejc import EmbeddingCube

    cube = EmbeddingCube.load(d / "runs" / "cube")
    cube2 = EmbeddingCube.load(d / "runs" / "cube")
    cube2.remove_entity("i00399")
    cube2.save(d / "cube2")
    from ejc.search import HashEmbedder, build_index

    build_index(ROOT / "ejc" / "search", d / "search.index", embedder=HashEmbedder(), progress=False)
    return {"search_dir": d / "search.index", "dir": d, "run": run, "model_dir": model_dir, "uri": uri, "cube": cube, "cube_dir": d / "runs" / "cube", "cube2_dir": d / "cube2", "cube2_version": EmbeddingCube.load(d / "cube2").version}


def replica_actors() -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]}


@pytest.fixture(scope="module")
def server(assets):
    import ray

    from serve.loading import load_model

    old_env = os.environ.get("EJC_API_KEYS")
    os.environ["EJC_API_KEYS"] = ENV_KEY  # the replicas inherit the driver's environment
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        port = _free_port()
        args = {"model": "models:/ejc-serve/1", "tracking_uri": assets["uri"], "cube": str(assets["cube_dir"]), "search": str(assets["search_dir"]), "api_keys": [KEY], "max_body_bytes": MAX_BODY}
        client = deploy(deploy_config(args, host="127.0.0.1", port=port))  # what `serve run serve/config.yaml` does
        model, info = load_model("models:/ejc-serve/1", assets["uri"])
        yield {"base": f"http://127.0.0.1:{port}", "port": port, "args": args, "client": client, "model": model, "info": info, **assets}
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        if old_env is None:
            os.environ.pop("EJC_API_KEYS", None)
        else:
            os.environ["EJC_API_KEYS"] = old_env


def post(server, route, body, headers=H, **kw):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(server["base"] + route, data=data, headers={"Content-Type": "application/json", **headers}, timeout=60, **kw)


def seq_json(n=12, seed=0, vectors=True):
    rng = np.random.default_rng(seed)
    mods = ["behavior", "text", "image"]
    dims = {"behavior": 16, "text": 24, "image": 32}
    events = []
    for i in range(n):
        m = mods[i % 3]
        ev = {"timestamp": 1.7e9 + 60.0 * i + rng.uniform(0, 30), "event_type": f"t{rng.integers(12):02d}", "modality": m}
        if vectors:
            ev["embedding"] = rng.normal(size=dims[m]).tolist()
        events.append(ev)
    return {"id": f"s{seed}", "events": events}


def local_sequence(server, seq):
    from serve.schemas import SequenceIn, to_sequence

    m = server["model"]
    return to_sequence(SequenceIn.model_validate(seq), m.spec.modality_dims, m.spec.modalities)


def test_health_version_docs(server, assets):
    r = requests.get(server["base"] + "/healthz", timeout=30)
    assert r.status_code == 200 and r.json() == {"status": "ok", "model": True, "cube": True, "search": True}
    v = requests.get(server["base"] + "/v1/version", headers=H, timeout=30).json()
    assert v["model"]["version"] == "ejc-serve/1" and v["model"]["source"] == "models:/ejc-serve/1" and v["model"]["step"] == 10  # the `ejc train` model: 10 pretraining steps
    assert v["model"]["calibrated"] is True and v["model"]["modalities"] == {"behavior": 16, "text": 24, "image": 32}
    assert v["cube"]["version"] == assets["cube"].version and v["cube"]["entities"] == 400 and v["cube"]["modalities"] == ["image", "text"]
    from ejc.search import SearchIndex

    local = SearchIndex.load(assets["search_dir"])
    assert v["search"]["version"] == local.version and v["search"]["snippets"] == len(local) and v["search"]["embedder"] == "ejc-hash-v1"
    spec = requests.get(server["base"] + "/openapi.json", timeout=30).json()
    assert "/v1/search" in spec["paths"]
    assert {"/v1/embed", "/v1/predict", "/v1/simulate", "/v1/anomaly", "/v1/similar", "/v1/relationships", "/v1/version", "/healthz"} <= set(spec["paths"])
    assert "PredictRequest" in spec["components"]["schemas"] and "APIKeyHeader" in spec["components"]["securitySchemes"]
    assert requests.get(server["base"] + "/docs", timeout=30).status_code == 200


def test_api_keys(server):
    body = {"sequence": seq_json(3)}
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY + "x"}):
        r = post(server, "/v1/embed", body, headers=headers)
        assert r.status_code == 401 and r.json()["errors"][0]["field"] == "authorization", headers
        assert r.headers["www-authenticate"] == "Bearer"
    assert requests.get(server["base"] + "/v1/version", timeout=30).status_code == 401
    assert post(server, "/v1/similar", {"entity_id": "i00000", "modality": "text"}, headers={}).status_code == 401
    for headers in (H, {"X-API-Key": ENV_KEY}, {"Authorization": f"Bearer {KEY}"}):
        assert post(server, "/v1/embed", body, headers=headers).status_code == 200, headers


def test_embed_matches_the_model_in_process(server):
    seq = seq_json(20, seed=1)
    r = post(server, "/v1/embed", {"sequence": seq, "include_events": True})
    assert r.status_code == 200, r.text
    out = r.json()
    local = server["model"].process(local_sequence(server, seq))
    assert out["model_version"] == "ejc-serve/1" and out["id"] == "s1" and out["dim"] == local.pooled.shape[0]
    assert np.allclose(out["pooled"], local.pooled, atol=1e-4)
    assert np.allclose(out["events"], local.events, atol=1e-4)
    pooled_only = post(server, "/v1/embed", {"sequence": seq}).json()
    assert pooled_only["events"] is None and np.allclose(pooled_only["pooled"], local.pooled, atol=1e-4)


def test_predict_matches_the_model_in_process(server):
    seq = seq_json(15, seed=2)
    r = post(server, "/v1/predict", {"sequence": seq, "num_steps": 3})
    assert r.status_code == 200, r.text
    got = r.json()["events"]
    want = server["model"].predict_next(local_sequence(server, seq), num_steps=3)
    # the served model is the `ejc train` artifact from the registry, predictor included
    assert server["model"].predictor is not None
    shipped = EventJEPA.from_pretrained(server["model_dir"]).predict_next(local_sequence(server, seq), num_steps=3)
    assert [p.event_type for p in shipped] == [p.event_type for p in want] and [p.gap for p in shipped] == pytest.approx([p.gap for p in want], rel=1e-5)
    assert [e["event_type"] for e in got] == [p.event_type for p in want]
    assert [e["gap"] for e in got] == pytest.approx([p.gap for p in want], rel=1e-4)
    assert [e["if_continuing"] for e in got] == [p.if_continuing for p in want]
    assert [e["timestamp"] for e in got] == pytest.approx([p.timestamp for p in want], abs=1e-2)
    assert all(e["timestamp"] > seq["events"][-1]["timestamp"] and e["gap"] >= 0 for e in got)
    assert all(len(e["embedding"]) == {"behavior": 16, "text": 24, "image": 32}[e["modality"]] for e in got)
    assert all(0 < sum(e["type_probs"].values()) <= 1 + 1e-6 for e in got)
    sampled = [post(server, "/v1/predict", {"sequence": seq, "num_steps": 4, "temperature": 1.0, "seed": 7, "include_embeddings": False}).json()["events"] for _ in range(2)]
    assert sampled[0] == sampled[1] and sampled[0][0]["embedding"] is None  # a seed reproduces a sampled path


def test_simulate_honours_constraints(server):
    seq = seq_json(10, seed=3)
    body = {"sequence": seq, "num_steps": 6, "num_paths": 5, "seed": 1, "constraints": {"min_delay": 120, "forbidden_types": ["t00", "t01"]}, "target": {"event_type": "t05"}}
    r = post(server, "/v1/simulate", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["paths"]) == 5 and len(out["reached"]) == 5 and len(out["stopped"]) == 5
    for path, hit, at, why in zip(out["paths"], out["reached"], out["reached_at"], out["stopped"]):
        assert all(e["gap"] >= 120 - 1e-6 and e["event_type"] not in ("t00", "t01") for e in path)
        assert (why == "target" and path[at]["event_type"] == "t05") if hit else (why == "steps" and len(path) == 6)
    assert out["target_probability"] == pytest.approx(np.mean(out["reached"]))
    assert out["summary"]["paths"] == 5
    local = server["model"].simulate(local_sequence(server, seq), 6, 5, {"min_delay": 120.0, "forbidden_types": {"t00", "t01"}}, "t05", 1.0, 1)
    assert [[e["event_type"] for e in p] for p in out["paths"]] == [[e.event_type for e in p] for p in local.paths]


def test_anomaly_matches_the_model_in_process(server):
    seq = seq_json(16, seed=4)
    seq["events"][8]["embedding"] = [25.0] * len(seq["events"][8]["embedding"])  # far off anything seen
    r = post(server, "/v1/anomaly", {"sequence": seq})
    assert r.status_code == 200, r.text
    out = r.json()
    local = server["model"].anomaly_scores(local_sequence(server, seq))
    assert out["calibrated"] is True and out["event_threshold"] == pytest.approx(local.event_threshold)
    assert np.allclose([np.nan if v is None else v for v in out["event_scores"]], local.event_scores, atol=1e-4, equal_nan=True)
    assert out["sequence_score"] == pytest.approx(local.sequence_score, abs=1e-4)
    assert out["anomalous_events"] == np.flatnonzero(local.is_anomalous).tolist() and out["anomalous_events"]  # the outlier upsets the model
    assert out["sequence_anomalous"] == local.sequence_is_anomalous
    assert set(out["components"]) == {"type", "gap", "embedding", "latent"} and out["components"]["gap"][0] is None


def test_similar_and_relationships_match_the_cube(server):
    cube = server["cube"]
    r = post(server, "/v1/similar", {"entity_id": "i00000", "modality": "text", "k": 5, "filter": {"category": "c2"}})
    assert r.status_code == 200, r.text
    out = r.json()
    want = cube.find_similar("i00000", "text", 5, {"category": "c2"})
    assert out["index_version"] == cube.version and out["modality"] == "text"
    assert [n["entity_id"] for n in out["neighbors"]] == [n.entity_id for n in want] and len(want) == 5
    assert [n["score"] for n in out["neighbors"]] == pytest.approx([n.score for n in want], abs=1e-5)
    assert all(cube.get_entity(n["entity_id"]).hierarchy_info["category"] == "c2" for n in out["neighbors"])
    vec = cube.vector("i00007", "image").tolist()
    by_vec = post(server, "/v1/similar", {"vector": vec, "modality": "image", "k": 3}).json()["neighbors"]
    assert by_vec[0]["entity_id"] == "i00007" and by_vec[0]["score"] == pytest.approx(1.0, abs=1e-4)
    rel = post(server, "/v1/relationships", {"entity_id": "i00000", "type": "similar", "confidence_threshold": 0.5, "limit": 4}).json()
    want_rel = cube.find_relationships("i00000", "similar", 0.5, k=4)[:4]
    assert [(x["target"], x["type"]) for x in rel["relationships"]] == [(w.target, w.type) for w in want_rel]
    assert [x["confidence"] for x in rel["relationships"]] == pytest.approx([w.confidence for w in want_rel])
    comp = post(server, "/v1/relationships", {"entity_id": "i00000", "type": "complementary", "confidence_threshold": 0.05}).json()["relationships"]
    assert comp and all(x["confidence"] >= 0.05 and x["evidence"]["together"] >= 1 for x in comp)
    parents = post(server, "/v1/relationships", {"entity_id": "i00000", "type": "parent", "confidence_threshold": 0.0}).json()["relationships"]
    info = cube.get_entity("i00000").hierarchy_info
    assert {x["target"] for x in parents} <= {f"{k}={v}" for k, v in info.items()} and parents
    node = parents[0]["target"]
    children = post(server, "/v1/relationships", {"entity_id": node, "type": "child", "confidence_threshold": 0.0, "limit": 1000}).json()["relationships"]
    assert "i00000" in {x["target"] for x in children}


def test_search_answers_like_the_cli(server, assets):
    from ejc.search import SearchIndex, search_response

    local = SearchIndex.load(assets["search_dir"])
    for body in ({"query": "publish the index atomically", "k": 3}, {"query": "split camelCase identifiers", "k": 5, "mode": "lexical"}):
        r = post(server, "/v1/search", body)
        assert r.status_code == 200, r.text
        want = search_response(body["query"], local.query(body["query"], k=body["k"], mode=body.get("mode", "hybrid")))
        got = r.json()
        assert list(got) == ["query", "results"] and got["query"] == body["query"] and len(got["results"]) == body["k"]
        assert [list(x) for x in got["results"]] == [["path", "start", "end", "score"]] * body["k"]  # no "code" unless asked
        assert [(x["path"], x["start"], x["end"]) for x in got["results"]] == [(x["path"], x["start"], x["end"]) for x in want["results"]]
        assert [x["score"] for x in got["results"]] == pytest.approx([x["score"] for x in want["results"]], abs=1e-5)
    coded = post(server, "/v1/search", {"query": "reciprocal rank fusion", "k": 2, "show_code": True}).json()["results"]
    hits = local.query("reciprocal rank fusion", k=2)
    assert [x["code"] for x in coded] == [local.text(h) for h in hits]
    for body, field, problem in [
        ({"query": "   "}, "query", "the query is empty"),
        ({"query": ""}, "query", "at least 1"),
        ({"query": "x", "k": 0}, "k", "greater than or equal"),
        ({"query": "x", "mode": "fuzzy"}, "mode", "'hybrid'"),
        ({"query": "x", "typo": 1}, "typo", "Extra inputs"),
    ]:
        r = post(server, "/v1/search", body)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field and problem in r.json()["errors"][0]["problem"], (body, r.text)
    assert post(server, "/v1/search", {"query": "x"}, headers={}).status_code == 401


def _field(r):
    return r.json()["errors"][0]["field"]


def test_bad_inputs_answer_4xx_naming_the_field(server):
    good = seq_json(4, seed=5)
    wrong_dim = json.loads(json.dumps(good))
    wrong_dim["events"][1]["embedding"] = [0.1] * 5
    nan_body = json.dumps({"sequence": good}).replace(str(good["events"][2]["embedding"][3]), "NaN", 1)
    cases = [
        ("/v1/embed", {"sequence": wrong_dim}, 422, "sequence.events[1].embedding", "has 5 values but modality 'text' takes 24"),
        ("/v1/predict", nan_body, 422, "sequence.events[2].embedding[3]", "finite"),
        ("/v1/anomaly", {"sequence": {"events": []}}, 422, "sequence.events", "at least 1"),
        ("/v1/embed", {"sequence": {"events": [{"modality": "behavior"}] * (MAX_EVENTS + 1)}}, 422, "sequence.events", f"at most {MAX_EVENTS}"),
        ("/v1/embed", {"sequence": {"events": "abc"}}, 422, "sequence.events", "valid list"),
        ("/v1/predict", {"sequence": good, "num_steps": "many"}, 422, "num_steps", "valid integer"),
        ("/v1/predict", {"sequence": good, "num_steps": 1000}, 422, "num_steps", "less than or equal"),
        ("/v1/embed", {"sequence": {"events": [{"modality": "behavior", "embedding": {"a": 1}}]}}, 422, "sequence.events[0].embedding", "valid list"),
        ("/v1/embed", {"sequence": {"events": [{"modality": "audio"}]}}, 422, "sequence.events[0].modality", "unknown modality 'audio'"),
        ("/v1/embed", {"sequence": {"events": [{"timestamp": 5, "modality": "text"}, {"timestamp": 1, "modality": "text"}]}}, 422, "sequence.events[1].timestamp", "time order"),
        ("/v1/embed", {"sequence": {"events": [{"timestamp": 1e300, "modality": "text"}]}}, 422, "sequence.events[0].timestamp", "less than or equal"),
        ("/v1/embed", {"sequence": {"events": [{"modality": "text", "typo": 1}]}}, 422, "sequence.events[0].typo", "Extra inputs"),
        ("/v1/embed", '{"sequence": {"events": [', 422, "body", "invalid JSON"),
        ("/v1/embed", "[1, 2]", 422, "body", "valid dictionary"),
        ("/v1/simulate", {"sequence": good, "constraints": {"allowed_types": ["nope"]}}, 422, "constraints", "never saw"),
        ("/v1/simulate", {"sequence": good, "target": {"event_type": "nope"}}, 422, "target.event_type", "never saw"),
        ("/v1/similar", {"vector": [0.1] * 7, "modality": "text"}, 422, "vector", "has 7 values but modality 'text' takes"),
        ("/v1/similar", '{"vector": [NaN, 1.0], "modality": "text"}', 422, "vector[0]", "finite"),
        ("/v1/similar", {"vector": [], "modality": "text"}, 422, "vector", "at least 1"),
        ("/v1/similar", {"entity_id": "nobody", "modality": "text"}, 404, "entity_id", "unknown entity 'nobody'"),
        ("/v1/similar", {"entity_id": "i00000", "modality": "audio"}, 422, "modality", "unknown modality"),
        ("/v1/similar", {"entity_id": "i00000", "modality": "text", "filter": {"colour": "red"}}, 422, "filter", "colour"),
        ("/v1/similar", {"entity_id": "i00000", "vector": [1.0], "modality": "text"}, 422, "body", "exactly one"),
        ("/v1/similar", {"entity_id": "i00000", "modality": "text", "k": "ten"}, 422, "k", "valid integer"),
        ("/v1/relationships", {"entity_id": "nobody", "type": "similar"}, 404, "entity_id", "unknown entity"),
        ("/v1/relationships", {"entity_id": "i00000", "type": "friend"}, 422, "type", "'similar'"),
    ]
    for route, body, status, field, problem in cases:
        r = post(server, route, body)
        assert r.status_code == status, (route, field, r.status_code, r.text[:300])
        err = r.json()["errors"][0]
        assert err["field"] == field and problem in err["problem"], (route, err)
        assert r.json()["detail"].startswith(field)
    big = post(server, "/v1/embed", b'{"sequence": {"events": [' + b'{"modality": "text"},' * (MAX_BODY // 20) + b'{"modality": "text"}]}}')
    assert big.status_code == 413 and _field(big) == "body" and f"limit of {MAX_BODY} bytes" in big.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"sequence": {"events": ['
        for _ in range(MAX_BODY // 4096 + 2):
            yield b" " * 4096

    chunked = requests.post(server["base"] + "/v1/embed", data=chunks(), headers={"Content-Type": "application/json", **H}, timeout=60)
    assert chunked.status_code == 413
    # nothing above hurt the replicas
    assert requests.get(server["base"] + "/healthz", timeout=30).json()["status"] == "ok"
    assert post(server, "/v1/predict", {"sequence": good}).status_code == 200
    assert post(server, "/v1/similar", {"entity_id": "i00001", "modality": "text"}).status_code == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's examples use the curl binary, which is not installed")
def test_readme_curl_lines_work_as_written(server):
    cmds = readme_curl_commands()
    routes = {re.search(r"127\.0\.0\.1:8000(/\S*)", c).group(1) for c in cmds}
    assert routes == {"/healthz", "/v1/version", "/v1/predict", "/v1/embed", "/v1/anomaly", "/v1/simulate", "/v1/similar", "/v1/relationships"}
    env = {**os.environ, "no_proxy": "*"}
    for cmd in cmds:
        cmd = cmd.replace("127.0.0.1:8000", f"127.0.0.1:{server['port']}").replace("X-API-Key: change-me", f"X-API-Key: {ENV_KEY}")
        out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0, (cmd, out.stderr)
        if "%{http_code}" in cmd:
            assert out.stdout.strip() == "401", cmd
            continue
        body = json.loads(out.stdout)
        assert "errors" not in body, (shlex.split(cmd)[-1][:200], body)
    # the answers have content, not just a 200
    r = subprocess.run(["bash", "-c", cmds[3].replace("127.0.0.1:8000", f"127.0.0.1:{server['port']}").replace("change-me", ENV_KEY)], capture_output=True, text=True, env=env)
    assert len(json.loads(r.stdout)["events"]) == 3


def test_version_swap_under_load_drops_nothing(server, assets):
    """`serve deploy` of new user_configs (model: registry v1 -> run directory; cube: v1 -> v2)
    while 8 clients keep calling: replicas reconfigure in place, no request fails."""
    stop = threading.Event()
    log: list[tuple[str, int, str | None, float]] = []
    lock = threading.Lock()
    pred = json.dumps({"sequence": seq_json(12, seed=6), "num_steps": 2})
    sim = json.dumps({"entity_id": "i00003", "modality": "text", "k": 5})

    def client(i: int) -> None:
        s = requests.Session()
        route, body, key = ("/v1/predict", pred, "model_version") if i % 2 else ("/v1/similar", sim, "index_version")
        while not stop.is_set():
            try:
                r = s.post(server["base"] + route, data=body, headers={"Content-Type": "application/json", **H}, timeout=60)
                item = (route, r.status_code, r.json().get(key) if r.status_code == 200 else r.text[:200], time.time())
            except Exception as e:  # a dropped connection counts as a failure
                item = (route, -1, repr(e), time.time())
            with lock:
                log.append(item)

    replicas = replica_actors()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    swap_start = time.time()
    user_configs = {"EventModel": {"model": str(assets["run"]), "max_batch_size": 8, "batch_wait_timeout_s": 0.002}, "Cube": {"cube": str(assets["cube2_dir"])}}
    server["client"].deploy_apps(deploy_config(server["args"], user_configs, host="127.0.0.1", port=server["port"]), _blocking=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        v = requests.get(server["base"] + "/v1/version", headers=H, timeout=30).json()
        if v["model"]["source"] == str(assets["run"]) and v["cube"]["version"] == assets["cube2_version"]:
            break
        time.sleep(0.2)
    swapped = time.time()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    failed = [x for x in log if x[1] != 200]
    assert not failed, failed[:5]
    assert replica_actors() == replicas  # reconfigured in place, not replaced
    assert v["model"]["source"] == str(assets["run"]) and v["model"]["step"] == 10 and v["model"]["version"].startswith("step10-")
    assert v["cube"]["version"] == assets["cube2_version"] and v["cube"]["entities"] == 399
    models = [x[2] for x in log if x[0] == "/v1/predict"]
    cubes = [x[2] for x in log if x[0] == "/v1/similar"]
    assert models[0] == "ejc-serve/1" and models[-1] == v["model"]["version"], set(models)
    assert cubes[0] == server["cube"].version and cubes[-1] == assets["cube2_version"], set(cubes)
    during = [x for x in log if swap_start <= x[3] <= swapped]
    assert len(during) > 0 and len(log) > 20  # requests really ran through the swap


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(server, assets):

    before = requests.get(server["base"] + "/v1/version", headers=H, timeout=30).json()
    bad = {"EventModel": {"model": str(assets["dir"] / "no-such-run")}, "Cube": {"cube": str(assets["dir"] / "no-such-cube")}}
    server["client"].deploy_apps(deploy_config(server["args"], bad, host="127.0.0.1", port=server["port"]), _blocking=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        after = requests.get(server["base"] + "/v1/version", headers=H, timeout=30).json()
        if after["model"]["load_error"] and after["cube"]["load_error"]:
            break
        time.sleep(0.2)
    assert "no-such-run" in after["model"]["load_error"] and "no-such-cube" in after["cube"]["load_error"]
    assert after["model"]["version"] == before["model"]["version"] and after["cube"]["version"] == before["cube"]["version"]
    assert post(server, "/v1/predict", {"sequence": seq_json(5)}).json()["model_version"] == before["model"]["version"]
    assert requests.get(server["base"] + "/healthz", timeout=30).json()["status"] == "ok"
