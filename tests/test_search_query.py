"""Searching a snippet index: fusion arithmetic, the three modes, `similar`, bad input, the
Python API and the CLI's output shapes (``ejc.cli.main``). Built with the model-free HashEmbedder."""

from __future__ import annotations

import json

import pytest

import ejc.search
from ejc.cli import main
from ejc.errors import SearchError
from ejc.search import DEFAULT_FUSION, Fusion, HashEmbedder, SearchIndex, build_index, fuse, search_response


def _func(name: str, n: int = 15) -> str:  # 19 lines: one snippet each
    return f"def {name}(value):\n" + "".join(f"    part_{i} = {name}_step(value, {i})\n" for i in range(n)) + "    return value\n\n\n"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    (root / "pkg").mkdir()
    (root / "pkg" / "dates.py").write_text(_func("parse_http_date") + _func("format_http_date") + _func("utc_offset"))
    (root / "pkg" / "render.py").write_text(_func("render_template", 10) + "\n" * 40 + _func("escape_html", 10))  # snippets 1-20, 55-68
    (root / "pkg" / "copy.py").write_text(_func("parse_http_date"))  # the same function as dates.py's first
    (root / "pkg" / "table.py").write_text("".join(f"x{i} = {i}\n" for i in range(1, 51)))  # no boundaries: 1-20, 16-35, 31-50
    out = root.parent / "ix"
    build_index(root, out, embedder=HashEmbedder(), progress=False)
    return out


@pytest.fixture(scope="module")
def ix(index_dir):
    return SearchIndex.load(index_dir)


def test_rrf_and_convex_fusion_numbers():
    dense, lexical = [(1, 0.9), (2, 0.8)], [(2, 5.0), (3, 4.0)]
    rrf = fuse(dense, lexical, Fusion("rrf", 60.0, 0.5))
    assert [r for r, _ in rrf] == [2, 1, 3]
    assert [s for _, s in rrf] == pytest.approx([0.5 / 62 + 0.5 / 61, 0.5 / 61, 0.5 / 62])
    # convex: each list min-max scaled over its candidates, then w * dense + (1 - w) * lexical
    convex = fuse(dense, lexical, Fusion("convex", 0.0, 0.7))
    assert convex == [(1, pytest.approx(0.7)), (2, pytest.approx(0.3)), (3, pytest.approx(0.0))]
    assert fuse(dense, [], Fusion("convex", 0.0, 0.7)) == [(1, pytest.approx(0.7)), (2, pytest.approx(0.0))]
    assert [r for r, _ in fuse([(4, 0.5), (5, 0.5)], [], Fusion("rrf", 0.0, 1.0))] == [4, 5]  # ties keep dense order
    assert DEFAULT_FUSION == Fusion("convex", 0.0, 0.6)  # what the benchmark's validation queries chose
    with pytest.raises(SearchError, match="'rrf' or 'convex'"):
        Fusion("max")


def test_modes_rank_the_snippet_that_defines_the_name(ix):
    for mode in ("lexical", "dense", "hybrid"):
        hits = ix.query("format an HTTP date", k=3, mode=mode)
        assert len(hits) == 3 and (hits[0].path, hits[0].start, hits[0].end) == ("pkg/dates.py", 20, 38), mode
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert ix.text(hits[0]).startswith("def format_http_date(value):")
    lex = ix.query("format an HTTP date", k=50, mode="lexical")
    assert all(h.score > 0 for h in lex) and len(lex) < len(ix)  # only snippets sharing a token
    assert ix.query("zebra quagga", k=5, mode="lexical") == []
    assert len(ix.query("zebra quagga", k=5, mode="dense")) == 5
    d = search_response("q", ix.query("escape html", k=2))
    assert list(d) == ["query", "results"] and all(list(r) == ["path", "start", "end", "score"] for r in d["results"])


def test_similar_leaves_out_the_snippet_and_its_overlapping_windows(ix):
    seed = ix.snippet_at("pkg/dates.py", 3)
    assert (ix.paths[seed], ix.starts[seed]) == ("pkg/dates.py", 1)
    hits = ix.similar("pkg/dates.py", 3, k=3)
    assert len(hits) == 3
    assert all(not (h.path == "pkg/dates.py" and h.start <= ix.ends[seed] and h.end >= ix.starts[seed]) for h in hits)
    assert (hits[0].path, hits[0].start) == ("pkg/copy.py", 1) and hits[0].score > 0.9  # the same function (its path differs)
    assert ix.line_spans("pkg/table.py") == [(1, 20), (16, 35), (31, 50)]
    near = ix.similar("pkg/table.py", 18, k=len(ix))  # line 18 is in 1-20 and 16-35; the seed is 1-20 (nearer its middle on a tie: earlier)
    assert ix.starts[ix.snippet_at("pkg/table.py", 18)] == 1
    assert [(h.start, h.end) for h in near if h.path == "pkg/table.py"] == [(31, 50)] and len(near) == len(ix) - 2
    assert [h.path for h in ix.similar("./pkg/dates.py", 3, k=3)] == [h.path for h in hits]  # ./ accepted
    abs_path = f"{ix.root}/pkg/dates.py"
    assert ix.similar(abs_path, 3, k=1)[0].path == "pkg/copy.py"  # so is a path under the indexed root


