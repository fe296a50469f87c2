"""Snippet search, the model-free parts: walking a tree (.gitignore, skips with counted reasons),
cutting line windows (boundaries, line numbers), code-aware tokens, BM25 and keyword overlap."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from ejc.errors import SearchError
from ejc.search.lexical import BM25Index, keyword_overlap_scores, tokenize
from ejc.search.snippets import cut_snippets, walk_tree


def _lines(n: int, fmt: str = "x{} = {}") -> list[str]:
    return [fmt.format(i, i) for i in range(1, n + 1)]


# -- cutting ---------------------------------------------------------------------------------------


def test_windows_cover_the_file_with_exact_line_numbers_and_text():
    text = "\n".join(_lines(50))
    snips = cut_snippets("a.py", text, snippet_lines=20, overlap=5)
    # no boundaries anywhere: 20-line windows, each starting 5 lines before the previous one's end
    assert [(s.start, s.end) for s in snips] == [(1, 20), (16, 35), (31, 50)]
    lines = text.splitlines()
    for s in snips:
        assert s.text == "\n".join(lines[s.start - 1 : s.end])
        assert s.id == f"a.py:{s.start}-{s.end}"
    assert cut_snippets("a.py", "\n".join(_lines(24)), 20, 5)[0].end == 24  # a short rest joins the window (up to 20 + 5)


def test_a_window_ends_before_a_nearby_def_and_the_next_starts_at_it():
    lines = _lines(40)
    lines[22] = "def handler(request):"  # line 23
    lines[21] = "@route('/x')"  # line 22: the decorator belongs to the def
    snips = cut_snippets("m.py", "\n".join(lines), snippet_lines=20, overlap=5)
    assert (snips[0].start, snips[0].end) == (1, 21)  # moved from 20 to just before the decorator
    assert snips[1].start == 22  # clean cut: no overlap needed
    assert snips[1].text.splitlines()[:2] == ["@route('/x')", "def handler(request):"]


def test_a_window_prefers_ending_after_a_blank_line_and_markdown_cuts_at_headings():
    lines = _lines(40)
    lines[17] = ""  # line 18 blank: cut after it (end 18)
    snips = cut_snippets("m.py", "\n".join(lines), 20, 5)
    assert snips[0].end == 18 and snips[1].start == 14  # overlap kept where the cut is only a blank line
    md = [f"text {i}" for i in range(1, 41)]
    md[23] = "## Usage"  # line 24, within 20 + 5
    md_snips = cut_snippets("README.md", "\n".join(md), 20, 5)
    assert md_snips[0].end == 23 and md_snips[1].start == 24
    # the same "## Usage" line in Python is a comment, not a heading: no preference
    assert cut_snippets("x.py", "\n".join(md), 20, 5)[0].end == 20


def test_whitespace_windows_are_dropped_and_bad_windows_rejected():
    text = "\n".join(_lines(10) + [""] * 40 + _lines(5))
    snips = cut_snippets("a.py", text, 10, 2)
    assert all(s.text.strip() for s in snips)
    assert snips[0].start == 1 and snips[-1].end == 55
    assert cut_snippets("a.py", "", 20, 5) == []
    with pytest.raises(SearchError, match="--overlap"):
        cut_snippets("a.py", "x", 10, 10)
    with pytest.raises(SearchError, match="--snippet-lines"):
        cut_snippets("a.py", "x", 1, 0)


# -- walking ---------------------------------------------------------------------------------------


def _tree(root):
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "core.py").write_text("def f():\n    return 1\n")
    (root / "src" / "pkg" / "notes.md").write_text("# Notes\n\ntext\n")
    (root / "src" / "pkg" / "debug.log").write_text("log line\n")
    (root / "src" / "pkg" / "keep.log").write_text("kept by a negation\n")
    (root / "build").mkdir()
    (root / "build" / "out.py").write_text("generated = 1\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "src" / ".gitignore").write_text("!keep.log\n")  # deeper file wins
    (root / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (root / "big.txt").write_text("y\n" * 600)
    (root / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (root / "min.js").write_text("a=1;" * 200 + "\n")  # 801 bytes (under the size cap), one 800-char line
    (root / "empty.py").write_text("\n  \n")
    os.symlink(root / "src" / "pkg" / "core.py", root / "link.py")


def test_walk_honours_gitignore_and_counts_every_skip(tmp_path):
    _tree(tmp_path)
    w = walk_tree(tmp_path, max_file_bytes=1000, max_line_chars=500)
    assert [f.path for f in w.files] == [".gitignore", "src/.gitignore", "src/pkg/core.py", "src/pkg/keep.log", "src/pkg/notes.md"]
    assert dict(w.skipped) == {"gitignored": 2, "binary": 1, "too_large": 1, "not_utf8": 1, "long_lines": 1, "empty": 1, "symlink": 1}
    assert sorted(w.examples["gitignored"]) == ["build/", "src/pkg/debug.log"]
    core = next(f for f in w.files if f.path == "src/pkg/core.py")
    assert core.text == "def f():\n    return 1\n" and core.size == 22
    assert core.sha256 == hashlib.sha256(b"def f():\n    return 1\n").hexdigest()


def test_include_globs_and_unreadable_files(tmp_path):
    _tree(tmp_path)
    secret = tmp_path / "src" / "pkg" / "secret.py"
    secret.write_text("x = 1\n")
    secret.chmod(0)
    try:
        w = walk_tree(tmp_path, ["*.py"], max_file_bytes=1000)
        readable = os.access(secret, os.R_OK)  # root reads anything
    finally:
        secret.chmod(0o644)
    assert [f.path for f in w.files] == ["src/pkg/core.py"] + (["src/pkg/secret.py"] if readable else [])
    assert w.skipped["not_included"] == 8  # .gitignore x2, keep.log, notes.md, img.png, big.txt, latin1.txt, min.js
    assert w.skipped.get("unreadable", 0) == (0 if readable else 1)
    assert w.skipped["empty"] == 1  # empty.py matches the glob, then holds only whitespace


def test_walk_rejects_a_missing_directory(tmp_path):
    with pytest.raises(SearchError, match="not a directory"):
        walk_tree(tmp_path / "nope")


# -- tokens ----------------------------------------------------------------------------------------


def test_tokens_keep_identifiers_and_split_snake_and_camel_case():
    assert tokenize("parse_http_date(HTTPServer)") == ["parse_http_date", "parse", "http", "date", "httpserver", "http", "server"]
    assert tokenize("getURLForName") == ["geturlforname", "get", "url", "name"]  # 'for' is a stop word
    assert tokenize("Returns the values of __init__") == ["returns", "return", "values", "value", "init"]
    assert tokenize("class") == ["class"] and tokenize("the of a") == []


def test_bm25_finds_the_identifier_from_words_and_scores_zero_without_overlap(tmp_path):
    docs = ["def parse_http_date(value):\n    return value", "class Response:\n    status = 200", "def render_template(name): ..."]
    bm = BM25Index.build(tokenize(d) for d in docs)
    s = bm.scores(tokenize("parse an HTTP date"))
    assert s.shape == (3,) and s[0] > 0 and s[1] == 0 == s[2]
    assert not bm.scores(tokenize("zebra")).any() and not bm.scores([]).any()
    bm.save(tmp_path / "bm")
    np.testing.assert_allclose(BM25Index.load(tmp_path / "bm", mmap=True).scores(tokenize("response status")), bm.scores(tokenize("response status")))
    with pytest.raises(SearchError, match="ejc search index"):
        BM25Index.load(tmp_path / "missing")


def test_keyword_overlap_counts_distinct_query_words():
    s = keyword_overlap_scores("Open the file and read the file", ["open(file).read()", "write file", "nothing"])
    assert s.tolist() == [3.0, 1.0, 0.0]  # {open, file, read}; 'the' / 'and' are stop words
