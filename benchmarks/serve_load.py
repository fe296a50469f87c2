"""Load test of the Serve app over loopback HTTP: latency percentiles, requests/s, errors.

Phases, each ``--clients`` concurrent clients (every client sends its next request when the
previous one answers) for ``--duration`` seconds after ``--warmup`` seconds, at most
``--max-requests`` requests per phase:

1. ``POST /v1/predict`` with batching on (``max_batch_size=--batch-size``),
2. the same with batching off (``max_batch_size=1``), switched in place through the
   EventModel's user_config (the app is not restarted),
3. ``POST /v1/similar`` by entity id (half of them with a category filter).

The model is the quickstart's preset (``small``) trained for a few steps on the quickstart's
kind of synthetic log; a predict request is one 64-event sequence (vectors included, ~30 KB of
JSON) and asks for the next event. The cube holds ``--entities`` synthetic entities in two
spaces. Everything listens on 127.0.0.1 only. Writes ``benchmarks/out/serve_load.json``.

    .venv/bin/python benchmarks/serve_load.py                          # 3 x 60 s
    python benchmarks/serve_load.py --duration 5 --warmup 1            # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_assets(work: Path, entities: int, train_steps: int, seed: int = 0) -> dict:
    """A quickstart-like model and a cube under ``work``; returns paths and request bodies."""
    from ejc import EmbeddingCube
    from ejc.config import load_config
    from ejc.cube.entity import entities_from_table
    from ejc.data.sequence import sequences_from_table
    from ejc.data.synth import generate
    from ejc.data.synth_cube import generate_cube
    from ejc.train.loop import pretrain

    table, _ = generate(num_entities=64, seed=seed)
    run = work / "model"
    pretrain(load_config("small", [f"train.steps={train_steps}", f"train.checkpoint_every={train_steps}"]), table, run, progress=False, resume=False)
    seqs = list(sequences_from_table(table))
    bodies = []
    for s in seqs[:32]:
        w = s[:64]
        events = [
            {"timestamp": float(w.timestamps[i]), "event_type": str(w.event_types[i]), "modality": str(w.modalities[i]), **({"embedding": w.vector_at(i).tolist()} if w.has_vector[i] else {})}
            for i in range(len(w))
        ]
        bodies.append(json.dumps({"sequence": {"id": s.id, "events": events}, "num_steps": 1}))
    ents, sessions, _ = generate_cube(entities, seed=seed)
    cube = EmbeddingCube()
    cube.add_entities(entities_from_table(ents))
    cube.add_cooccurrence(sessions)
    cube.save(work / "cube")
    rng = np.random.default_rng(seed)
    ids = cube.ids()
    sim = []
    for i in range(256):
        eid = ids[int(rng.integers(len(ids)))]
        q = {"entity_id": eid, "modality": "text" if i % 2 else "image", "k": 10}
        if i % 4 < 2:
            q["filter"] = {"category": cube.get_entity(eid).hierarchy_info["category"]}
        sim.append(json.dumps(q))
    return {"model": str(run), "cube": str(work / "cube"), "predict": bodies, "similar": sim}


async def _phase(url: str, bodies: list[str], clients: int, warmup: float, duration: float, max_requests: int, headers: dict) -> dict:
    import aiohttp

    lat: list[float] = []
    errors: list[str] = []
    counted = 0
    t_start = time.perf_counter()
    t_measure = t_start + warmup
    t_end = t_measure + duration

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal counted
        k = i
        while True:
            now = time.perf_counter()
            if now >= t_end or counted >= max_requests:
                return
            body = bodies[k % len(bodies)]
            k += clients
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    ok = r.status == 200
                    err = None if ok else f"HTTP {r.status}"
            except Exception as e:  # connection errors count, they are what we look for
                ok, err = False, repr(e)
            t1 = time.perf_counter()
            if t0 >= t_measure and t1 <= t_end:
                counted += 1
                lat.append(t1 - t0)
                if not ok:
                    errors.append(err)
            elif not ok:
                errors.append(err)

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    elapsed = min(time.perf_counter(), t_end) - t_measure
    a = np.asarray(lat) * 1000
    return {
        "requests": len(lat),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(lat) / elapsed, 2) if elapsed > 0 else 0.0,
        "p50_ms": round(float(np.percentile(a, 50)), 1) if len(a) else None,
        "p99_ms": round(float(np.percentile(a, 99)), 1) if len(a) else None,
        "mean_ms": round(float(a.mean()), 1) if len(a) else None,
    }


def model_only(model_dir: str, bodies: list[str], batch_size: int, repeats: int = 3) -> dict:
    """In-process predict time per sequence, one at a time vs one batch, on one thread (as in a
    1-CPU replica): how much batching can save in the model itself, without HTTP around it."""
    import torch

    from ejc.infer.event_jepa import EventJEPA
    from serve.schemas import PredictRequest, to_sequence

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = EventJEPA.from_pretrained(model_dir)
        seqs = [to_sequence(PredictRequest.model_validate_json(b).sequence, m.spec.modality_dims, m.spec.modalities) for b in bodies[:batch_size]]
        m.predict_next_batch(seqs[:2])  # warm up
        single = batched = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for s in seqs:
                m.predict_next(s)
            single = min(single, (time.perf_counter() - t) / len(seqs))
            t = time.perf_counter()
            m.predict_next_batch(seqs)
            batched = min(batched, (time.perf_counter() - t) / len(seqs))
    finally:
        torch.set_num_threads(threads)
    return {"sequences": len(seqs), "single_ms_per_seq": round(single * 1000, 2), "batched_ms_per_seq": round(batched * 1000, 2), "ratio": round(single / batched, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds before each phase")
    p.add_argument("--max-requests", type=int, default=200_000, help="cap per phase")
    p.add_argument("--batch-size", type=int, default=16, help="max_batch_size with batching on")
    p.add_argument("--batch-wait-s", type=float, default=0.005)
    p.add_argument("--entities", type=int, default=2000, help="cube size")
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "serve_load.json")
    args = p.parse_args(argv)

    import ray

    from serve.app import deploy, deploy_config

    work = Path(tempfile.mkdtemp(prefix="ejc-serve-load-"))
    t = time.time()
    assets = build_assets(work, args.entities, args.train_steps)
    print(f"assets in {time.time() - t:.1f}s: model {assets['model']}, cube {args.entities} entities", flush=True)
    in_process = model_only(assets["model"], assets["predict"], args.batch_size)
    print(f"model only (1 thread): {in_process}", flush=True)
    key = "bench-key"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    app_args = {"model": assets["model"], "cube": assets["cube"], "api_keys": [key], "max_batch_size": args.batch_size, "batch_wait_timeout_s": args.batch_wait_s}
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results: dict = {}
    try:
        t = time.time()
        client = deploy(deploy_config(app_args, host="127.0.0.1", port=port))
        print(f"serving at {base} after {time.time() - t:.1f}s", flush=True)
        model_cfg = {"model": assets["model"], "max_batch_size": args.batch_size, "batch_wait_timeout_s": args.batch_wait_s}
        phases = [
            ("predict_batched", "/v1/predict", assets["predict"], model_cfg),
            ("predict_unbatched", "/v1/predict", assets["predict"], {**model_cfg, "max_batch_size": 1}),
            ("similar", "/v1/similar", assets["similar"], None),
        ]
        for name, route, bodies, user_config in phases:
            if user_config is not None:
                client.deploy_apps(deploy_config(app_args, {"EventModel": user_config}, host="127.0.0.1", port=port), _blocking=True)
                time.sleep(1.0)  # reconfigure is applied right after the deploy returns
            r = asyncio.run(_phase(base + route, bodies, args.clients, args.warmup, args.duration, args.max_requests, headers))
            r["route"] = route
            if user_config is not None:
                r["max_batch_size"] = user_config["max_batch_size"]
            results[name] = r
            print(f"{name:18s} {r['requests']:7d} req  {r['errors']} errors  {r['requests_per_s']:8.1f} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms", flush=True)
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    on, off = results["predict_batched"], results["predict_unbatched"]
    summary = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "phases": results,
        "model_only": in_process,
        "batching_throughput_ratio": round(on["requests_per_s"] / off["requests_per_s"], 2) if off["requests_per_s"] else None,
        "batching_p50_ratio": round(off["p50_ms"] / on["p50_ms"], 2) if on["p50_ms"] else None,
        "total_errors": sum(r["errors"] for r in results.values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("batching_throughput_ratio", "batching_p50_ratio", "total_errors")}))
    return 0 if summary["total_errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
