"""How every job gets its Ray: the cluster at ``RAY_ADDRESS`` (``ray job submit`` sets it), else
a fresh local instance with explicit resources.

``address="local"`` matters: a bare ``ray.init()`` attaches to any cluster some other process
started with ``ray start`` on this machine. Local workers get this checkout on their path (a
cluster job gets it from ``--working-dir``), so they run the same ``ejc`` as the driver.
"""

from __future__ import annotations

import os
from pathlib import Path

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
