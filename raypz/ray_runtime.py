"""Start or join Ray the same way in every job.

``python jobs/x.py`` on a laptop starts an embedded local Ray; under ``ray job submit`` (or with
``RAY_ADDRESS`` set) ``ray.init()`` joins the existing cluster instead.
"""

from __future__ import annotations

import os

import ray


def init_ray(num_cpus: int | None = None, object_store_memory: int | None = None) -> None:
    """Join the cluster named by ``RAY_ADDRESS`` or start a local Ray (dashboard on 127.0.0.1).

    Args:
        num_cpus: logical CPUs of a local Ray; ignored when joining a cluster.
        object_store_memory: bytes for a local Ray's object store; ignored when joining.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return
    ray.init(
        num_cpus=num_cpus,
        object_store_memory=object_store_memory,
        include_dashboard=False,
        dashboard_host="127.0.0.1",
    )


def cluster_has_gpus() -> bool:
    """True when the connected Ray cluster advertises at least one GPU."""
    return ray.cluster_resources().get("GPU", 0) > 0
