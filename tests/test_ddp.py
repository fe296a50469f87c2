"""Data-parallel correctness without Ray: 2 real DDP processes (gloo) vs 1 process, same global batch.

Ray Train adds only process management on top of this (jobs/pretrain.py --data-order global uses
the same ``Trainer(shard=...)`` path; tests/test_job_pretrain.py checks it through Ray).
"""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import random_sequences

from ejc.config import load_config
from ejc.train.data import DataSpec, make_windows
from ejc.train.loop import Trainer

STEPS = 6
OVERRIDES = ["train.batch_size=8", "train.max_len=32", "train.warmup_steps=2", f"train.steps={STEPS}", "train.lr=3e-3"]


def _setup() -> tuple:
    cfg = load_config("tiny", OVERRIDES)
    # every entity is longer than max_len, so every window is full and every worker's tokens weigh alike
    seqs = random_sequences(num=12, seed=4, min_len=40, max_len=70)
    spec = DataSpec.from_sequences(seqs, cfg.model.max_types)
    windows = [w for w in make_windows(seqs, cfg.train.max_len, cfg.train.stride) if len(w) == cfg.train.max_len]
    return cfg, spec, windows


def _run(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg, spec, windows = _setup()
        trainer = Trainer(cfg, spec, windows, "cpu", wrap=lambda m: torch.nn.parallel.DistributedDataParallel(m, find_unused_parameters=True), shard=(rank, world))
        losses = [trainer.step()["loss"] for _ in range(STEPS)]
        if rank == 0:
            params = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
            np.savez(out, losses=np.array(losses), params=params.numpy())
        # no rank tears gloo down while another still uses it (that aborted a worker with
        # "terminate called without an active exception", about 1 run in 3 on the 2-core box)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ddp_workers_follow_the_single_worker_trajectory(tmp_path):
    torch.set_num_threads(1)
    cfg, spec, windows = _setup()
    single = Trainer(cfg, spec, windows, "cpu")
    ref = np.array([single.step()["loss"] for _ in range(STEPS)])
    ref_params = torch.cat([p.detach().flatten() for p in single.model.parameters()]).numpy()

    out = str(tmp_path / "ddp.npz")
    mp.start_processes(_run, args=(2, _free_port(), out), nprocs=2, join=True, start_method="spawn")
    got = np.load(out)
    # the loss is the token-weighted mean per worker, averaged over workers: equal to the global
    # mean up to the workers' different masked-token counts (overlapping mask blocks)
    # (measured: 4e-5 relative). Tolerance stated: 1e-3 relative per step.
    assert np.max(np.abs(got["losses"] - ref) / np.abs(ref)) < 1e-3, (got["losses"], ref)
    # Adam normalises tiny gradients, so a few weights may differ by ~lr; the bulk agrees closely
    diff = np.abs(got["params"] - ref_params)
    assert diff.max() < 4 * cfg.train.lr and diff.mean() < 1e-4, (diff.max(), diff.mean())
    # the loss went down over the run (the trajectory is a training run, not a flat line)
    assert ref[-1] < ref[0]


def test_shard_validation():
    cfg, spec, windows = _setup()
    with pytest.raises(Exception, match="not divisible by 3 workers"):
        Trainer(cfg, spec, windows, "cpu", shard=(0, 3))
    with pytest.raises(ValueError, match="rank must lie"):
        Trainer(cfg, spec, windows, "cpu", shard=(2, 2))
