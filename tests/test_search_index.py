"""The on-disk snippet index: what a build publishes, incremental re-indexing (counted embedder
calls), atomic publishing under failures, and the errors of bad input. All with the model-free
HashEmbedder."""

from __future__ import annotations

import fcntl
import json

import numpy as np
import pytest

import ejc.search.index as index_mod
from ejc.errors import SearchError
from ejc.search import HashEmbedder, IndexSettings, SearchIndex, build_index, current_version_dir, cut_snippets
from ejc.search.index import embedded_text, text_key


def _func(name: str, body_lines: int = 6) -> str:
    return f"def {name}(value):\n" + "".join(f"    step_{i} = {name}_helper(value, {i})\n" for i in range(body_lines)) + "    return value\n\n\n"


def _tree(root):
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "dates.py").write_text(_func("parse_http_date") + _func("format_http_date") + _func("utc_offset"))
    (root / "pkg" / "render.py").write_text(_func("render_template", 10) + _func("escape_html", 10))
    (root / "docs").mkdir()
    (root / "docs" / "guide.md").write_text("# Guide\n\nHow to parse dates.\n\n## Rendering\n\nTemplates are rendered.\n")
    (root / "logo.png").write_bytes(b"\x89PNG\0\0")
    return root


def _keys(root, path):
    return {text_key(embedded_text(s)) for s in cut_snippets(path, (root / path).read_text(), 20, 5)}


def test_build_publishes_a_version_with_every_snippet_and_its_vector(tmp_path):
    root, out = _tree(tmp_path / "src"), tmp_path / "ix"
    emb = HashEmbedder()
    s = build_index(root, out, embedder=emb, progress=False, log=lambda m: None)
    expected = [c for p in ("docs/guide.md", "pkg/dates.py", "pkg/render.py") for c in cut_snippets(p, (root / p).read_text(), 20, 5)]
    assert (s["files"], s["snippets"], s["files_indexed"], s["snippets_embedded"]) == (3, len(expected), 3, len(expected))
    assert s["skipped"] == {"binary": 1} and s["version"].startswith("v000001-") and s["previous_version"] is None
    assert emb.embedded == len(expected)  # each distinct snippet text embedded once
    assert (out / "CURRENT").read_text().strip() == s["version"]
    vdir = current_version_dir(out)
    assert vdir == out / "versions" / s["version"] and {p.name for p in vdir.iterdir()} == {"manifest.json", "files.parquet", "snippets.parquet", "cube", "bm25"}
    m = json.loads((vdir / "manifest.json").read_text())
    assert m["settings"]["embed"] == {"model": "ejc-hash-v1", "dim": 64, "text_format": 1} and m["root"] == str(root.resolve())
    ix = SearchIndex.load(out)
    assert [(p, a, b) for p, a, b in zip(ix.paths, ix.starts, ix.ends)] == [(c.path, c.start, c.end) for c in expected]
    assert ix.texts == [c.text for c in expected]
    want = HashEmbedder().embed([embedded_text(c) for c in expected])
    got = np.stack([ix.cube.vector(i, "text") for i in ix.ids])
    np.testing.assert_allclose(got, want, atol=1e-6)
    # hierarchy levels: the snippet's directory and file
    e = ix.cube.get_entity(ix.ids[-1])
    assert e.hierarchy_info == {"directory": "pkg", "file": "pkg/render.py"}


def test_reindex_embeds_only_changed_files_and_drops_deleted_ones(tmp_path):
    root, out = _tree(tmp_path / "src"), tmp_path / "ix"
    first = build_index(root, out, embedder=HashEmbedder(), progress=False)
    old_keys = _keys(root, "pkg/dates.py")

    # change one file (a function appended), delete one, add one
    (root / "pkg" / "dates.py").write_text((root / "pkg" / "dates.py").read_text() + _func("to_timestamp"))
    (root / "docs" / "guide.md").unlink()
    (root / "pkg" / "new.py").write_text(_func("brand_new"))
    emb = HashEmbedder()
    s = build_index(root, out, embedder=emb, progress=False)
    new_texts = _keys(root, "pkg/dates.py") - old_keys
    assert 0 < len(new_texts) < len(_keys(root, "pkg/dates.py"))  # the unchanged head of the file is reused
    assert emb.embedded == len(new_texts) + len(_keys(root, "pkg/new.py")) == s["snippets_embedded"]
    assert (s["files_indexed"], s["files_unchanged"], s["files_deleted"]) == (2, 1, 1)
    assert s["previous_version"] == first["version"] and s["version"].startswith("v000002-")
    ix = SearchIndex.load(out)
    assert "docs/guide.md" not in set(ix.paths) and "pkg/new.py" in set(ix.paths)
    assert ix.query("brand new", k=1, mode="lexical")[0].path == "pkg/new.py"
    # vectors of reused snippets are exactly those of a from-scratch build
    fresh = SearchIndex.load(build_index(root, tmp_path / "fresh", embedder=HashEmbedder(), progress=False)["index"])
    np.testing.assert_allclose(np.stack([ix.cube.vector(i, "text") for i in ix.ids]), np.stack([fresh.cube.vector(i, "text") for i in fresh.ids]), atol=1e-6)

    # nothing changed: no embedder call at all; the version before the previous one is deleted
    emb3 = HashEmbedder()
    s3 = build_index(root, out, embedder=emb3, progress=False)
    assert emb3.calls == 0 and s3["snippets_embedded"] == 0 and s3["files_unchanged"] == 3
    assert sorted(p.name for p in (out / "versions").iterdir()) == sorted([s["version"], s3["version"]])


