"""EmbeddingCube: search, filters, errors, relationships, save/load, behaviour modality."""

import json

import numpy as np
import pytest

from ejc.cube.cube import EmbeddingCube
from ejc.cube.entity import Entity, Neighbor, Relationship
from ejc.errors import CubeError, UnknownEntityError, UnknownModalityError

# 2-d "text" vectors with hand-computable cosines to a = [1, 0]:
# b 0.8, c 0.0, d -1.0; "image" is a second space for a, b, c only.
VECS = {"a": [1.0, 0.0], "b": [0.8, 0.6], "c": [0.0, 1.0], "d": [-1.0, 0.0]}
IMAGE = {"a": [1.0, 0.0, 0.0], "b": [0.6, 0.8, 0.0], "c": [0.0, 0.0, 1.0]}
CAT = {"a": "x", "b": "y", "c": "x", "d": "y"}


def small_cube() -> EmbeddingCube:
    cube = EmbeddingCube()
    ents = []
    for i, v in VECS.items():
        emb = {"text": v}
        if i in IMAGE:
            emb["image"] = IMAGE[i]
        ents.append(Entity(i, emb, {"cat": CAT[i], "sub": f"{CAT[i]}{i}"}, {"name": i.upper()}))
    assert cube.add_entities(ents) == 4
    return cube


def test_find_similar_excludes_query_and_scores_exactly():
    cube = small_cube()
    got = cube.find_similar("a", "text", k=2)
    assert [n.entity_id for n in got] == ["b", "c"]
    assert got[0].score == pytest.approx(0.8, abs=1e-6) and got[1].score == pytest.approx(0.0, abs=1e-6)
    assert all(isinstance(n, Neighbor) and n.modality == "text" for n in got)
    assert [n.entity_id for n in cube.find_similar("a", "text", k=10)] == ["b", "c", "d"]  # never the query itself
    vec = cube.find_similar(np.array([1.0, 0.0]), "text", k=1)
    assert vec[0].entity_id == "a" and vec[0].score == pytest.approx(1.0)
    assert cube.find_similar(entity_id="a", modality="text", k=1)[0].entity_id == "b"  # seed-style keywords
    assert cube.modalities == ["image", "text"] and len(cube) == 4 and "a" in cube and "z" not in cube


def test_filters_on_hierarchy_info():
    cube = small_cube()
    assert [(n.entity_id, round(n.score, 6)) for n in cube.find_similar("a", "text", k=5, filter={"cat": "y"})] == [("b", 0.8), ("d", -1.0)]
    assert [n.entity_id for n in cube.find_similar("a", "text", k=5, filter={"cat": ["x", "y"], "sub": ["yd", "xc"]})] == ["c", "d"]
    assert cube.find_similar("a", "text", k=5, filter={"cat": "nope"}) == []
    with pytest.raises(CubeError, match="'category' is in no entity"):
        cube.find_similar("a", "text", filter={"category": "x"})


def test_clear_errors_and_nothing_changes_on_bad_input():
    cube = small_cube()
    version = cube.version
    with pytest.raises(UnknownEntityError, match="unknown entity id 'zz'") as e:
        cube.find_similar("zz", "text")
    assert isinstance(e.value, KeyError) and str(e.value).startswith("unknown entity")
    with pytest.raises(UnknownModalityError, match="unknown modality 'audio'"):
        cube.find_similar("a", "audio")
    with pytest.raises(UnknownModalityError, match="has no 'image' vector"):
        cube.find_similar("d", "image")
    with pytest.raises(CubeError, match="dimension 3 but this space has dimension 2"):
        cube.find_similar([1.0, 0.0, 0.0], "text")
    with pytest.raises(CubeError, match="NaN"):
        cube.find_similar([np.nan, 0.0], "text")
    with pytest.raises(CubeError, match="k must be a positive integer"):
        cube.find_similar("a", "text", k=0)
    with pytest.raises(CubeError, match="name the modality"):
        cube.find_similar("a")
    with pytest.raises(CubeError, match="NaN"):
        Entity("e", {"text": [np.inf, 1.0]})
    # a batch with one bad vector changes nothing
    with pytest.raises(CubeError, match="dimension 3 but this space has dimension 2"):
        cube.add_entities([Entity("e", {"text": [0.5, 0.5]}), Entity("f", {"text": [1.0, 2.0, 3.0]})])
    with pytest.raises(CubeError, match="appears twice"):
        cube.add_entities([Entity("e", {"text": [0.5, 0.5]}), Entity("e", {"text": [0.5, 0.5]})])
    assert len(cube) == 4 and "e" not in cube and cube.version == version
    with pytest.raises(CubeError, match="unknown relationship type"):
        cube.find_relationships("a", "friends")


