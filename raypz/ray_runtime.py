"""Start or join Ray the same way in every job.

``python jobs/x.py`` on a laptop starts an embedded local Ray; under ``ray job submit`` (or with
``RAY_ADDRESS`` set) ``ray.init()`` joins the existing cluster instead.
"""

from __future__ import annotations

import math
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


def bundles_that_fit(bundle: dict[str, float], nodes: list[dict[str, float]]) -> int:
    """How many of ``bundle`` (Ray resources of one actor or worker) ``nodes`` (each node's
    resources, as in ``ray.nodes()``) hold at most. A bundle lives on one node, so each node
    counts on its own: three nodes of 1 CPU hold three 0.75-CPU bundles, not
    floor(3 / 0.75) = 4. Zero amounts are ignored; an empty bundle fits nowhere (0)."""
    total = 0
    for node in nodes:
        fits = [math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in bundle.items() if v > 0]
        total += min(fits) if fits else 0
    return total
