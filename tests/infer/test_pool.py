"""The predictor pool plan (raypz.infer.pool): pure functions of node resources, no Ray."""

from __future__ import annotations

import pytest

from raypz.infer import InferConfig
from raypz.infer.pool import (
    CPU_ACTOR_CPUS,
    RAY_DATA_STORE_FRACTION,
    actor_shape,
    actor_slots,
    object_store_budget,
    plan_pool,
    unplaceable,
)

MB = 2**20
CPU_NODE = {"CPU": 2.0}
GPU_NODE = {"CPU": 8.0, "GPU": 1.0}
HEAD_CPU0 = {"CPU": 0.0}


def test_actor_shape_from_config_or_the_kind_of_node():
    assert actor_shape(InferConfig(), [CPU_NODE]) == (0.0, CPU_ACTOR_CPUS)
    assert actor_shape(InferConfig(), [GPU_NODE]) == (1.0, 4.0)  # 4 calls
    assert actor_shape(InferConfig(calls_per_gpu_actor=3), [GPU_NODE]) == (1.0, 3.0)
    assert actor_shape(InferConfig(gpus_per_actor=0.5, cpus_per_actor=2), [GPU_NODE]) == (0.5, 2)
    assert actor_shape(InferConfig(gpus_per_actor=0), [GPU_NODE]) == (0.0, 0.75)


def test_actor_shape_follows_the_device():
    """--device cpu on a GPU node: CPU actors (not one GPU actor computing on its CPU); --device
    cuda before any GPU node is there: GPU actors, which wait for the GPU nodes."""
    assert actor_shape(InferConfig(device="cpu"), [GPU_NODE]) == (0.0, CPU_ACTOR_CPUS)
    assert actor_shape(InferConfig(device="cuda"), [HEAD_CPU0]) == (1.0, 4.0)
    assert plan_pool(InferConfig(device="cpu"), [{"CPU": 32.0, "GPU": 1.0}]).initial_size == 42


def test_gpu_actors_fit_small_gpu_nodes_and_leave_cpu_for_the_reads():
    """A 2-CPU node with one GPU: the default 4-CPU actor would never be placed and the run
    would wait forever; the actor takes 1.75 CPUs and one call at a time."""
    plan = plan_pool(InferConfig(), [{"CPU": 2.0, "GPU": 1.0}])
    assert (plan.gpus, plan.cpus, plan.calls, plan.slots_now) == (1.0, 1.75, 1, 1)
    per_gpu = plan_pool(InferConfig(), [{"CPU": 16.0, "GPU": 8.0}])  # 2 CPUs per GPU
    assert (per_gpu.cpus, per_gpu.calls, per_gpu.slots_now) == (1.75, 1, 8)
    roomy = plan_pool(InferConfig(), [{"CPU": 16.0, "GPU": 1.0}])
    assert (roomy.cpus, roomy.calls) == (4.0, 4)


def test_actor_slots_count_each_node_on_its_own():
    assert actor_slots([{"CPU": 1.0}] * 3, 0.0, 0.75) == 3  # not floor(3 / 0.75) = 4
    assert actor_slots([CPU_NODE], 0.0, 0.75) == 2
    assert actor_slots([HEAD_CPU0, GPU_NODE, GPU_NODE], 1.0, 1.0) == 2
    assert actor_slots([GPU_NODE], 0.5, 1.0) == 2
    assert actor_slots([{"CPU": 0.5, "GPU": 4.0}], 1.0, 1.0) == 0  # no CPU to feed a GPU
    assert actor_slots([], 0.0, 0.75) == 0


def test_elastic_pool_starts_with_what_the_nodes_hold_and_has_no_bound():
    plan = plan_pool(InferConfig(), [CPU_NODE, {"CPU": 1.0}])
    assert (plan.min_size, plan.max_size, plan.initial_size, plan.slots_now) == (1, None, 3, 3)
    assert (plan.gpus, plan.cpus, plan.threads, plan.calls) == (0.0, CPU_ACTOR_CPUS, 1, 1)