def test_replace_and_remove_update_every_index():
    cube = small_cube()
    v0 = cube.version
    cube.add_entity(Entity("b", {"text": [-0.6, -0.8]}, {"cat": "x"}))  # replaced: no image any more
    assert cube.version != v0
    assert [n.entity_id for n in cube.find_similar("a", "image", k=5)] == ["c"]
    assert cube.get_entity("b").hierarchy_info == {"cat": "x"}
    assert [n.entity_id for n in cube.find_similar("a", "text", k=5, filter={"cat": "y"})] == ["d"]
    cube.remove_entity("d")
    assert [n.entity_id for n in cube.find_similar("a", "text", k=5)] == ["c", "b"]
    with pytest.raises(UnknownEntityError):
        cube.get_entity("d")
    e = cube.get_entity("a")
    assert np.array_equal(e.embeddings["text"], np.array([1.0, 0.0], np.float32)) and e.metadata == {"name": "A"}


def test_similar_confidence_is_mean_over_shared_spaces_and_threshold_filters():
    cube = small_cube()
    rels = cube.find_relationships("a", "similar", confidence_threshold=-2.0)
    by_target = {r.target: r for r in rels}
    # b: text 0.8, image 0.6 -> 0.7; c: text 0.0, image 0.0 -> 0.0; d: text only -1.0
    assert by_target["b"].confidence == pytest.approx(0.7, abs=1e-6)
    assert by_target["b"].evidence["scores"] == pytest.approx({"text": 0.8, "image": 0.6}, abs=1e-6)
    assert by_target["c"].confidence == pytest.approx(0.0, abs=1e-6)
    assert by_target["d"].confidence == pytest.approx(-1.0, abs=1e-6)
    assert [r.target for r in rels] == ["b", "c", "d"]
    assert [r.target for r in cube.find_relationships("a", "similar", 0.69)] == ["b"]
    assert cube.find_relationships("a", "similar", 0.71) == []
    assert [r.target for r in cube.find_relationships("a", "similar", 0.7, modality="text")] == ["b"]  # text alone: 0.8
    found = cube.discover_relationships(threshold=0.5)
    assert [(r.source, r.target, r.type) for r in found] == [("a", "b", "similar")]  # once per pair


def test_complementary_certainty_factor_by_hand():
    cube = EmbeddingCube()
    cube.add_entities([Entity(i, {"text": [1.0, float(k)]}) for k, i in enumerate("abx")])
    sessions = [["a", "b"]] * 3 + [["a"], ["b"]] + [["x"]] * 5  # 10 sequences
    assert cube.add_cooccurrence(sessions, min_support=1) == 10
    (r,) = cube.find_relationships("a", "complementary", 0.5)
    # P(b|a) = 3/4, P(b) = 4/10 -> (0.75 - 0.4) / (1 - 0.4)
    assert r.target == "b" and r.confidence == pytest.approx(0.35 / 0.6)
    assert r.evidence["together"] == 3 and r.evidence["lift"] == pytest.approx(0.75 / 0.4)
    assert cube.find_relationships("a", "complementary", 0.6) == []
    cube.min_support = 4
    assert cube.find_relationships("a", "complementary", 0.0) == []  # seen together only 3 times
    windowed = EmbeddingCube()
    windowed.add_entities([Entity(i, {"t": [1.0, 0.0]}) for i in "ab"])
    windowed.add_cooccurrence([["a", "z", "z", "b"]] * 3 + [["z"]] * 3, window=1)
    assert windowed.find_relationships("a", "complementary", 0.0) == []  # never within 1 event
    with pytest.raises(CubeError, match="add_cooccurrence"):
        small_cube().find_relationships("a", "complementary")


