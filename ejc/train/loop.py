"""The training loop: schedules, one optimiser step, checkpoint/resume, progress and plots.

``Trainer`` holds model, optimiser, sampler and RNGs and does one step at a time, so the same
object drives local pretraining (:func:`pretrain`) and Ray Train workers. Resuming restores
optimiser, sampler, mask-generator and global RNG state: a run stopped and resumed takes exactly
the steps an uninterrupted run takes (tested).

Schedules (I-JEPA recipe): linear LR warmup then cosine to ``min_lr``; weight decay cosine
``weight_decay -> weight_decay_end``; EMA momentum linear ``ema_start -> ema_end``. No weight
decay on biases, norms and embedding-like vectors.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ejc.config import Config
from ejc.data.sequence import EventSequence
from ejc.errors import CheckpointError, ConfigError
from ejc.model.encoder import to_tensors
from ejc.model.jepa import EventJEPAModel
from ejc.train.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from ejc.train.data import BatchSampler, DataSpec, load_sequences, make_windows
from ejc.train.tracking import JsonlTracker, NullTracker, Tracker


def lr_at(cfg: Config, step: int) -> float:
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def wd_at(cfg: Config, step: int) -> float:
    t = cfg.train
    progress = min(1.0, step / max(1, t.steps))
    return t.weight_decay_end + 0.5 * (t.weight_decay - t.weight_decay_end) * (1 + math.cos(math.pi * progress))


def ema_at(cfg: Config, step: int) -> float:
    o = cfg.objective
    return o.ema_start + (o.ema_end - o.ema_start) * min(1.0, step / max(1, cfg.train.steps))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    return torch.device(name)


def param_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "mask_token" in name or "query" in name or "log_periods" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "wd_scale": 1.0}, {"params": no_decay, "weight_decay": 0.0, "wd_scale": 0.0}]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    data_stats: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        first = self.history[0] if self.history else {}
        last = self.history[-1] if self.history else {}
        keys = ("loss", "jepa", "type", "gap_nll", "future_state", "eff_rank", "target_std")
        return {
            "run_dir": str(self.run_dir),
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "first": {k: first[k] for k in keys if k in first},
            "last": {k: last[k] for k in keys if k in last},
            "data": self.data_stats,
        }


def mean_across_workers(parts: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average logged loss parts over the data-parallel group (rank 0 alone sees 1/N of the batch).

    Every worker must call it at the same step with the same keys (true for one model and one
    objective); a no-op when ``torch.distributed`` is not initialised.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return parts
    keys = sorted(parts)
    t = torch.tensor([parts[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


class Trainer:
    """Model + optimiser + data order + RNGs; :meth:`step` does one optimiser step.

    ``wrap`` wraps the model for the forward pass (e.g. Ray Train's ``prepare_model`` for DDP);
    the EMA update and checkpoints always use the unwrapped model. Without ``windows`` the
    caller feeds every step its sequences (e.g. from a Ray dataset shard).

    ``shard=(rank, world)`` with ``windows``: data-parallel training over the *global* batch
    order. Every worker draws the same global batch of ``train.batch_size`` windows (same
    sampler, same seed), takes its contiguous ``batch_size / world`` rows, and masks them with
    the global batch's mask draws, so N workers under DDP follow the same trajectory as one
    (up to float summation order and per-worker token weighting), and a resumed run continues
    the exact data order.
    """

    def __init__(
        self,
        cfg: Config,
        spec: DataSpec,
        windows: list[EventSequence] | None,
        device: torch.device | str = "cpu",
        wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
        shard: tuple[int, int] = (0, 1),
    ):
        self.cfg, self.spec, self.windows = cfg, spec, windows
        self.rank, self.world = shard
        if not 0 <= self.rank < self.world:
            raise ValueError(f"shard {shard}: rank must lie in [0, world)")
        if self.world > 1 and cfg.train.batch_size % self.world:
            raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not divisible by {self.world} workers; choose a global batch that splits evenly")
        self.device = torch.device(device)
        torch.manual_seed(cfg.train.seed)
        self.model = EventJEPAModel(cfg, spec.modality_dims, len(spec.vocab)).to(self.device)
        self.net = wrap(self.model) if wrap is not None else self.model
        self.opt = torch.optim.AdamW(param_groups(self.model), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.sampler = BatchSampler(len(windows), cfg.train.batch_size, cfg.train.seed) if windows is not None else None
        self.mask_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
        self.step_no = 0
        self.pad_multiple = 2 ** (cfg.model.num_levels - 1) if cfg.model.encoder == "hierarchical" else 1

    def batch(self, seqs: list[EventSequence]):  # noqa: ANN201
        return to_tensors(self.spec.collate(seqs, self.cfg.train.max_len, self.pad_multiple), self.device)

    def step(self, seqs: list[EventSequence] | None = None) -> dict[str, float]:
        """One optimiser step on ``seqs`` (default: the next batch of the local sampler)."""
        cfg, s = self.cfg, self.step_no
        mask_rows = None  # this worker's rows of the global batch's mask draws (shard mode)
        lr, wd = lr_at(cfg, s), wd_at(cfg, s)
        for g in self.opt.param_groups:
            g["lr"] = lr
            g["weight_decay"] = wd * g.get("wd_scale", 1.0)
        self.model.train()
        t0 = time.perf_counter()
        if seqs is None:
            if self.sampler is None or self.windows is None:
                raise ValueError("Trainer.step needs sequences when the trainer has no windows of its own")
            per = cfg.train.batch_size // self.world
            idx = self.sampler.next()[self.rank * per : (self.rank + 1) * per]
            seqs = [self.windows[i] for i in idx]
            mask_rows = (self.rank * per, cfg.train.batch_size) if self.world > 1 else None
        bt = self.batch(seqs)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss, parts = self.net(bt, self.mask_gen, mask_rows)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {float(loss)} at step {s}; lower train.lr or check the data for extreme values")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip)
        self.opt.step()
        self.model.update_target(ema_at(cfg, s))
        self.step_no += 1
        dt = time.perf_counter() - t0
        n_events = int(bt.valid.sum())
        if self.world > 1:
            parts = mean_across_workers(parts, self.device)
        parts.update({"lr": lr, "grad_norm": float(gnorm), "events_per_s": n_events / dt if dt > 0 else float("nan"), "step_seconds": dt})
        return parts

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_no,
            "optimizer": self.opt.state_dict(),
            "sampler": self.sampler.state_dict() if self.sampler is not None else None,
            "mask_gen": self.mask_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, model_state: dict[str, torch.Tensor], st: dict[str, Any]) -> None:
        self.model.load_checkpoint_state(model_state)
        self.opt.load_state_dict(st["optimizer"])
        if self.sampler is not None and st.get("sampler") is not None:
            self.sampler.load_state_dict(st["sampler"])
        self.mask_gen.set_state(st["mask_gen"])
        torch.set_rng_state(st["torch_rng"])
        self.step_no = int(st["step"])

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        return save_checkpoint(run_dir, self.model, self.cfg, self.spec, self.step_no, self.state_dict())


def pretrain(
    cfg: Config,
    events: Any,
    run_dir: str | os.PathLike[str],
    tracker: Tracker | None = None,
    resume: bool = True,
    progress: bool | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Pretrain on an event table (path, ingest directory or Arrow table) into ``run_dir``.

    Resumes from ``run_dir``'s latest checkpoint when one exists (same config required).
    ``stop_after`` ends this call after that many steps (a later call resumes): used by tests
    and by ``--debug-steps``.
    """
    t_start = time.perf_counter()
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    seqs, stats = load_sequences(events, cfg.train.min_events)
    existing = resolve_checkpoint(run) if resume else None
    if existing is not None:
        saved_cfg, spec, model_state, trainer_state, _ = load_checkpoint(existing)
        if saved_cfg.to_dict() != cfg.to_dict():
            raise CheckpointError(f"{run} holds a run with a different config; use a new --out directory or the same config to resume")
    else:
        spec = DataSpec.from_sequences(seqs, cfg.model.max_types)
    windows = make_windows(seqs, cfg.train.max_len, cfg.train.stride)
    stats["windows"] = len(windows)
    trainer = Trainer(cfg, spec, windows, resolve_device(cfg.train.device))
    if existing is not None:
        if trainer_state is None:
            raise CheckpointError(f"{existing} has no trainer state (trainer.pt); it cannot be resumed, only loaded")
        trainer.load_state_dict(model_state, trainer_state)
    tracker = tracker or NullTracker()
    local = JsonlTracker(run / "metrics.jsonl")
    if trainer.step_no == 0:
        local.path.unlink(missing_ok=True)
        params = {**cfg.flat(), "data.modalities": spec.modalities, "data.types": len(spec.vocab), **{f"data.{k}": v for k, v in stats.items()}}
        tracker.log_params(params)
        local.log_params(params)
    end = cfg.train.steps if stop_after is None else min(cfg.train.steps, trainer.step_no + stop_after)
    bar = tqdm(total=cfg.train.steps, initial=trainer.step_no, desc="pretrain", unit="step", disable=None if progress is None else not progress)
    while trainer.step_no < end:
        parts = trainer.step()
        step = trainer.step_no
        if step % cfg.train.log_every == 0 or step == end:
            local.log_metrics(parts, step)
            tracker.log_metrics(parts, step)
            bar.set_postfix(loss=f"{parts['loss']:.4f}", rank=f"{parts.get('eff_rank', float('nan')):.1f}")
        if step % cfg.train.checkpoint_every == 0 or step == end:
            trainer.save(run)
        bar.update(1)
    bar.close()
    history = local.history()
    if history:
        plot = plot_loss_curves(history, run / "loss_curve.png")
        tracker.log_artifact(plot)
    return TrainResult(run, trainer.step_no, history, stats, time.perf_counter() - t_start)


def plot_loss_curves(history: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Loss components and collapse monitors against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "jepa", "type", "gap_nll", "future_state", "next_embedding"):
        ys = [h.get(key) for h in history]
        if any(y is not None for y in ys):
            axes[0].plot(steps, [np.nan if y is None else y for y in ys], label=key)
    axes[0].set_xlabel("step")
    axes[0].set_title("losses")
    axes[0].legend()
    ax2 = axes[1]
    ax2.plot(steps, [h.get("eff_rank") or np.nan for h in history], label="effective rank", color="C0")
    ax2.set_xlabel("step")
    ax2.set_title("collapse monitors")
    ax3 = ax2.twinx()
    ax3.plot(steps, [h.get("target_std") or np.nan for h in history], label="target std", color="C1")
    ax2.legend(loc="upper left")
    ax3.legend(loc="upper right")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


__all__ = ["TrainResult", "Trainer", "ema_at", "lr_at", "plot_loss_curves", "pretrain", "wd_at"]
