"""Member scheduling (raypz.train.schedule): resources per worker and members started as the
cluster grows. No Ray: the cluster is a dict of totals and the members are plain functions."""

from __future__ import annotations

import threading
import time

import pytest

from raypz.train import TrainConfig
from raypz.train.schedule import (
    CPU_WORKER_CPUS,
    Resources,
    members_that_fit,
    plan_workers,
    run_as_room_allows,
)

pytestmark = pytest.mark.timeout(60)


def test_worker_resources_from_config_or_the_kind_of_node():
    assert plan_workers(TrainConfig(), cluster_has_gpus=False) == Resources(False, CPU_WORKER_CPUS)
    assert plan_workers(TrainConfig(), cluster_has_gpus=True) == Resources(True, 1.0)
    assert plan_workers(TrainConfig(use_gpu=False, cpus_per_worker=2), True) == Resources(False, 2)
    assert Resources(True, 1.0).bundle() == {"CPU": 1.0, "GPU": 1.0}


def test_members_that_fit_leave_a_cpu_to_ray_data():
    cpu = Resources(False, 0.5).bundle()
    assert members_that_fit(cpu, TrainConfig(), {"CPU": 2.0}) == 2  # (2 - 1) / 0.5
    assert members_that_fit(cpu, TrainConfig(), {"CPU": 8.0}) == 14
    assert members_that_fit(cpu, TrainConfig(workers=2), {"CPU": 8.0}) == 7
    assert members_that_fit(cpu, TrainConfig(), {"CPU": 1.0}) == 1  # always at least one
    assert members_that_fit(cpu, TrainConfig(max_concurrent_members=3), {"CPU": 64.0}) == 3


def test_gpu_members_count_gpus_and_extra_resources():
    gpu = Resources(True, 1.0).bundle()
    assert members_that_fit(gpu, TrainConfig(), {"CPU": 16.0, "GPU": 2.0}) == 2
    assert members_that_fit(gpu, TrainConfig(workers=2), {"CPU": 16.0, "GPU": 3.0}) == 1
    assert members_that_fit(gpu, TrainConfig(), {"CPU": 0.0, "GPU": 0.0}) == 1  # waits for nodes
    custom = {**gpu, "trainer": 1.0}
    assert members_that_fit(custom, TrainConfig(), {"CPU": 16, "GPU": 4, "trainer": 2}) == 2


def test_run_as_room_allows_starts_more_jobs_when_room_grows():
    """Room 1 until job 0 runs, then 3: three jobs run together, results keep their order.

    Jobs after the first wait (10 s at most) until three run at once, so the test does not
    depend on how fast threads start; a scheduler that never allows three leaves ``most`` at 2.
    """
    room = [1]
    running, most = [0], [0]
    lock = threading.Lock()
    started, three = threading.Event(), threading.Event()

    def job(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            if running[0] == 3:
                three.set()
        if i == 0:
            started.set()
            time.sleep(0.3)
            room[0] = 3  # the cluster grew while job 0 ran
        else:
            three.wait(timeout=10)
        with lock:
            running[0] -= 1
        return i * 10

    results, peak = run_as_room_allows(job, 6, lambda: room[0], replan_s=0.05)
    assert results == [0, 10, 20, 30, 40, 50]
    assert peak == most[0] == 3
    assert started.is_set()


def test_run_as_room_allows_stops_starting_after_an_error():
    ran = []

    def job(i: int) -> int:
        ran.append(i)
        if i == 1:
            raise RuntimeError("member 1 failed")
        return i

    with pytest.raises(RuntimeError, match="member 1 failed"):
        run_as_room_allows(job, 5, lambda: 1, replan_s=0.05)
    assert ran == [0, 1]


def test_run_as_room_allows_progresses_with_no_room():
    results, peak = run_as_room_allows(lambda i: i, 3, lambda: 0, replan_s=0.05)
    assert (results, peak) == ([0, 1, 2], 1)