def test_complementary_from_an_event_table():
    import pyarrow as pa

    from ejc.data.sequence import EventSequence

    seqs = [EventSequence(embeddings=np.zeros((2, 2)), timestamps=[1.0, 2.0], event_types=["a", "b"], id=f"u{i}") for i in range(3)]
    seqs += [EventSequence(embeddings=np.zeros((1, 2)), timestamps=[1.0], event_types=["x"], id=f"v{i}") for i in range(3)]
    cube = small_cube()
    cube.add_entity(Entity("x", {"text": [0.3, 0.3]}))
    cube.add_cooccurrence(pa.concat_tables([s.to_table() for s in seqs]))
    (r,) = cube.find_relationships("a", "complementary", 0.1)
    assert r.target == "b" and r.confidence == pytest.approx(1.0)  # P(b|a) = 1, P(b) = 1/2


def test_declared_hierarchy_relations():
    cube = EmbeddingCube()
    info = {"p1": ("phones", "electronics"), "p2": ("phones", "electronics"), "p3": ("laptops", "electronics"), "p4": ("shirts", "clothing")}
    cube.add_entities([Entity(i, {"t": [1.0, k]}, {"subcategory": s, "category": c}) for k, (i, (s, c)) in enumerate(info.items())])
    h = cube.create_hierarchy(hierarchy_type="catalog", levels=["product", "subcategory", "category"])
    assert h["levels"] == ["category", "subcategory"] and h["source"] == "declared"
    assert h["nodes"]["subcategory=phones"] == {"level": "subcategory", "value": "phones", "parent": "category=electronics", "size": 2}
    rel = lambda s, t, **kw: [(r.target, r.confidence) for r in cube.find_relationships(s, t, 0.0, **kw)]  # noqa: E731
    assert rel("p1", "parent") == [("subcategory=phones", 1.0)]
    assert rel("p1", "sibling") == [("p2", 1.0)]
    assert rel("p1", "child") == []
    assert rel("subcategory=phones", "parent") == [("category=electronics", 1.0)]
    assert rel("category=electronics", "child") == [("subcategory=laptops", 1.0), ("subcategory=phones", 1.0)]
    assert rel("subcategory=phones", "child") == [("p1", 1.0), ("p2", 1.0)]
    assert rel("subcategory=phones", "sibling") == [("subcategory=laptops", 1.0)]
    assert rel("category=clothing", "sibling") == [("category=electronics", 1.0)]
    with pytest.raises(CubeError, match="no node 'category=food'"):
        cube.find_relationships("category=food", "child")
    cube.add_entity(Entity("p5", {"t": [0.0, 1.0]}, {"subcategory": "phones", "category": "clothing"}))
    with pytest.raises(CubeError, match="do not nest"):
        cube.create_hierarchy(hierarchy_type="bad", levels=["subcategory", "category"])


