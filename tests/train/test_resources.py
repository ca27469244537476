"""Training fails at once, naming the option, when the cluster cannot hold its workers."""

from __future__ import annotations

import pytest
import ray
import torch

from raypz.ray_runtime import assigned_device, bundles_that_fit
from raypz.train import TrainConfig, train_ensemble
from raypz.train.resources import check_worker_resources

pytestmark = pytest.mark.timeout(120)


def test_workers_that_fit_counts_per_node():
    nodes = [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 8.0}, {"CPU": 4.0, "GPU": 4.0}]
    assert bundles_that_fit({"GPU": 1.0}, nodes) == 5
    assert bundles_that_fit({"GPU": 1.0, "CPU": 2.0}, nodes) == 3  # 1 + 0 + 2
    assert bundles_that_fit({"CPU": 0.5}, nodes) == 28


def test_gpu_yes_without_gpus_fails_before_reading(ray_session, tmp_path):
    with pytest.raises(ValueError, match=r"--gpu yes.*--gpu auto or --gpu no"):
        check_worker_resources(TrainConfig(use_gpu=True))
    # train_ensemble checks before it touches the data: the missing table is never read
    with pytest.raises(ValueError, match="--gpu yes"):
        train_ensemble(str(tmp_path / "absent"), str(tmp_path / "model"), TrainConfig(use_gpu=True))


def test_unknown_or_too_large_requests_fail(ray_session):
    with pytest.raises(ValueError, match="--worker-resources trainer=1"):
        check_worker_resources(TrainConfig(worker_resources={"trainer": 1}))
    with pytest.raises(ValueError, match=r"--cpus-per-worker 1\.5.*--workers \(now 2\)"):
        check_worker_resources(TrainConfig(workers=2, cpus_per_worker=1.5))


def test_what_fits_passes(ray_session):
    check_worker_resources(TrainConfig())  # CPUs chosen from the cluster, GPUs if any
    check_worker_resources(TrainConfig(use_gpu=False, workers=2, cpus_per_worker=0.5))
    check_worker_resources(TrainConfig(workers=4, cpus_per_worker=0.5))


def test_config_refuses_cpu_gpu_or_zero_in_worker_resources():
    for bad in ({"GPU": 1}, {"CPU": 1}, {"trainer": 0}):
        with pytest.raises(ValueError, match="worker_resources"):
            TrainConfig(worker_resources=bad)


def test_a_task_without_a_gpu_trains_on_the_cpu_even_where_cuda_is_visible(ray_session):
    """Member tasks started with num_gpus=0 see the node's GPUs (Ray leaves
    CUDA_VISIBLE_DEVICES alone): picking CUDA because torch sees it put every such task on a
    GPU that the scheduler had not given it."""

    @ray.remote(num_cpus=1, num_gpus=0)
    def where() -> str:
        torch.cuda.is_available = lambda: True  # as on a GPU node
        return str(assigned_device())

    assert ray.get(where.remote()) == "cpu"


def test_a_task_given_a_gpu_trains_on_it(monkeypatch):
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert str(assigned_device()) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a GPU share, no CUDA build
    assert str(assigned_device()) == "cpu"
