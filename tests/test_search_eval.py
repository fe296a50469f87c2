"""``ejc evaluate search``'s benchmark logic: docstrings removed with the line map kept, one query
per documented public function, a hash split, rank metrics; the whole run on a tiny package with
the model-free HashEmbedder."""

from __future__ import annotations

import pytest

from ejc.eval.search import _split_of, build_benchmark, first_answer, first_sentence, rank_metrics, run_search_benchmark, strip_docstrings
from ejc.search import HashEmbedder, IndexSettings

MODULE = '''"""Module docstring.

Two paragraphs."""

import os


def parse_http_date(value):
    """Parse an HTTP date string into a timestamp.

    More text that is not the query."""
    return int(value)


class Client:
    """A client."""

    def send_request(self, url):
        """Send one request to the given url and return the response."""
        return os.path.join(url, "x")

    def _private(self):
        """Hidden helper that should not become a query."""
        return None

    def inline(self): "Inline docstring sharing the line with the def."; return 1


def short():
    """Too short."""
    return 2


def outer():
    """Make an inner function and return it to the caller."""

    def inner():
        """Nested functions never become queries on their own."""
        return 3

    return inner
'''


def test_strip_docstrings_keeps_code_and_maps_def_lines():
    text, new_of, funcs = strip_docstrings(MODULE)
    assert '"""' not in text and "Parse an HTTP date" not in text and "Inline docstring" not in text
    assert "def inline(self): \"\"; return 1" in text  # a docstring sharing its line becomes ""
    lines = text.splitlines()
    assert [q for q, _, _ in funcs] == ["parse_http_date", "Client.send_request", "Client.inline", "short", "outer"]
    for q, line, _ in funcs:
        assert lines[line - 1].lstrip().startswith(f"def {q.split('.')[-1]}("), q
    assert new_of[8] == 5  # `def parse_http_date` moved up by the 3 module-docstring lines
    assert strip_docstrings("def broken(:\n") is None


def test_first_sentence_and_rank_metrics_numbers():
    assert first_sentence("Parse an HTTP date string into a timestamp.\n\n    More text.") == "Parse an HTTP date string into a timestamp."
    assert first_sentence("  Return the\n  value   of x!  Then more.") == "Return the value of x!"
    assert first_sentence("No full stop here") == "No full stop here"
    m = rank_metrics([1, 3, None, 11])
    assert m == {"mrr_at_10": pytest.approx((1 + 1 / 3) / 4), "recall_at_1": 0.25, "recall_at_10": 0.5}
    from ejc.eval.search import BenchQuery

    q = BenchQuery("a.py", "f", 12, "text", "test")
    assert first_answer([("b.py", 1, 20), ("a.py", 1, 11), ("a.py", 10, 29)], q) == 3
    assert first_answer([("a.py", 13, 30)], q) is None


def test_benchmark_on_a_tiny_package(tmp_path):
    src = tmp_path / "tinypkg"
    (src / "_internal").mkdir(parents=True)
    (src / "__init__.py").write_text('"""Tiny package."""\n')
    (src / "core.py").write_text(MODULE)
    (src / "extra.py").write_text(MODULE.replace("parse_http_date", "decode_base64_token").replace("Parse an HTTP date string into a timestamp", "Decode a base64 token into raw bytes")
                                  .replace("Send one request", "Send many requests").replace("Make an inner function", "Build a nested helper")
                                  .replace("Inline docstring", "Another inline docstring"))
    (src / "_internal" / "hidden.py").write_text(MODULE)
    bench = build_benchmark(src, tmp_path / "work", "tinypkg", None, val_fraction=0.4)
    st = bench.stats
    assert st["files"] == 4 and st["skipped_private_module"] == 5 and st["skipped_short_docstring"] == 2
    assert st["queries"] == 8 == st["validation"] + st["test"]  # 4 per public module: parse/decode, send, inline, outer
    assert st["skipped_repeated_text"] == 0
    assert [q.split for q in bench.queries] == [_split_of(f"{q.path}:{q.qualname}", 0.4) for q in bench.queries]  # by a hash of path:qualname
    assert sorted((q.path, q.qualname) for q in bench.queries)[:2] == [("core.py", "Client.inline"), ("core.py", "Client.send_request")]
    stripped = (bench.root / "core.py").read_text()
    for q in bench.queries:
        assert q.text not in (bench.root / q.path).read_text()  # the answer cannot be found by copying
    assert "def parse_http_date(value):" in stripped

    metrics, seconds, details = run_search_benchmark(bench, tmp_path / "work", IndexSettings(include=["*.py"]), embedder=HashEmbedder())
    assert list(metrics) == ["ejc", "dense", "bm25", "keyword_overlap"]
    for vals in metrics.values():
        assert set(vals) == {"mrr_at_10", "recall_at_1", "recall_at_10"} and 0.0 <= vals["recall_at_1"] <= vals["recall_at_10"] <= 1.0
    assert details["index"]["files"] == 3 and details["index"]["skipped"] == {"empty": 1} and seconds > 0  # __init__.py held only its docstring
    assert details["validation"]["best_fusion"] in details["validation"]["fusion_sweep"] and len(details["validation"]["fusion_sweep"]) == 43
    assert details["fusion"] == "convex(w=0.6)" and set(details["latency_ms"]) == {"ejc", "dense", "bm25"}