def test_elastic_pool_bounds():
    capped = plan_pool(InferConfig(max_actors=2), [CPU_NODE, CPU_NODE])
    assert (capped.min_size, capped.max_size, capped.initial_size) == (1, 2, 2)
    empty = plan_pool(InferConfig(gpus_per_actor=1), [HEAD_CPU0])  # GPU nodes not there yet
    assert (empty.initial_size, empty.slots_now, empty.gpus) == (1, 0, 1.0)


def test_gpu_cluster_plans_gpu_actors():
    plan = plan_pool(InferConfig(), [HEAD_CPU0, GPU_NODE])
    assert (plan.gpus, plan.cpus, plan.initial_size, plan.max_size) == (1.0, 4.0, 1, None)
    assert plan.calls == 4  # batches a GPU actor works on at once


def test_concurrency_fixes_the_pool():
    plan = plan_pool(InferConfig(concurrency=4), [CPU_NODE])
    assert (plan.min_size, plan.max_size, plan.initial_size, plan.slots_now) == (4, 4, 4, 2)


def test_concurrency_and_max_actors_exclude_each_other():
    with pytest.raises(ValueError, match="concurrency"):
        InferConfig(concurrency=2, max_actors=4)
    with pytest.raises(ValueError, match="max_actors"):
        InferConfig(max_actors=0)


def test_object_store_budget_per_actor_now_as_a_share_of_the_store():
    nodes = [
        {"CPU": 0.0, "object_store_memory": 4096.0 * MB},
        {"CPU": 2.0, "object_store_memory": 2048.0 * MB},
    ]
    plan = plan_pool(InferConfig(), nodes)  # 2 actors, unbounded
    limit, share = object_store_budget(plan, 256, nodes)
    assert limit is None
    # of the store of nodes that run work (Ray Data leaves out a head without CPUs or GPUs):
    # as that store grows with the nodes that join, so does the budget
    assert share == pytest.approx(2 * 256 / 2048)


def test_object_store_budget_caps():
    nodes = [{"CPU": 2.0, "object_store_memory": 8192.0 * MB}]
    fixed = plan_pool(InferConfig(concurrency=3), nodes)
    limit, share = object_store_budget(fixed, 256, nodes)
    assert limit == 3 * 256 * MB
    assert share == pytest.approx(3 * 256 / 8192)  # the pool's actors, not the 2 slots
    small_store = [{"CPU": 2.0, "object_store_memory": 100.0 * MB}]
    assert object_store_budget(fixed, 256, small_store)[1] == RAY_DATA_STORE_FRACTION


def test_rows_per_call_default_by_kind_of_actor():
    config, cutout = InferConfig(), (6, 32, 32)  # 24 kB per cutout
    assert config.rows_per_batch(None) == 16384
    assert config.rows_per_batch(None, on_gpu=True) == 65536
    assert config.rows_per_batch(cutout) == 64 * 2**20 // (4 * 6 * 32 * 32)
    assert config.rows_per_batch(cutout, on_gpu=True) == 16384
    assert InferConfig(batch_size=100).rows_per_batch(cutout, on_gpu=True) == 100
    assert InferConfig(image_batch_mb=24).rows_per_batch(cutout, on_gpu=True) == 1024
    with pytest.raises(ValueError, match="calls_per_gpu_actor"):
        InferConfig(calls_per_gpu_actor=0)


def test_a_pool_that_fits_no_node_says_why():
    big = plan_pool(InferConfig(cpus_per_actor=3), [CPU_NODE])
    why = "a predictor actor of 3 CPU fits no node now (nodes: 2 CPU, 0 GPU)"
    assert unplaceable(big, [CPU_NODE]) == why
    gpu = plan_pool(InferConfig(device="cuda"), [CPU_NODE])
    assert "+ 1 GPU fits no node" in unplaceable(gpu, [CPU_NODE])
    assert unplaceable(plan_pool(InferConfig(), [CPU_NODE]), [CPU_NODE]) is None


@pytest.mark.parametrize(
    "field, value",
    [("device", "gpu"), ("target_block_mb", 0), ("cpus_per_actor", 0), ("gpus_per_actor", -1),
     ("image_batch_mb", 0)],
)  # fmt: skip
def test_infer_config_refuses_values_that_fail_late(field, value):
    with pytest.raises(ValueError, match=f"InferConfig.{field}"):
        InferConfig(**{field: value})