def test_changed_settings_or_embedder_rebuild_everything(tmp_path):
    root, out = _tree(tmp_path / "src"), tmp_path / "ix"
    build_index(root, out, embedder=HashEmbedder(), progress=False)
    s = build_index(root, out, IndexSettings(snippet_lines=8, overlap=2), embedder=HashEmbedder(), progress=False)
    assert s["files_indexed"] == 3 and s["files_unchanged"] == 0
    assert set(SearchIndex.load(out).ends) == {c.end for p in ("docs/guide.md", "pkg/dates.py", "pkg/render.py") for c in cut_snippets(p, (root / p).read_text(), 8, 2)}
    emb = HashEmbedder(dim=32)
    s2 = build_index(root, out, IndexSettings(snippet_lines=8, overlap=2), embedder=emb, progress=False)
    assert s2["snippets_embedded"] == s2["snippets"] == emb.embedded  # other vectors: nothing reusable
    assert SearchIndex.load(out).embedder.dim == 32  # queries are embedded by the kind the index was built with


def test_a_failure_mid_index_leaves_the_previous_version_searchable(tmp_path, monkeypatch):
    root, out = _tree(tmp_path / "src"), tmp_path / "ix"
    v1 = build_index(root, out, embedder=HashEmbedder(), progress=False)["version"]
    before = [h.to_dict() for h in SearchIndex.load(out).query("parse http date", k=3)]
    (root / "pkg" / "dates.py").write_text(_func("completely_different"))

    class Boom(HashEmbedder):
        def embed(self, texts):
            raise RuntimeError("embedder died")

    with pytest.raises(RuntimeError, match="embedder died"):  # failure while embedding
        build_index(root, out, embedder=Boom(), progress=False)

    def bm25_dies(docs, **kw):
        list(docs)
        raise OSError("disk full")

    monkeypatch.setattr(index_mod.BM25Index, "build", staticmethod(bm25_dies))
    with pytest.raises(OSError, match="disk full"):  # failure while writing the new version
        build_index(root, out, embedder=HashEmbedder(), progress=False)
    monkeypatch.undo()
    assert [p.name for p in (out / "versions").iterdir()] == [v1]  # its half-written directory removed

    def current_dies(path, text):
        raise OSError("crash before CURRENT was swapped")

    monkeypatch.setattr(index_mod, "_write_atomic", current_dies)
    with pytest.raises(OSError, match="crash before"):  # the new version is complete but not published
        build_index(root, out, embedder=HashEmbedder(), progress=False)
    monkeypatch.undo()
    assert len(list((out / "versions").iterdir())) == 2
    # a killed indexer's debris
    (out / "versions" / ".tmp-v000009-dead").mkdir()
    (out / "versions" / ".tmp-v000009-dead" / "snippets.parquet").write_bytes(b"half")

    ix = SearchIndex.load(out)
    assert ix.version == v1 and [h.to_dict() for h in ix.query("parse http date", k=3)] == before
    s = build_index(root, out, embedder=HashEmbedder(), progress=False)
    assert sorted(p.name for p in (out / "versions").iterdir()) == sorted([v1, s["version"]])  # debris and the orphan removed
    assert SearchIndex.load(out).query("completely different", k=1, mode="lexical")[0].path == "pkg/dates.py"


