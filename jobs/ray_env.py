"""How every job gets its Ray: the cluster at ``RAY_ADDRESS`` (``ray job submit`` sets it), else
a fresh local instance with explicit resources.

``address="local"`` matters: a bare ``ray.init()`` attaches to any cluster some other process
started with ``ray start`` on this machine. Local workers get this checkout on their path (a
cluster job gets it from ``--working-dir``), so they run the same ``ejc`` as the driver.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def ensure_ray(num_cpus: int | None = None, log_to_driver: bool = True) -> bool:
    """Start or join Ray unless it is already up; returns whether this call did (then shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=log_to_driver,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    return True


def run_task(fn: Any, args: list[str], prog: str, num_cpus: float = 1.0, num_gpus: float = 0.0, start_cpus: int | None = None) -> tuple[int, Any]:
    """``fn(args)`` as one Ray task (on the cluster or a local Ray this call starts and stops).

    Returns ``(0, result)``, or ``(2, None)`` after printing ``PROG: error: ...`` when the task
    failed with an :class:`~ejc.errors.EjcError` (bad input a user can fix); other errors raise.
    The task's progress lines reach the driver's log.
    """
    import sys

    import ray

    from ejc.errors import EjcError

    started = ensure_ray(start_cpus, log_to_driver=True)
    try:
        task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(fn)
        try:
            return 0, ray.get(task.remote(list(args)))
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
            if isinstance(cause, EjcError):
                print(f"{prog}: error: {cause}", file=sys.stderr)
                return 2, None
            raise
    finally:
        if started:
            ray.shutdown()
