"""Snippet search (issue 18): quality on installed packages' sources, index speed, query latency.

Quality (``quality``): ``ejc evaluate search PACKAGE`` for each package (the product path: the
docstring-free copy is indexed by ``build_index`` and queried by ``SearchIndex.query``), once per
``--max-tokens`` value. ``--phase validation`` prints only validation figures: dense / BM25 /
the shipped hybrid and the fusion sweep, averaged over the packages (each package weighs the
same) — what the shipped settings were chosen on. ``--phase test`` prints the test table of the
shipped settings (run it after the choice is made).

Speed (``speed``): a ~100,000-line tree made of copies of installed packages (click, flask,
requests, rich, werkzeug, jinja2), indexed from scratch with ``ejc search index`` (a subprocess:
its wall time includes Python start and model load), then one file changed and indexed again
(wall time of the command and the library's own seconds), then the same change seen by a running
``ejc search index --watch 0.2`` (the model loaded: from the write to the new version's JSON
line), then query p50/p95 latency with the
index and model loaded (the query embedded each time: no query repeats), and peak RSS.

Writes benchmarks/out/search/*.json.

    python benchmarks/search_quality.py quality --phase validation --packages click flask requests rich
    python benchmarks/search_quality.py quality --phase test --packages click flask requests rich
    python benchmarks/search_quality.py speed
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

OUT = HERE / "out" / "search"
CACHE = OUT / "text_cache"
SPEED_PACKAGES = ("click", "flask", "requests", "rich", "werkzeug", "jinja2")


def _evaluate(package: str, max_tokens: int | None, sweep: bool = True) -> dict:
    from ejc.eval.cli import evaluate_from_argv

    tag = f"{package}_t{max_tokens or 'default'}"
    argv = ["search", package, "--out", str(OUT / f"{tag}.json"), "--work", str(OUT / f"{tag}.search"), "--text-cache", str(CACHE)]
    if max_tokens is not None:
        argv += ["--max-tokens", str(max_tokens)]
    if not sweep:
        argv.append("--no-sweep")
    result = evaluate_from_argv(argv)
    (OUT / f"{tag}.json").write_text(json.dumps(result, indent=2))
    return result


def quality(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tokens = args.max_tokens or [None]
    for t in tokens:
        results = [_evaluate(p, t, sweep=args.phase == "validation") for p in args.packages]
        versions = ", ".join(r["dataset"] for r in results)
        if args.phase == "validation":
            rows: dict[str, list[float]] = {}
            for r in results:
                v = r["details"]["validation"]
                for m in ("dense", "bm25", "keyword_overlap"):
                    rows.setdefault(m, []).append(v["metrics"][m]["mrr_at_10"])
                for name, vals in v["fusion_sweep"].items():
                    rows.setdefault(name, []).append(vals["mrr_at_10"])
            n_val = [r["details"]["benchmark"]["validation"] for r in results]
            print(f"\nmax_tokens={t or 'default'}; validation MRR@10 per package ({versions}; {n_val} queries) and mean")
            for name, vals in sorted(rows.items(), key=lambda kv: -np.mean(kv[1])):
                print(f"| {name} | " + " | ".join(f"{x:.4f}" for x in vals) + f" | {np.mean(vals):.4f} |")
        else:
            print(f"\nmax_tokens={t or 'default'}; TEST queries ({versions})")
            print("| package | queries (val/test) | snippets | method | MRR@10 | recall@1 | recall@10 |")
            for r in results:
                d = r["details"]
                for m, vals in r["metrics"].items():
                    print(f"| {r['dataset']} | {d['benchmark']['validation']}/{d['benchmark']['test']} | {d['index']['snippets']} | {m} | "
                          f"{vals['mrr_at_10']:.4f} | {vals['recall_at_1']:.4f} | {vals['recall_at_10']:.4f} |")
            for m in results[0]["metrics"]:
                print(f"| mean | | | {m} | " + " | ".join(f"{np.mean([r['metrics'][m][k] for r in results]):.4f}" for k in ("mrr_at_10", "recall_at_1", "recall_at_10")) + " |")
            best_single = np.mean([max(r["metrics"]["dense"]["mrr_at_10"], r["metrics"]["bm25"]["mrr_at_10"]) for r in results])
            print(f"hybrid - better of dense/BM25 (MRR@10, mean over packages): {np.mean([r['metrics']['ejc']['mrr_at_10'] for r in results]) - best_single:+.4f}")
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {results[0]['machine']}")


def _make_tree(dest: Path) -> int:
    import importlib.util

    if dest.exists():
        shutil.rmtree(dest)
    lines = 0
    for name in SPEED_PACKAGES:
        src = Path(list(importlib.util.find_spec(name).submodule_search_locations)[0])
        shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
    for f in dest.rglob("*"):
        if f.is_file():
            try:
                lines += len(f.read_text(encoding="utf-8").splitlines())
            except (UnicodeDecodeError, OSError):
                pass
    return lines


def _cli(argv: list[str]) -> tuple[dict, float, int]:
    t = time.perf_counter()
    code = ("import resource, sys; from ejc.cli import main; rc = main(sys.argv[1:]); "
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"ejc {' '.join(argv)} failed:\n{p.stderr[-3000:]}")
    rss = int(next(ln.split()[1] for ln in p.stderr.splitlines() if ln.startswith("PEAK_RSS_KB")))
    return json.loads(p.stdout.strip().splitlines()[-1]), wall, rss


def _watch(base: list[str], target: Path, changes: int) -> dict:
    """``ejc search index ... --watch 0.2`` running; ``changes`` times: append a function to
    ``target`` and time until the watcher prints the summary of the version it published."""
    import signal

    code = "import sys; from ejc.cli import main; sys.exit(main(sys.argv[1:]))"
    err = open(OUT / "watch.stderr", "w")
    p = subprocess.Popen([sys.executable, "-c", code, *base, "--watch", "0.2"], stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
    try:
        json.loads(p.stdout.readline())  # the first build (nothing changed) and the model loaded
        latency, build = [], []
        for i in range(changes):
            t = time.perf_counter()
            target.write_text(target.read_text() + f"\n\ndef watched_change_{i}(x):\n    return x * {i}\n")
            line = p.stdout.readline()
            latency.append(time.perf_counter() - t)
            s = json.loads(line)
            assert s["files_indexed"] == 1, s
            build.append(s["seconds"])
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
        err.close()
    return {"interval_s": 0.2, "latency_s": latency, "build_s": build, "exit_code": p.returncode}


def speed(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tree, index = OUT / "tree", OUT / "tree.index"
    lines = _make_tree(tree)
    if index.exists():
        shutil.rmtree(index)
    base = ["search", "index", str(tree), "--out", str(index), "--no-progress"] + (["--max-tokens", str(args.max_tokens)] if args.max_tokens else [])
    full, full_wall, full_rss = _cli(base)
    print(f"tree: {lines} lines, {full['files']} files, {full['snippets']} snippets; full index {full_wall:.1f} s wall "
          f"({full['seconds']:.1f} s in build_index, {full['snippets_per_s']} snippets/s embedding), peak RSS {full_rss / 1024:.0f} MiB", flush=True)
    target = tree / "click" / "utils.py"
    target.write_text(target.read_text() + "\n\ndef added_for_the_benchmark(x):\n    return x + 1\n")
    inc, inc_wall, inc_rss = _cli(base)
    print(f"re-index after one changed file: {inc_wall:.2f} s wall, {inc['seconds']:.2f} s in build_index "
          f"({inc['files_indexed']} file re-cut, {inc['snippets_embedded']} snippets embedded; stages {inc['seconds_by_stage']}), peak RSS {inc_rss / 1024:.0f} MiB", flush=True)
    same, same_wall, _ = _cli(base)
    print(f"re-index with nothing changed: {same_wall:.2f} s wall, {same['seconds']:.2f} s in build_index ({same['snippets_embedded']} embedded)", flush=True)
    watch = _watch(base, target, args.watch_changes)
    print(f"ejc search index --watch 0.2, one file changed (x{len(watch['latency_s'])}): from the write to the JSON line of the "
          f"published version p50 {np.median(watch['latency_s']):.2f} s, max {max(watch['latency_s']):.2f} s "
          f"(build {np.median(watch['build_s']):.2f} s p50)", flush=True)

    from ejc.eval.search import build_benchmark, package_dir
    from ejc.search.query import SearchIndex

    src, ver = package_dir("flask")
    queries = [q.text for q in build_benchmark(src, OUT / "speed_queries", "flask", ver).queries][: args.queries]
    t = time.perf_counter()
    ix = SearchIndex.load(index)
    load_s = time.perf_counter() - t
    ix.query("warm up", k=10)
    lat: dict[str, list[float]] = {}
    for mode in ("hybrid", "dense", "lexical"):
        for i, q in enumerate(queries):
            text = f"{q} ({mode} {i})"  # never the same text twice: the query embedding is not cached
            t = time.perf_counter()
            ix.query(text, k=10, mode=mode)
            lat.setdefault(mode, []).append((time.perf_counter() - t) * 1e3)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "machine": f"{platform.machine()} {platform.processor()}",
        "tree_lines": lines,
        "full": {**full, "wall_s": full_wall, "peak_rss_mib": full_rss / 1024},
        "one_file_changed": {**inc, "wall_s": inc_wall, "peak_rss_mib": inc_rss / 1024},
        "nothing_changed": {**same, "wall_s": same_wall},
        "watch_one_file_changed": watch,
        "load_s": load_s,
        "query_ms": {m: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": len(v)} for m, v in lat.items()},
        "query_process_peak_rss_mib": rss,
    }
    (OUT / "speed.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"index load {load_s:.2f} s; query latency (ms, index and model loaded, query embedded each time): "
          + ", ".join(f"{m} p50 {v['p50']:.1f} / p95 {v['p95']:.1f}" for m, v in out["query_ms"].items()) + f"; peak RSS {rss:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--packages", nargs="+", default=["click", "flask", "requests", "rich"])
    q.add_argument("--max-tokens", nargs="+", type=int, default=None, help="embedder word pieces per snippet to compare (default: the shipped value)")
    q.add_argument("--phase", choices=("validation", "test"), default="validation")
    q.set_defaults(fn=quality)
    s = sub.add_parser("speed")
    s.add_argument("--max-tokens", type=int, default=None)
    s.add_argument("--queries", type=int, default=100)
    s.add_argument("--watch-changes", type=int, default=5, help="file changes timed through `ejc search index --watch`")
    s.set_defaults(fn=speed)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