def test_detected_hierarchy_finds_planted_levels_and_feeds_filters():
    from sklearn.metrics import adjusted_rand_score

    from ejc.cube.entity import entities_from_table
    from ejc.data.synth_cube import generate_cube

    ents, _, truth = generate_cube(160, seed=3)
    cube = EmbeddingCube()
    cube.add_entities(entities_from_table(ents, hierarchy_columns=[]))
    h = cube.create_hierarchy(modality="text")
    assert h["levels"] == ["cluster.0", "cluster.1"]
    ids = [e["id"] for e in truth["entities"]]
    for level, planted in zip(h["levels"], ("category", "subcategory")):
        assert adjusted_rand_score([e[planted] for e in truth["entities"]], [h["values"][level][i] for i in ids]) >= 0.95
    assert h["scores"]["cluster.0"]["clusters"] == 5 and h["scores"]["cluster.1"]["clusters"] == 20
    first = ids[0]
    mine = cube.get_entity(first).hierarchy_info["cluster.0"]
    hits = cube.find_similar(first, "text", k=200, filter={"cluster.0": mine})
    assert hits and all(cube.get_entity(n.entity_id).hierarchy_info["cluster.0"] == mine for n in hits)
    (parent,) = cube.find_relationships(first, "parent", 0.0)
    assert parent.target.startswith("cluster.1=") and 0.5 < parent.confidence <= 1.0
    noise = EmbeddingCube()
    rng = np.random.default_rng(0)
    noise.add_entities([Entity(f"n{i}", {"v": rng.standard_normal(16)}) for i in range(150)])
    with pytest.raises(CubeError, match="no hierarchy found"):
        noise.create_hierarchy()
    assert len(noise.create_hierarchy(levels=2)["levels"]) == 2


def test_fit_transform_recovers_a_linear_map():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 4))
    W = rng.standard_normal((4, 3))
    Y = X @ W + 0.5
    cube = EmbeddingCube()
    cube.add_entities([Entity(f"e{i}", {"a": X[i], "b": Y[i]}) for i in range(60)])
    desc = cube.fit_transform("a", "b", method="linear")
    assert desc["error"] < 1e-6 and desc["info"]["heldout_pairs"] == 12 and desc["info"]["train_pairs"] == 48
    x = np.array([1.0, -2.0, 0.5, 3.0])
    assert np.allclose(cube.transform(x, "a", "b"), x @ W + 0.5, atol=1e-3)
    assert cube.transform(X[:5], "a", "b").shape == (5, 3)
    auto = cube.fit_transform("a", "b", name="auto")
    assert auto["info"]["method"] == "linear" and auto["info"]["heldout_errors"]["procrustes"] > 0.01
    with pytest.raises(CubeError, match="dimension 2 but 'a' has dimension 4"):
        cube.transform([1.0, 2.0], "a", "b")
    with pytest.raises(CubeError, match="no chain of transforms"):
        cube.transform(x[:3], "b", "a")
    with pytest.raises(CubeError, match="at least 2 training and 2 held-out"):
        cube.fit_transform("a", "b", entity_ids=["e0", "e1", "e2"])


def test_procrustes_recovers_a_rotation():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 3))
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    cube = EmbeddingCube()
    cube.add_entities([Entity(f"e{i}", {"a": X[i], "b": 2.0 * X[i] @ Q}) for i in range(50)])
    desc = cube.fit_transform("a", "b", method="procrustes")
    assert desc["error"] < 1e-8
    assert np.allclose(cube.transform(X[0], "a", "b"), 2.0 * X[0] @ Q, atol=1e-4)


def test_find_path_picks_the_lower_error_chain():
    cube = EmbeddingCube()
    cube.add_model("a2b", lambda x: x * 2, "A", "B", error=0.5)
    cube.add_model("b2c", lambda x: x + 1, "B", "C", error=0.1)
    cube.add_model("a2c", lambda x: x * 0, "A", "C", error=0.8)
    assert cube.find_path("A", "C") == ["a2b", "b2c"]  # 0.6 < 0.8
    assert np.array_equal(cube.transform(np.array([1.0, 2.0]), "A", "C"), np.array([3.0, 5.0], np.float32))
    cube.add_model("a2c", lambda x: x * 0, "A", "C", error=0.55)
    assert cube.find_path("A", "C") == ["a2c"]  # now cheaper than the chain
    assert cube.find_path("A", "A") == []
    with pytest.raises(CubeError, match="no chain of transforms leads from 'C' to 'A'"):
        cube.find_path("C", "A")


