"""Early check that the Ray cluster can ever hold one member's training workers.

Ray Train waits for its workers' resources: when they never come (``--gpu yes`` on a cluster
without GPUs, a ``--worker-resources`` name that no node advertises), Ray Train 2.x retries its
worker-group start every 60 s without end (its own check applies only to clusters whose
autoscaler publishes node types). :func:`check_worker_resources` fails at once instead, with a
message that names the option.

A worker needs all its resources on one node (a placement-group bundle); the workers of a run
may be on different nodes (Ray Train's default ``PACK`` placement fills one node first and
spreads over more nodes when one cannot hold them all).
"""

from __future__ import annotations

import ray

from raypz.ray_runtime import bundles_that_fit
from raypz.train.config import TrainConfig


def _autoscaler_max() -> dict[str, float] | None:
    """The most of each resource the cluster's autoscaler may provide (None: no autoscaler
    config is published, the cluster is what it is now)."""
    try:
        from ray._private.state import state

        return state.get_max_resources_from_cluster_config() or None
    except Exception:  # a private API: absent or changed in another Ray version
        return None


def requested_per_worker(config: TrainConfig) -> dict[str, float]:
    """The resources each worker asks for that are fixed by the configuration alone (CPUs only
    when ``cpus_per_worker`` is set, a GPU only with ``use_gpu=True``)."""
    need: dict[str, float] = dict(config.worker_resources)
    if config.cpus_per_worker is not None:
        need["CPU"] = float(config.cpus_per_worker)
    if config.use_gpu:
        need["GPU"] = 1.0
    return need


def _option(name: str, config: TrainConfig) -> str:
    if name == "GPU":
        return "--gpu yes (TrainConfig.use_gpu=True, one GPU per worker)"
    if name == "CPU":
        return f"--cpus-per-worker {config.cpus_per_worker:g}"
    return f"--worker-resources {name}={config.worker_resources[name]:g}"


def check_worker_resources(config: TrainConfig) -> None:
    """Raise ValueError when the connected cluster cannot hold ``config.workers`` workers with
    the resources the configuration asks for, now or after autoscaling.

    Only what the configuration fixes is checked (see :func:`requested_per_worker`). The
    defaults are not: ``--gpu auto`` uses GPUs only where the cluster has them, and the default
    worker CPUs (0.5, or 1 with a GPU: :func:`raypz.train.schedule.plan_workers`) fit any node
    that can run work.
    """
    per_worker = requested_per_worker(config)
    if not per_worker:
        return
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if bundles_that_fit(per_worker, nodes) >= config.workers:
        return
    ceiling = _autoscaler_max()
    if ceiling is not None and all(
        ceiling.get(k, 0.0) >= v * config.workers for k, v in per_worker.items()
    ):
        return  # the autoscaler may add the nodes; Ray Train waits for them
    short = [k for k, v in per_worker.items() if bundles_that_fit({k: v}, nodes) < config.workers]
    totals = ray.cluster_resources()

    def found(k: str) -> str:
        largest = max((n.get(k, 0.0) for n in nodes), default=0.0)
        return f"{k} {totals.get(k, 0.0):g} in all, at most {largest:g} on one node"

    asked = "; ".join(_option(k, config) for k in short or per_worker)
    fix = "use --gpu auto or --gpu no on a cluster without GPUs, or " if "GPU" in short else ""
    raise ValueError(
        f"training needs {config.workers} worker(s), each with {per_worker} on one node; the "
        f"Ray cluster has {', '.join(found(k) for k in short or per_worker)}"
        + (", and no autoscaler" if ceiling is None else f", and autoscales to at most {ceiling}")
        + f". Asked for by {asked}: {fix or 'change it, or '}use fewer --workers "
        f"(now {config.workers})."
    )