def test_corrupted_or_missing_parts_are_reported_with_a_fix(tmp_path):
    root, out = _tree(tmp_path / "src"), tmp_path / "ix"
    with pytest.raises(SearchError, match="no such index; build one with `ejc search index"):
        SearchIndex.load(out)
    (tmp_path / "notix").mkdir()
    with pytest.raises(SearchError, match="not a search index"):
        SearchIndex.load(tmp_path / "notix")
    build_index(root, out, embedder=HashEmbedder(), progress=False)
    table = current_version_dir(out) / "snippets.parquet"
    table.write_bytes(table.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(SearchError, match="corrupted.*ejc search index"):
        SearchIndex.load(out)
    (out / "CURRENT").write_text("v999999-gone\n")
    with pytest.raises(SearchError, match="names version 'v999999-gone', which is missing"):
        SearchIndex.load(out)


def test_nothing_to_index_and_a_concurrent_indexer_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SearchError, match="nothing to index \\(skipped: no files at all\\)"):
        build_index(tmp_path / "empty", tmp_path / "ix", embedder=HashEmbedder())
    (tmp_path / "latin").mkdir()
    (tmp_path / "latin" / "a.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(SearchError, match="nothing to index \\(skipped: not_utf8 1\\)"):
        build_index(tmp_path / "latin", tmp_path / "ix", embedder=HashEmbedder())
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.py").write_text("\n\n")
    with pytest.raises(SearchError, match="skipped: empty 1"):
        build_index(tmp_path / "blank", tmp_path / "ix", embedder=HashEmbedder())
    with pytest.raises(SearchError, match="--overlap"):
        build_index(tmp_path / "blank", tmp_path / "ix", IndexSettings(snippet_lines=10, overlap=10), embedder=HashEmbedder())
    root = _tree(tmp_path / "src")
    (root / "pkg" / "latin.py").write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    msgs = []  # among other files, a non-UTF-8 one is skipped, counted and named on stderr
    s = build_index(root, tmp_path / "ok", embedder=HashEmbedder(), progress=False, log=msgs.append)
    assert s["skipped"] == {"binary": 1, "not_utf8": 1} and s["files"] == 3
    assert msgs == ["skipped 1 not-utf8 file(s), e.g. ['pkg/latin.py']"]
    (tmp_path / "ix").mkdir(exist_ok=True)
    with open(tmp_path / "ix" / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(SearchError, match="another `ejc search index` is writing"):
            build_index(root, tmp_path / "ix", embedder=HashEmbedder())


def test_an_index_inside_the_indexed_tree_is_not_indexed(tmp_path):
    root = _tree(tmp_path / "src")
    s1 = build_index(root, root / ".index", embedder=HashEmbedder(), progress=False)
    s2 = build_index(root, root / ".index", embedder=HashEmbedder(), progress=False)
    assert s1["files"] == s2["files"] == 3 and s2["snippets_embedded"] == 0


def test_watch_reindexes_only_after_a_change_and_survives_a_failed_build(tmp_path):
    root = _tree(tmp_path / "src")
    out = root / ".ix"  # inside the watched tree: its own writes must not look like changes
    saved = {p: (root / p).read_bytes() for p in ("pkg/dates.py", "pkg/render.py", "docs/guide.md")}
    said: list[str] = []
    published: list[str] = []

    def log(msg: str) -> None:  # the failed build's report restores the files, with one changed
        said.append(msg)
        if "re-index failed" in msg:
            published.append((out / "CURRENT").read_text().strip())
            for p, b in saved.items():
                (root / p).write_bytes(b)
            (root / "pkg" / "dates.py").write_text(saved["pkg/dates.py"].decode() + _func("watched_change"))

    builds = index_mod.watch_index(root, out, interval=0.01, max_builds=2, embedder=HashEmbedder(), progress=False, log=log)
    first = next(builds)
    assert first["files_indexed"] == 3 and first["version"].startswith("v000001-")
    assert index_mod.tree_fingerprint(root, [out]) == index_mod.tree_fingerprint(root, [out])

    # emptied tree: the re-index fails, is reported, and the first version stays published
    for p in saved:
        (root / p).unlink()
    second = next(builds)
    failed = [m for m in said if "re-index failed" in m]
    assert len(failed) == 1 and "nothing to index" in failed[0] and published == [first["version"]]
    assert (out / "CURRENT").read_text().strip() == second["version"]
    assert second["version"].startswith("v000002-") and (second["files_indexed"], second["files_unchanged"]) == (1, 2)
    assert 0 < second["snippets_embedded"] < second["snippets"]  # only the changed file's new windows
    ix = SearchIndex.load(out)
    assert ix.query("watched change", k=1, mode="lexical")[0].path == "pkg/dates.py"
    assert set(ix.paths) == {"pkg/dates.py", "pkg/render.py", "docs/guide.md"}
    with pytest.raises(StopIteration):  # max_builds
        next(builds)


def test_watch_rejects_a_non_positive_interval(tmp_path):
    with pytest.raises(SearchError, match="--watch must be a positive number of seconds"):
        next(index_mod.watch_index(_tree(tmp_path / "src"), tmp_path / "ix", interval=0, embedder=HashEmbedder()))