def test_user_model_error_is_measured_on_shared_entities_and_torch_modules_work():
    import torch

    cube = EmbeddingCube()
    cube.add_entities([Entity(f"e{i}", {"a": [float(i), 1.0], "b": [float(i), 1.0]}) for i in range(4)])
    cube.add_model("half", lambda x: x * 0.5, "a", "b")
    # Y = rows (i, 1), i = 0..3; prediction (i/2, 1/2): squared error sum(i^2/4) + 4 * 1/4 = 3.5 + 1
    # variance sum: sum((i - 1.5)^2) = 5 (second column constant)
    assert cube._error(cube.transforms.get("half")) == pytest.approx(4.5 / 5.0)
    lin = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
    cube.add_model("id", lin, "a", "b")
    assert cube.find_path("a", "b") == ["id"]  # measured error 0 beats 0.9
    assert np.allclose(cube.transform([3.0, 1.0], "a", "b"), [3.0, 1.0])
    with pytest.raises(CubeError, match="say which spaces"):
        cube.add_model("nowhere", lambda x: x)


def test_registered_model_class_is_built_with_the_space_dims():
    import torch

    from ejc.cube.transforms import MODEL_FACTORIES, register_model

    @register_model("test_proj", source_space="a", target_space="b")
    class Proj(torch.nn.Module):
        def __init__(self, input_dim: int, output_dim: int):
            super().__init__()
            self.transform = torch.nn.Linear(input_dim, output_dim)

        def forward(self, x):
            return self.transform(x)

    try:
        cube = EmbeddingCube()
        cube.add_entities([Entity(f"e{i}", {"a": np.ones(3) * (i + 1), "b": np.arange(5.0) * (i + 1) + 1}) for i in range(3)])
        cube.add_model("test_proj", error=0.3)
        assert cube.transform(np.ones(3), "a", "b").shape == (5,)
    finally:
        MODEL_FACTORIES.pop("test_proj", None)


def test_cross_modal_relationships_follow_the_path():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 3))
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    cube = EmbeddingCube()
    cube.add_entities([Entity(f"e{i}", {"a": X[i]}) for i in range(15)] + [Entity(f"f{i}", {"b": X[i] @ Q}) for i in range(15)])
    with pytest.raises(CubeError, match="no transform leads"):
        cube.find_relationships("e3", "cross_modal")
    cube.add_model("rot", lambda x: x @ Q, "a", "b", error=0.0)
    top = cube.find_relationships("e3", "cross_modal", 0.0, k=3)[0]
    assert top.target == "f3" and top.confidence == pytest.approx(1.0, abs=1e-5)
    assert top.evidence == {"source_modality": "a", "target_modality": "b", "path": ["rot"]}