def test_bad_input_is_a_clear_search_error(ix):
    for q in ("", "   \n\t"):
        with pytest.raises(SearchError, match="the query is empty"):
            ix.query(q)
    with pytest.raises(SearchError, match="-k must be an integer in \\[1, 1000\\]"):
        ix.query("x", k=0)
    with pytest.raises(SearchError, match="unknown mode 'fuzzy'"):
        ix.query("x", mode="fuzzy")
    with pytest.raises(SearchError, match="at most 2000 are read"):
        ix.query("x" * 2001)
    assert ix.line_spans("pkg/render.py") == [(1, 20), (55, 68)]  # windows of blank lines only are not indexed
    with pytest.raises(SearchError, match="pkg/render.py:30: no snippet holds this line \\(it falls in a blank stretch"):
        ix.similar("pkg/render.py", 30)
    with pytest.raises(SearchError, match="no snippet holds this line \\(the file's snippets end at line 57\\)"):
        ix.similar("pkg/dates.py", 500)
    with pytest.raises(SearchError, match="line numbers start at 1"):
        ix.similar("pkg/dates.py", 0)
    with pytest.raises(SearchError, match="nope.py: not in the index \\(4 files indexed"):
        ix.similar("nope.py", 1)


def test_the_python_api_is_pinned():
    assert sorted(ejc.search.__all__) == sorted([
        "BM25Index", "DEFAULT_FUSION", "Fusion", "HashEmbedder", "IndexSettings", "MODES", "SearchHit", "SearchIndex", "Snippet",
        "SnippetEmbedder", "SourceFile", "WalkResult", "build_index", "current_version_dir", "cut_snippets", "fuse",
        "keyword_overlap_scores", "search_response", "tokenize", "walk_tree",
    ])


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_query_and_similar_print_the_documented_shapes(index_dir, ix, capsys):
    rc, out, _ = _run(capsys, "search", "query", "format an HTTP date", "--index", str(index_dir), "-k", "3", "--json")
    assert rc == 0
    d = json.loads(out)
    assert list(d) == ["query", "results"] and d["query"] == "format an HTTP date" and len(d["results"]) == 3
    assert all(list(r) == ["path", "start", "end", "score"] and isinstance(r["start"], int) for r in d["results"])
    assert d["results"] == [h.to_dict() for h in ix.query("format an HTTP date", k=3)]
    assert (d["results"][0]["path"], d["results"][0]["start"], d["results"][0]["end"]) == ("pkg/dates.py", 20, 38)

    rc, out, _ = _run(capsys, "search", "query", "escape html", "--index", str(index_dir), "-k", "1", "--mode", "lexical", "--show-code")
    lines = out.splitlines()
    assert rc == 0 and lines[0].startswith("pkg/render.py:") and lines[1] == "    def escape_html(value):"

    rc, out, _ = _run(capsys, "search", "similar", "pkg/dates.py:3", "--index", str(index_dir), "-k", "2", "--json")
    d = json.loads(out)
    assert rc == 0 and d["query"] == "pkg/dates.py:3" and [r["path"] for r in d["results"]][0] == "pkg/copy.py" and len(d["results"]) == 2
    assert all(list(r) == ["path", "start", "end", "score"] for r in d["results"])


def test_cli_bad_input_exits_2_with_one_message(index_dir, tmp_path, capsys):
    cases = [
        (["query", "   ", "--index", str(index_dir)], "the query is empty"),
        (["query", "x", "--index", str(tmp_path / "none")], "no such index; build one with `ejc search index DIR --out"),
        (["query", "x", "--index", str(index_dir), "-k", "0"], "-k must be an integer"),
        (["similar", "pkg/dates.py", "--index", str(index_dir)], "give PATH:LINE"),
        (["similar", "pkg/dates.py:500", "--index", str(index_dir)], "no snippet holds this line"),
        (["index", str(tmp_path / "missing"), "--out", str(tmp_path / "ix")], "not a directory"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((["index", str(tmp_path / "empty"), "--out", str(tmp_path / "ix2")], "nothing to index"))
    for argv, msg in cases:
        rc, out, err = _run(capsys, "search", *argv)
        assert rc == 2 and out == "", argv
        assert err.startswith("ejc: error: ") and msg in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
