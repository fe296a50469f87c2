"""Evaluation as a Ray job (``ray job submit -- python jobs/evaluate.py TASK [ejc evaluate options]``).

    python jobs/evaluate.py next-event ../shared/data/process/helpdesk_tax.csv --out results.json
    python jobs/evaluate.py anomaly --train train.csv --test test.csv --label-col label --out r.json

Wiring only: the arguments are exactly those of ``ejc evaluate TASK`` (see ``ejc evaluate TASK
--help``); the task runs as one Ray task (:func:`ejc.eval.cli.evaluate_from_argv`) with
``--task-cpus`` CPUs reserved, and the driver writes ``--out`` and prints the result record as
its last stdout line. Source files (and ``--plot DIR``) must be readable (writable) where the
task runs: on a multi-node cluster, use shared storage. With no ``RAY_ADDRESS`` the job starts a
local Ray with ``--num-cpus`` CPUs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False, allow_abbrev=False)
    p.add_argument("--task-cpus", type=float, default=1.0, help="CPUs reserved for the evaluation task (default 1)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray started when no cluster address is set")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ejc.cli import build_parser
    from ejc.eval.cli import evaluate_from_argv
    from ejc.eval.report import metrics_table, write_result
    from jobs.ray_env import run_task

    job, rest = parse_args(argv)
    # parse on the driver first: bad arguments fail here, before any cluster work
    args = build_parser().parse_args(["evaluate", *rest])
    rc, result = run_task(evaluate_from_argv, rest, "jobs/evaluate.py", job.task_cpus, start_cpus=job.num_cpus)
    if rc:
        return rc
    write_result(result, Path(args.out))
    print(metrics_table(result), file=sys.stderr, flush=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
