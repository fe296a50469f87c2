"""``ejc train`` as a Ray job (``ray job submit -- python jobs/train.py --events DIR --out MODEL [ejc train options]``).

    python jobs/train.py --events runs/helpdesk --out runs/helpdesk_model --tracking-uri http://127.0.0.1:5000

Wiring only: the arguments are exactly those of ``ejc train`` (``ejc train --help``); the whole
recipe runs as one Ray task with ``--task-cpus`` CPUs reserved (and ``--task-gpus`` GPUs), writes
the same MODEL/ directory as ``ejc train``, logs it to MLflow and registers it (``--register``,
default ``ejc-event-jepa``), so the Serve app loads it with ``models:/NAME/VERSION``. The driver
prints the summary as its last stdout line. ``--events`` and ``--out`` must be reachable where
the task runs (shared storage on a multi-node cluster). With no ``RAY_ADDRESS`` the job starts a
local Ray with ``--num-cpus`` CPUs. (Data-parallel pretraining of large logs is ``jobs/pretrain.py``;
it writes a pretraining checkpoint, not the shipped model.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False, allow_abbrev=False)
    p.add_argument("--task-cpus", type=float, default=1.0, help="CPUs reserved for the training task (default 1)")
    p.add_argument("--task-gpus", type=float, default=0.0, help="GPUs reserved for the training task (default 0)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray started when no cluster address is set")
    return p.parse_known_args(argv)


def train_from_argv(argv: list[str]) -> dict[str, Any]:
    """Run ``ejc train ARGV`` and return its summary (the body of the Ray task)."""
    from ejc.cli import build_parser, train_command

    args = build_parser().parse_args(["train", *argv])
    args.argv = ["train", *argv]
    return train_command(args)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ejc.cli import build_parser
    from jobs.ray_env import run_task

    job, rest = parse_args(argv)
    build_parser().parse_args(["train", *rest])  # bad arguments fail here, before any cluster work
    rc, summary = run_task(train_from_argv, rest, "jobs/train.py", job.task_cpus, job.task_gpus, job.num_cpus)
    if rc:
        return rc
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
