"""Which resources an ensemble member asks for, and how many members train at once.

Members are independent Ray Train runs. The number that run at once is not fixed at the start:
before starting each next member, and every :data:`REPLAN_S` seconds while members run, the
driver re-reads the cluster's resources and starts members while they fit. Nodes that join
during training (an autoscaler's, or workers started by hand) therefore take the next members.
Each member's resources come from the configuration and the kind of node (GPU or CPU workers),
never from dividing a snapshot of the cluster, so a member started later asks for the same.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from raypz.train.config import TrainConfig

T = TypeVar("T")

CPU_WORKER_CPUS = 0.5
"""CPUs of a CPU-only Ray Train worker: a fraction, so that two members' workers share a core
on small machines (Ray still gives each worker one torch thread). Workers at 1 CPU each
starved the Ray Data tasks that feed them (RAY_NOTES)."""

GPU_WORKER_CPUS = 1.0
"""CPUs of a GPU worker (with 1 GPU)."""

DATA_RESERVE_CPUS = 1.0
"""CPUs of the cluster that CPU-only members leave to the Ray Data tasks reading their data."""

REPLAN_S = 10.0
"""Seconds between re-reads of the cluster's resources while members run."""


@dataclass(frozen=True)
class Resources:
    """What each Ray Train worker of a member asks for.

    Attributes:
        use_gpu: one GPU per worker.
        cpus_per_worker: CPUs per worker.
    """

    use_gpu: bool
    cpus_per_worker: float

    def bundle(self) -> dict[str, float]:
        """The worker's CPUs and GPU as Ray resources."""
        return {"CPU": self.cpus_per_worker, **({"GPU": 1.0} if self.use_gpu else {})}


def plan_workers(config: TrainConfig, cluster_has_gpus: bool) -> Resources:
    """Per-worker resources: from ``config`` where set, else by the kind of node (GPU workers
    when the cluster has GPUs)."""
    use_gpu = cluster_has_gpus if config.use_gpu is None else config.use_gpu
    default_cpus = GPU_WORKER_CPUS if use_gpu else CPU_WORKER_CPUS
    return Resources(use_gpu, config.cpus_per_worker or default_cpus)


def members_that_fit(
    bundle: dict[str, float],
    config: TrainConfig,
    cluster: dict[str, float],
    reserve_for_data: bool = True,
) -> int:
    """Members of ``config.workers`` workers of ``bundle`` (Ray resources each) that a cluster
    of total resources ``cluster`` holds at once, capped by ``config.max_concurrent_members``;
    at least 1, so that training always progresses. Members without a GPU leave
    :data:`DATA_RESERVE_CPUS` to Ray Data (members trained in tasks read no Ray Data:
    ``reserve_for_data`` False)."""
    cpu_only = bundle.get("GPU", 0.0) == 0
    reserve = {"CPU": DATA_RESERVE_CPUS if cpu_only and reserve_for_data else 0.0}
    fit = min(
        math.floor((cluster.get(k, 0.0) - reserve.get(k, 0.0)) / (config.workers * v) + 1e-9)
        for k, v in bundle.items()
        if v > 0
    )
    if config.max_concurrent_members is not None:
        fit = min(fit, config.max_concurrent_members)
    return max(1, fit)


def run_as_room_allows(
    job: Callable[[int], T], n: int, room: Callable[[], int], replan_s: float = REPLAN_S
) -> tuple[list[T], int]:
    """``job(0) ... job(n - 1)`` in threads, at most ``room()`` (at least 1) at once; returns
    the results in index order and the most jobs that ran at once.

    ``room()`` is asked again before each start, whenever a job finishes and every
    ``replan_s`` seconds, so that more jobs run when it grows. After a job fails no other
    starts; its error is raised once the running ones have finished.
    """
    todo: deque[int] = deque(range(n))
    running: dict[Future, int] = {}
    done: dict[int, Future] = {}
    peak = 0
    with ThreadPoolExecutor(max_workers=max(n, 1)) as executor:
        while todo or running:
            while todo and len(running) < max(1, room()):
                i = todo.popleft()
                running[executor.submit(job, i)] = i
            peak = max(peak, len(running))
            finished, _ = wait(running, timeout=replan_s, return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future
                if future.exception() is not None:
                    todo.clear()
    for future in done.values():
        if future.exception() is not None:
            raise future.exception()
    return [done[i].result() for i in range(n)], peak
