"""Inference (and training-step) throughput of the event encoder through the facade (issue 20).

What is timed is what users call: ``EventJEPA.process`` (one sequence), ``embed_sequences``
(batches) and ``predict_next_batch`` (one next event per prefix), on a randomly initialised
model of each preset (throughput does not depend on the weights) over event sequences with
timestamps, a 32-d vector and one of 50 event types per event.

Parts (each a list of rows in the JSON):

- ``process``: events/s of ``process`` over lengths 128 ... 65,536, per preset and precision.
- ``embed``: events/s of ``embed_sequences`` for batch sizes 1 ... 256 (``batch * length`` capped
  by ``--max-batch-events``).
- ``predict``: prefixes/s of ``predict_next_batch(num_steps=1)`` for batch sizes 1 ... 256,
  prefixes of ``train.max_len`` events.
- ``variants``: the same call under each candidate speed-up against the plain path, in the same
  run, with the largest relative difference of the outputs: ``legacy`` (the encoder before
  issue 20: rolled windows, 5-D attention input, whole-sequence blocks, ``no_grad``), ``fused``
  (4-D attention input, whole-sequence blocks), ``shipped`` (fused + window-aligned chunks +
  ``inference_mode``: what ``process`` runs now), ``threads=N``, ``bf16`` (autocast, the facade's
  ``precision="bf16"``) and ``compile`` (``torch.compile`` of the encoder; compile time reported).
- ``train``: optimiser steps/s and events/s of ``Trainer.step`` (the ``ejc pretrain`` step:
  bf16 autocast on CUDA), FLOPs per step counted by ``torch.utils.flop_counter`` and, with
  ``--peak-tflops``, model FLOPs utilisation.

Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU, the largest RSS above
the RSS before the call, sampled every 2 ms.

    python benchmarks/inference_throughput.py                       # CPU, all parts
    python benchmarks/inference_throughput.py --device cuda --precisions fp32 bf16 --peak-tflops 989
    python benchmarks/inference_throughput.py --quick               # a few points (CI-sized)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ejc.config import load_config  # noqa: E402
from ejc.data.sequence import EventSequence  # noqa: E402
from ejc.infer.event_jepa import EventJEPA  # noqa: E402
from ejc.model import attention as attention_mod  # noqa: E402
from ejc.train.data import DataSpec  # noqa: E402

DIM = 32
TYPES = 50
LENGTHS = (128, 512, 2048, 8192, 32768, 65536)
BATCHES = (1, 4, 16, 64, 256)


_SEQ_CACHE: dict[tuple[int, int, int], list[EventSequence]] = {}


def make_sequences(count: int, length: int, seed: int = 0) -> list[EventSequence]:
    key = (count, length, seed)
    if key not in _SEQ_CACHE:
        if sum(c * n for c, n, _ in _SEQ_CACHE) + count * length > 2**23:
            _SEQ_CACHE.clear()
        _SEQ_CACHE[key] = _make_sequences(count, length, seed)
    return _SEQ_CACHE[key]


def _make_sequences(count: int, length: int, seed: int) -> list[EventSequence]:
    rng = np.random.default_rng(seed)
    names = [f"t{i}" for i in range(TYPES)]
    out = []
    for i in range(count):
        out.append(EventSequence(
            embeddings=rng.standard_normal((length, DIM)).astype(np.float32),
            timestamps=1.7e9 + np.cumsum(rng.exponential(60.0, length)),
            event_types=[names[j] for j in rng.integers(0, TYPES, length)],
            id=f"s{i}",
        ))
    return out


def make_model(preset: str, device: str, precision: str = "fp32", seed: int = 0) -> EventJEPA:
    cfg = load_config(preset)
    spec = DataSpec.from_sequences(make_sequences(1, 4 * TYPES, seed=99), cfg.model.max_types)
    torch.manual_seed(seed)
    return EventJEPA(config=cfg, device=device, precision=precision, _spec=spec)


# -- timing -----------------------------------------------------------------------------------
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def peak_memory(device: str) -> Iterator[dict[str, float]]:
    """``{"peak_mib": ...}`` filled on exit: CUDA allocator peak, or sampled RSS above the start."""
    box: dict[str, float] = {}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        yield box
        box["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        yield box
    finally:
        stop.set()
        th.join()
        box["peak_mib"] = (peak[0] - base) / 2**20


def timed(fn: Callable[[], Any], device: str, min_seconds: float, min_reps: int = 2, max_reps: int = 50) -> tuple[float, Any, float]:
    """``(seconds per call, last output, peak MiB)`` after one warm-up call."""
    fn()
    _sync(device)
    reps, total, out = 0, 0.0, None
    with peak_memory(device) as mem:
        while (reps < min_reps and total < 5 * min_seconds) or reps < 1 or (total < min_seconds and reps < max_reps):
            t = time.perf_counter()
            out = fn()
            _sync(device)
            total += time.perf_counter() - t
            reps += 1
    return total / reps, out, mem["peak_mib"]


# -- the encoder before issue 20, for the "legacy" variant -----------------------------------------
def _legacy_attention_forward(self, x: torch.Tensor, valid: torch.Tensor, causal: bool = False, layout: Any = None) -> torch.Tensor:  # noqa: ANN001
    b, L, d = x.shape
    w = L if self.window is None or self.window >= L else self.window
    pad = (-L) % w
    pos = torch.arange(L + pad, device=x.device)
    okk = F.pad(valid, (0, pad), value=False)
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    s = w // 2 if (self.shift and w < L + pad) else 0
    if s:
        x, pos, okk = torch.roll(x, -s, 1), torch.roll(pos, -s, 0), torch.roll(okk, -s, 1)
    Lp = L + pad
    nw = Lp // w
    qkv = self.qkv(x).view(b, nw, w, 3, self.h, d // self.h).permute(3, 0, 1, 4, 2, 5)
    q, k, v = qkv[0], qkv[1], qkv[2]
    pw = pos.view(nw, w)
    allowed = (pw[:, :, None] - pw[:, None, :]).abs() < w
    if causal:
        allowed = allowed & (pw[:, None, :] <= pw[:, :, None])
    mask = allowed[None] & okk.view(b, nw, 1, w)
    mask = mask | torch.eye(w, dtype=torch.bool, device=x.device)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, :, None])
    out = out.permute(0, 1, 3, 2, 4).reshape(b, Lp, d)
    if s:
        out = torch.roll(out, s, 1)
    return self.proj(out[:, :L])


def _fused_unchunked_block(self, x: torch.Tensor, valid: torch.Tensor, causal: bool = False) -> torch.Tensor:  # noqa: ANN001
    return self._forward(x, valid, causal, None)


@contextmanager
def variant_patch(name: str) -> Iterator[None]:
    A = attention_mod
    saved = (A.Attention.forward, A.Block.forward)
    try:
        if name == "legacy":
            A.Attention.forward = _legacy_attention_forward
            A.Block.forward = _fused_unchunked_block
        elif name == "fused":
            A.Block.forward = _fused_unchunked_block
        yield
    finally:
        A.Attention.forward, A.Block.forward = saved


def _process_no_grad(model: EventJEPA, seq: EventSequence) -> np.ndarray:
    """``process`` as it was before issue 20 (``no_grad``), returning the per-event states."""
    with torch.no_grad(), model._amp():
        out = model.model.encode(model._tensors([seq]))
    return out.events[0, : len(seq)].float().cpu().numpy()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# -- parts ------------------------------------------------------------------------------------
def run_process(presets: list[str], lengths: list[int], precisions: list[str], device: str, min_s: float, log: Callable[[str], None]) -> list[dict]:
    rows = []
    for preset in presets:
        for prec in precisions:
            model = make_model(preset, device, prec)
            for n in lengths:
                seq = make_sequences(1, n)[0]
                sec, _, mem = timed(lambda: model.process(seq), device, min_s)
                rows.append({"preset": preset, "precision": prec, "length": n, "seconds": sec, "events_per_s": n / sec, "peak_mib": mem})
                log(f"process  {preset:5s} {prec} n={n:6d}: {n / sec:12,.0f} events/s  ({sec * 1e3:8.1f} ms, +{mem:,.0f} MiB)")
            del model
    return rows


def run_embed(presets: list[str], lengths: list[int], batches: list[int], precisions: list[str], device: str, max_events: int, min_s: float, log: Callable[[str], None]) -> list[dict]:
    rows = []
    for preset in presets:
        for prec in precisions:
            model = make_model(preset, device, prec)
            for n in lengths:
                for b in batches:
                    if b * n > max_events:
                        continue
                    seqs = make_sequences(b, n)
                    sec, _, mem = timed(lambda: model.embed_sequences(seqs, batch_size=b), device, min_s)
                    bt = model._tensors(seqs)  # the same batch, collated and on the device once

                    def encoder_only() -> None:
                        with torch.inference_mode(), model._amp():
                            model.model.encode(bt)

                    enc_sec, _, _ = timed(encoder_only, device, min_s)
                    del bt
                    rows.append({"preset": preset, "precision": prec, "length": n, "batch": b, "seconds": sec, "events_per_s": b * n / sec, "peak_mib": mem,
                                 "encoder_only_events_per_s": b * n / enc_sec})
                    log(f"embed    {preset:5s} {prec} n={n:6d} b={b:3d}: {b * n / sec:12,.0f} events/s  (+{mem:,.0f} MiB); encoder alone {b * n / enc_sec:14,.0f}")
            del model
    return rows


def run_predict(presets: list[str], batches: list[int], precisions: list[str], device: str, min_s: float, log: Callable[[str], None]) -> list[dict]:
    rows = []
    for preset in presets:
        for prec in precisions:
            model = make_model(preset, device, prec)
            n = model.config.train.max_len
            for b in batches:
                seqs = make_sequences(b, n, seed=b)
                sec, _, mem = timed(lambda: model.predict_next_batch(seqs, num_steps=1), device, min_s)
                rows.append({"preset": preset, "precision": prec, "prefix_len": n, "batch": b, "seconds": sec, "prefixes_per_s": b / sec, "peak_mib": mem})
                log(f"predict  {preset:5s} {prec} prefix={n} b={b:3d}: {b / sec:10,.1f} prefixes/s")
            del model
    return rows


def run_variants(presets: list[str], length: int, device: str, min_s: float, compile_: bool, log: Callable[[str], None]) -> list[dict]:
    rows = []
    seq = make_sequences(1, length)[0]
    threads0 = torch.get_num_threads()
    for preset in presets:
        ref = None
        cases: list[tuple[str, Callable[[], Any]]] = []
        fp32 = make_model(preset, device, "fp32")
        bf16 = make_model(preset, device, "bf16")
        cases.append(("legacy", lambda: _process_no_grad(fp32, seq)))
        cases.append(("fused", lambda: _process_no_grad(fp32, seq)))
        cases.append(("shipped", lambda: fp32.process(seq).events))
        if device == "cpu":
            for t in sorted({1, threads0}):
                cases.append((f"threads={t}", lambda: fp32.process(seq).events))
        cases.append(("bf16", lambda: bf16.process(seq).events))
        for name, fn in cases:
            if name.startswith("threads="):
                torch.set_num_threads(int(name.split("=")[1]))
            try:
                with variant_patch(name):
                    sec, out, mem = timed(fn, device, min_s)
            finally:
                torch.set_num_threads(threads0)
            if ref is None:
                ref = out
            row = {"preset": preset, "length": length, "variant": name, "seconds": sec, "events_per_s": length / sec, "peak_mib": mem, "max_rel_diff_vs_legacy": _rel(out, ref)}
            rows.append(row)
            log(f"variant  {preset:5s} n={length} {name:10s}: {length / sec:12,.0f} events/s  rel diff {row['max_rel_diff_vs_legacy']:.1e}")
        if compile_:
            try:
                t0 = time.perf_counter()
                enc = fp32.model.context if fp32.config.model.readout == "context" else fp32.model.target
                compiled = torch.compile(enc, dynamic=False)
                with torch.inference_mode():
                    bt = fp32._tensors([seq])
                    compiled(bt)
                    _sync(device)
                compile_s = time.perf_counter() - t0

                def run_compiled() -> np.ndarray:
                    with torch.inference_mode():
                        return compiled(fp32._tensors([seq])).events[0, :length].float().cpu().numpy()

                sec, out, mem = timed(run_compiled, device, min_s)
                row = {"preset": preset, "length": length, "variant": "compile", "seconds": sec, "events_per_s": length / sec, "peak_mib": mem, "max_rel_diff_vs_legacy": _rel(out, ref), "compile_seconds": compile_s}
                log(f"variant  {preset:5s} n={length} compile   : {length / sec:12,.0f} events/s  rel diff {row['max_rel_diff_vs_legacy']:.1e} (compile {compile_s:.0f} s)")
            except Exception as e:  # noqa: BLE001 - a compile failure is a finding, reported
                row = {"preset": preset, "length": length, "variant": "compile", "error": f"{type(e).__name__}: {str(e)[:300]}"}
                log(f"variant  {preset:5s} compile failed: {row['error']}")
            rows.append(row)
        del fp32, bf16
    return rows


def run_train(presets: list[str], device: str, batch: int, steps: int, peak_tflops: float | None, log: Callable[[str], None]) -> list[dict]:
    from torch.utils.flop_counter import FlopCounterMode

    from ejc.train.loop import Trainer

    rows = []
    for preset in presets:
        cfg = load_config(preset, [f"train.batch_size={batch}"])
        n = cfg.train.max_len
        windows = make_sequences(batch * 2, n, seed=7)
        spec = DataSpec.from_sequences(windows, cfg.model.max_types)
        tr = Trainer(cfg, spec, windows, device)
        tr.step()  # warm-up
        with FlopCounterMode(display=False) as fc:
            tr.step()
        flops = float(fc.get_total_flops())
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            tr.step()
        _sync(device)
        sec = (time.perf_counter() - t) / steps
        row = {"preset": preset, "batch": batch, "window": n, "step_seconds": sec, "steps_per_s": 1 / sec, "events_per_s": batch * n / sec,
               "flops_per_step": flops, "achieved_tflops": flops / sec / 1e12, "autocast_bf16": device.startswith("cuda")}
        if peak_tflops:
            row["mfu"] = row["achieved_tflops"] / peak_tflops
            row["peak_tflops_assumed"] = peak_tflops
        rows.append(row)
        log(f"train    {preset:5s} b={batch} window={n}: {1 / sec:8.2f} steps/s, {batch * n / sec:12,.0f} events/s, {row['achieved_tflops']:.3f} TFLOP/s" + (f", MFU {row['mfu']:.2%}" if peak_tflops else ""))
        del tr
    return rows


def machine(device: str) -> dict[str, Any]:
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return info


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    ap.add_argument("--precisions", nargs="+", default=None, help="default: fp32 on CPU, fp32 and bf16 on CUDA")
    ap.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    ap.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    ap.add_argument("--max-batch-events", type=int, default=None, help="cap on batch * length for embed (default 2**19 CPU, 2**22 CUDA)")
    ap.add_argument("--variant-length", type=int, default=65536)
    ap.add_argument("--parts", nargs="+", default=["process", "embed", "predict", "variants", "train"])
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--train-batch", type=int, default=None, help="default 32 CPU, 256 CUDA")
    ap.add_argument("--train-steps", type=int, default=None, help="timed steps (default 5 CPU, 30 CUDA)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak for MFU (H100/H200 dense bf16: 989)")
    ap.add_argument("--min-seconds", type=float, default=None, help="time each point for at least this long (default 0.5 CPU, 0.2 CUDA)")
    ap.add_argument("--quick", action="store_true", help="a few points: small preset, lengths 2048 and 65536, batches 1 and 16")
    ap.add_argument("--out", default=str(HERE / "out" / "inference_throughput.json"))
    a = ap.parse_args(argv)
    cuda = a.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: torch {torch.__version__} sees no CUDA device")
    if a.quick:
        a.presets, a.lengths, a.batches = ["small"], [2048, 65536], [1, 16]
        a.train_steps = a.train_steps or 2
    precisions = a.precisions or (["fp32", "bf16"] if cuda else ["fp32"])
    max_events = a.max_batch_events or (2**22 if cuda else 2**19)
    min_s = a.min_seconds if a.min_seconds is not None else (0.2 if cuda else 0.5)

    def log(msg: str) -> None:
        print(msg, flush=True)

    result: dict[str, Any] = {"machine": machine(a.device), "settings": {"presets": a.presets, "precisions": precisions, "lengths": a.lengths, "batches": a.batches, "max_batch_events": max_events, "dim": DIM, "types": TYPES}}
    log(json.dumps(result["machine"]))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every part: a later timeout keeps what was measured
        out.write_text(json.dumps(result, indent=2))

    if "variants" in a.parts:
        result["variants"] = run_variants([p for p in a.presets if p in ("small", "base")] or a.presets, a.variant_length, a.device, min_s, not a.no_compile, log)
        save()
    if "process" in a.parts:
        result["process"] = run_process(a.presets, a.lengths, precisions, a.device, min_s, log)
        save()
    if "embed" in a.parts:
        result["embed"] = run_embed(a.presets, a.lengths, a.batches, precisions, a.device, max_events, min_s, log)
        save()
    if "predict" in a.parts:
        result["predict"] = run_predict(a.presets, a.batches, precisions, a.device, min_s, log)
        save()
    if "train" in a.parts:
        result["train"] = run_train(a.presets, a.device, a.train_batch or (256 if cuda else 32), a.train_steps or (30 if cuda else 5), a.peak_tflops, log)
        save()
    save()
    log(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
