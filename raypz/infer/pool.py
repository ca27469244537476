"""The predictor actor pool of an inference run: its size bounds and each actor's resources.

The pool is elastic: Ray Data starts it at what the current nodes hold and grows it (up to
``InferConfig.max_actors``) while input waits and the cluster has room, so nodes that join
during the run get actors too (Ray Data 2.60 sees them within ~20 s, at the refresh of its
autoscaling coordinator, and asks Ray's autoscaler for more while the busy pool is below its
maximum). What each
actor asks for therefore comes from the configuration and the kind of node, never from
dividing a snapshot of the cluster: GPU actors take ``gpus_per_actor`` GPUs and a CPU for each
of their ``calls_per_gpu_actor`` concurrent calls, CPU actors a fixed :data:`CPU_ACTOR_CPUS`
and one call at a time. ``InferConfig.concurrency`` still fixes the size.

Pure functions of node resources (``ray.nodes()``'s ``Resources``), so they test without Ray.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from raypz.infer.config import InferConfig
from raypz.ray_runtime import bundles_that_fit

CPU_ACTOR_CPUS = 0.75
"""CPUs of a CPU-only predictor actor. Less than 1 so that every node keeps CPU for the read
and staging tasks (0.25 each) beside its actors: actors that take every CPU starve the reads
and the pipeline stalls without an error (RAY_NOTES). A node of C CPUs holds floor(C / 0.75)
actors, e.g. 1 on 1 CPU, 2 on 2, 10 on 8."""

RAY_DATA_STORE_FRACTION = 0.5
"""Ray Data's own default share of the cluster's object store for a run's blocks: the
per-actor budget never raises the share above it."""


@dataclass(frozen=True)
class PoolPlan:
    """Size bounds and per-actor resources of the predictor pool.

    Attributes:
        min_size: fewest actors (1 for an elastic pool: Ray Data may shrink it when idle).
        max_size: most actors; None: no bound but the cluster (it grows with the cluster).
        initial_size: actors started at once: what the current nodes hold, within bounds.
        gpus: GPUs per actor.
        cpus: CPUs per actor.
        threads: torch threads per actor.
        calls: predictor calls an actor runs at once, each in its own thread.
        slots_now: actors of this shape the nodes present at the start hold.
    """

    min_size: int
    max_size: int | None
    initial_size: int
    gpus: float
    cpus: float
    threads: int
    calls: int
    slots_now: int

    def to_dict(self) -> dict:
        """JSON-ready form, for the run summary."""
        return asdict(self)


READ_CPUS = 0.25
"""CPUs a GPU node keeps beside its actors for the read and staging tasks."""


def actor_shape(config: InferConfig, nodes: list[dict[str, float]]) -> tuple[float, float]:
    """(GPUs, CPUs) per actor: from ``config`` where set, else by the device and the kind of
    node the actors run on.

    GPU actors when ``config.device`` is "cuda", or "auto" and a node has GPUs (a "cuda" run
    waits for GPU nodes, e.g. from the autoscaler); CPU actors for "cpu". A GPU actor takes a
    CPU per concurrent call, but no more than a GPU node has beside each GPU less
    :data:`READ_CPUS` (so an actor fits a 2-CPU GPU node, and the reads keep their CPU).
    """
    gpu_nodes = [n for n in nodes if n.get("GPU", 0.0) > 0]
    gpus = config.gpus_per_actor
    if gpus is None:
        on_gpu = config.device == "cuda" or (config.device == "auto" and bool(gpu_nodes))
        gpus = 1.0 if on_gpu else 0.0
    if config.cpus_per_actor:
        return gpus, config.cpus_per_actor
    if gpus == 0:
        return gpus, CPU_ACTOR_CPUS
    cpus = float(config.calls_per_gpu_actor)
    if gpu_nodes:
        beside = max(n.get("CPU", 0.0) * gpus / n["GPU"] for n in gpu_nodes) - READ_CPUS
        cpus = min(cpus, max(beside, CPU_ACTOR_CPUS))
    return gpus, cpus


def actor_slots(nodes: list[dict[str, float]], gpus: float, cpus: float) -> int:
    """Actors of ``gpus`` GPUs and ``cpus`` CPUs (> 0) that ``nodes`` (each node's resources)
    hold, each node on its own (:func:`raypz.ray_runtime.bundles_that_fit`)."""
    return bundles_that_fit({"CPU": cpus, "GPU": gpus}, nodes)


def plan_pool(config: InferConfig, nodes: list[dict[str, float]]) -> PoolPlan:
    """The pool of a run on a cluster whose nodes have the resources ``nodes`` now.

    ``config.concurrency`` fixes the size; otherwise the pool starts with what ``nodes`` hold
    (at least 1, at most ``config.max_actors``) and may grow to ``config.max_actors``.
    """
    gpus, cpus = actor_shape(config, nodes)
    slots = actor_slots(nodes, gpus, cpus)
    if config.concurrency is not None:
        low = high = start = config.concurrency
    else:
        low, high = 1, config.max_actors
        start = max(low, slots if high is None else min(slots, high))
    calls = config.calls_per_gpu_actor if gpus > 0 else 1
    if config.cpus_per_actor is None:  # a call per CPU when the node's CPUs capped them
        calls = max(1, min(calls, int(cpus)))
    return PoolPlan(low, high, start, gpus, cpus, max(1, int(cpus)), calls, slots)


def unplaceable(plan: PoolPlan, nodes: list[dict[str, float]]) -> str | None:
    """Why no actor of ``plan``'s shape fits any of ``nodes`` now, in words; None when one
    fits. The pool then waits for a node that holds one (from an autoscaler)."""
    if plan.slots_now:
        return None
    shape = f"{plan.cpus:g} CPU" + (f" + {plan.gpus:g} GPU" if plan.gpus else "")
    have = "; ".join(f"{n.get('CPU', 0.0):g} CPU, {n.get('GPU', 0.0):g} GPU" for n in nodes)
    return f"a predictor actor of {shape} fits no node now (nodes: {have or 'none'})"


def object_store_budget(
    plan: PoolPlan, mb_per_actor: int, nodes: list[dict[str, float]]
) -> tuple[float | None, float]:
    """Ray Data's object-store budget for the run's blocks: (bytes or None, share of the store).

    The budget is ``mb_per_actor`` per actor. Ray Data applies the smaller of an absolute limit
    and a share of the object store of the nodes with CPUs or GPUs (a head with neither is left
    out), whose size it re-reads as nodes join. So:

    - the absolute limit covers the pool at its largest: ``mb_per_actor`` x ``max_size``
      (None for an unbounded pool);
    - the share gives ``mb_per_actor`` to each actor that ``nodes`` (the nodes now) hold, at
      least ``min_size``, as a fraction of their store. When nodes of the same kind join, the
      store, and with it the budget, grows with the actors they add.
    """
    per_actor = mb_per_actor * 2**20
    limit = per_actor * plan.max_size if plan.max_size is not None else None
    store = sum(
        n.get("object_store_memory", 0.0)
        for n in nodes
        if n.get("CPU", 0.0) > 0 or n.get("GPU", 0.0) > 0
    )
    actors_now = max(plan.slots_now, plan.min_size)
    share = min(RAY_DATA_STORE_FRACTION, per_actor * actors_now / max(store, 1.0))
    return limit, share