def test_save_load_round_trip_is_identical(tmp_path):
    cube = small_cube()
    cube.add_cooccurrence([["a", "b"]] * 3 + [["c"]] * 3)
    cube.create_hierarchy(hierarchy_type="cat", levels=["cat", "sub"])
    cube.add_model("user", lambda x: x[:, :2], "image", "text", error=0.2)
    rng = np.random.default_rng(0)
    more = [Entity(f"m{i}", {"text": rng.standard_normal(2), "image": rng.standard_normal(3)}, {"cat": "z", "sub": "zz"}) for i in range(20)]
    cube.add_entities(more)
    cube.fit_transform("text", "image", method="linear")
    cube.save(tmp_path / "cube")
    again = EmbeddingCube.load(tmp_path / "cube")
    assert again.version == cube.version and again.modalities == cube.modalities and len(again) == len(cube)
    for i in cube.ids():
        a, b = cube.get_entity(i), again.get_entity(i)
        assert a.hierarchy_info == b.hierarchy_info and a.metadata == b.metadata
        assert set(a.embeddings) == set(b.embeddings) and all(np.array_equal(a.embeddings[m], b.embeddings[m]) for m in a.embeddings)
        for m in a.embeddings:
            assert cube.find_similar(i, m, k=5) == again.find_similar(i, m, k=5)
    for t in ("similar", "complementary", "parent", "sibling"):
        assert cube.find_relationships("a", t, -1.0) == again.find_relationships("a", t, -1.0)
    v = np.array([0.3, -0.2], np.float32)
    assert np.array_equal(cube.transform(v, "text", "image"), again.transform(v, "text", "image"))
    assert again.missing_models == [{"name": "user", "source": "image", "target": "text", "error": 0.2}]
    manifest = json.loads((tmp_path / "cube" / "manifest.json").read_text())
    assert manifest["entities"] == 24 and manifest["modalities"]["text"]["count"] == 24 and manifest["version"] == cube.version
    # saving again over the directory replaces it
    cube.remove_entity("m0")
    cube.save(tmp_path / "cube")
    assert len(EmbeddingCube.load(tmp_path / "cube")) == 23


def test_load_refuses_corrupted_or_foreign_directories(tmp_path):
    cube = small_cube()
    cube.save(tmp_path / "c")
    state = tmp_path / "c" / "state.json"
    state.write_text(state.read_text().replace('"min_support": 3', '"min_support": 4'))
    with pytest.raises(CubeError, match="state.json: SHA-256 does not match"):
        EmbeddingCube.load(tmp_path / "c")
    with pytest.raises(CubeError, match="not a saved cube"):
        EmbeddingCube.load(tmp_path / "nothing")
    cube.save(tmp_path / "d")
    (tmp_path / "d" / "entities.parquet").unlink()
    with pytest.raises(CubeError, match="missing file"):
        EmbeddingCube.load(tmp_path / "d")
    cube.add_entity(Entity("q", {"text": [1.0, 1.0]}, metadata={"bad": object()}))
    with pytest.raises(CubeError, match="JSON-serialisable"):
        cube.save(tmp_path / "e")
    assert not (tmp_path / "e").exists() and not list(tmp_path.glob(".tmp-*"))


def test_behaviour_embeddings_are_one_more_modality():
    from ejc.infer.event_jepa import EventJEPA

    from helpers import random_sequences

    seqs = random_sequences(num=6, seed=3)
    model = EventJEPA(embedding_dim=8, num_levels=2, config="tiny")
    cube = EmbeddingCube()
    cube.add_entity(Entity("e0", {"text": [1.0, 0.0]}, {"segment": "new"}))
    assert cube.add_behaviour(model, seqs) == 6
    assert cube.modalities == ["behaviour", "text"] and len(cube) == 6
    want = model.embed_sequences(seqs)
    assert np.allclose(cube.vector("e2", "behaviour"), want[2], atol=1e-6)
    assert set(cube.get_entity("e0").embeddings) == {"behaviour", "text"} and cube.get_entity("e0").hierarchy_info == {"segment": "new"}
    nb = cube.find_similar("e0", "behaviour", k=5)
    assert len(nb) == 5 and "e0" not in [n.entity_id for n in nb]
    w0 = want[0] / np.linalg.norm(want[0])
    best = max(range(1, 6), key=lambda j: float(w0 @ want[j] / np.linalg.norm(want[j])))
    assert nb[0].entity_id == f"e{best}"


def test_relationship_and_neighbor_serialise():
    r = Relationship("a", "b", "similar", 0.5, {"scores": {"t": 0.5}})
    assert json.loads(json.dumps(r.to_dict())) == {"source": "a", "target": "b", "type": "similar", "confidence": 0.5, "evidence": {"scores": {"t": 0.5}}}
    assert Neighbor("a", 0.25, "t").to_dict() == {"entity_id": "a", "score": 0.25, "modality": "t"}
