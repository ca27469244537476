"""Start or join Ray the same way in every job, and keep Ray's own output out of a job's.

``python jobs/x.py`` on a laptop starts an embedded local Ray; under ``ray job submit`` (or with
``RAY_ADDRESS`` set) ``ray.init()`` joins the existing cluster instead. Unless ``verbose``, the
logs of Ray's workers, Ray Data's progress bars and execution plans and Ray Train's reports go
to the Ray session's log directory (``/tmp/ray/session_latest/logs`` by default; each job
prints where), and a job
shows its own progress lines (:mod:`raypz.progress`); errors (and Ray's warnings, but for Ray
Data's) still print.
"""

from __future__ import annotations

import logging
import math
import os
import threading

import ray
import torch

from raypz.job_errors import stop_on_sigterm
from raypz.progress import ProgressLine

QUIET_LOGGERS = {"ray": logging.WARNING, "ray.train": logging.WARNING, "ray.data": logging.ERROR}
"""Level of Ray's loggers in a quiet run (their lines still reach the session's log files).
Ray Data's warnings are about its own tuning (progress bars off, block sizes), not the job."""


def init_ray(
    num_cpus: int | None = None, object_store_memory: int | None = None, verbose: bool = False
) -> None:
    """Join the cluster named by ``RAY_ADDRESS`` or start a local Ray (no dashboard). In a
    job (:func:`raypz.job_errors.run_job`), SIGTERM then ends the job through ``sys.exit``
    (:func:`raypz.job_errors.stop_on_sigterm`).

    Args:
        num_cpus: logical CPUs of a local Ray; ignored when joining a cluster.
        object_store_memory: bytes for a local Ray's object store; ignored when joining.
        verbose: show Ray's own logs and progress bars (worker output, Ray Data execution
            plans, Ray Train reports); otherwise they only go to the session's log directory.
    """
    if ray.is_initialized():
        return
    quiet_ray(not verbose)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    level = logging.INFO if verbose else logging.ERROR
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(log_to_driver=verbose, logging_level=level)
    else:
        ray.init(
            num_cpus=num_cpus,
            object_store_memory=object_store_memory,
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            log_to_driver=verbose,
            logging_level=level,
        )
    quiet_ray(not verbose)  # ray.init configures its logger again
    stop_on_sigterm()  # in a job: SIGTERM ends it with how to resume
    res = ray.cluster_resources()
    where = f"joined the Ray cluster at {address}" if address else "started a local Ray"
    logs = "" if verbose else f"; Ray's own logs: {_logs_directory()} on this node"
    cpus, gpus = res.get("CPU", 0), res.get("GPU", 0)
    print(f"ray: {where} ({cpus:g} CPUs, {gpus:g} GPUs){logs}", flush=True)


def _logs_directory() -> str:
    """The Ray session's log directory on this node (``ray start --temp-dir`` moves it)."""
    node = getattr(ray._private.worker, "_global_node", None)  # no public API in Ray 2.60
    return node.get_logs_dir_path() if node is not None else "/tmp/ray/session_latest/logs"


def quiet_ray(quiet: bool = True) -> None:
    """Leave out Ray's INFO logs, Ray Data's warnings and its progress bars in this process
    (``quiet``), or show them."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level if quiet else logging.INFO)


@ray.remote(num_cpus=0)
class _Counter:
    """Units done per task (a member's epochs), reported by Ray workers (one call per epoch:
    cheap). Each task reports how far it has reached, not what it added, so a task retried
    from the start or resumed from a checkpoint, in this run or a rerun, counts each unit
    once: the count is the sum over tasks of the furthest each reached."""

    def __init__(self) -> None:
        self.reached: dict[object, float] = {}
        self.note = ""

    def reach(self, key: object, done: float, note: str = "") -> None:
        self.reached[key] = max(done, self.reached.get(key, 0.0))
        self.note = note or self.note

    def read(self) -> tuple[float, str]:
        return sum(self.reached.values()), self.note


class RemoteProgress:
    """A :class:`~raypz.progress.ProgressLine` that Ray workers advance.

    ``handle`` goes to the workers, which call ``handle.reach.remote(key, done, note)`` (a
    task ``key`` has ``done`` units, see :class:`_Counter`); a driver thread
    reads the count every ``poll_s`` seconds and updates the line. Use as a context manager
    around the work; the line closes at exit.
    """

    def __init__(self, line: ProgressLine, poll_s: float = 1.0) -> None:
        self.line = line
        self.poll_s = poll_s
        self.handle = _Counter.remote()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _read(self) -> None:
        done, note = ray.get(self.handle.read.remote())
        self.line.update(done, note or None)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._read()

    def __enter__(self) -> RemoteProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if exc[0] is None:
            self._read()
        self.line.close()
        ray.kill(self.handle)


def cluster_has_gpus() -> bool:
    """True when the connected Ray cluster advertises at least one GPU."""
    return ray.cluster_resources().get("GPU", 0) > 0


def assigned_device() -> torch.device:
    """Where a Ray task or actor should run torch: CUDA when Ray assigned it a GPU (or a
    share), else the CPU. A task started with ``num_gpus=0`` on a GPU node still sees the
    node's GPUs (Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone then), so
    ``torch.cuda.is_available()`` alone would put it on a GPU the scheduler gave to another."""
    return torch.device("cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")


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


def get_with_progress(refs: list[ray.ObjectRef], stage: str, unit: str) -> list:
    """``ray.get(refs)``, with the tasks counted on a progress line as they finish."""
    index = {ref: i for i, ref in enumerate(refs)}
    results: list = [None] * len(refs)
    pending = list(refs)
    with ProgressLine(stage, len(refs), unit) as progress:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            results[index[ready[0]]] = ray.get(ready[0])
            progress.advance(1)
    return results

