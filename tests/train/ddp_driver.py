"""Driver of tests/train/test_ddp_two_nodes.py, run as its own process on a Ray cluster.

    RAY_ADDRESS=127.0.0.1:PORT python tests/train/ddp_driver.py --data DIR --storage DIR

Trains one catalog member on ``--data`` twice, at the same time, with the production Ray Train
loop (``raypz.train.ensemble.fit_on_ray``): once with one worker and ``--batch-size`` rows per step,
once with two DDP workers (gloo) of half that batch each, every DDP worker asking for one unit
of the custom resource ``ddp_node`` (the test gives each of its two nodes one unit, so the two
workers must be on different nodes). Both use 0.5 CPU per worker, the same seed, learning rate
and epochs, and no autoencoder input noise (one source of rank-dependent randomness less).
Prints one JSON line after ``RESULT``: the cluster's node ids, both runs' final metrics
(``worker_nodes`` holds each rank's node id) and the resource check's refusal of three such
workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import ray

from raypz.features import FeatureTransform
from raypz.models import CatalogNetConfig
from raypz.pdf import ZGrid
from raypz.train.config import TrainConfig
from raypz.train.datasets import member_datasets
from raypz.train.ensemble import fit_on_ray
from raypz.train.labelled import read_labelled, train_mask
from raypz.train.member import MemberSpec
from raypz.train.resources import check_worker_resources
from raypz.train.schedule import Resources

RESOURCE = "ddp_node"


def base_config(batch_size: int, epochs: int, seed: int, lr: float) -> TrainConfig:
    """The single-worker configuration; the DDP run halves the batch and doubles the workers."""
    return TrainConfig(
        members=1,
        epochs=epochs,
        patience=epochs,
        batch_size=batch_size,
        lr=lr,
        val_fraction=0.2,
        seed=seed,
        cpus_per_worker=0.5,
        use_gpu=False,
        net=CatalogNetConfig(hidden=(64, 64), dae_noise=0.0),
        grid=ZGrid(0.0, 3.5, 351),
        calibrate=False,
    )


def wait_for_nodes(n: int, timeout_s: float = 60.0) -> list[str]:
    """Node ids once ``n`` nodes with the custom resource are alive."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.cluster_resources().get(RESOURCE, 0) >= n:
            return [x["NodeID"] for x in ray.nodes() if x.get("Alive")]
        time.sleep(0.5)
    raise TimeoutError(f"the cluster never showed {n} x {RESOURCE}: {ray.cluster_resources()}")


def fit(name: str, storage: str, config: TrainConfig, transform, datasets) -> dict:
    """One member trained with ``config``; its final metrics and the fit's wall time."""
    t0 = time.perf_counter()
    plan = Resources(use_gpu=False, cpus_per_worker=config.cpus_per_worker)
    spec = MemberSpec(config, transform, config.seed)
    metrics = fit_on_ray(name, storage, datasets, spec, plan).metrics
    metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, list, bool))}
    return {**metrics, "fit_seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--batch-size", type=int, default=256, help="of the single worker")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()

    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    nodes = wait_for_nodes(2)
    single = base_config(args.batch_size, args.epochs, args.seed, args.lr)
    ddp = dataclasses.replace(
        single, workers=2, batch_size=args.batch_size // 2, worker_resources={RESOURCE: 1}
    )
    check_worker_resources(ddp)  # two workers fit: one per node
    try:
        check_worker_resources(dataclasses.replace(ddp, workers=3))
        refused = ""
    except ValueError as e:
        refused = str(e)

    labelled = read_labelled(args.data, single)
    rows = labelled.take(train_mask(labelled.object_id, single, None))
    sample = np.random.default_rng(single.seed).permutation(len(rows.z))
    transform = FeatureTransform.fit(rows.flux[sample], rows.err[sample], columns=single.columns)
    datasets = member_datasets(args.data, single, None, None, False)
    out = {"nodes": nodes, "refused_3_workers": refused}
    # both fits at once (1.5 of the cluster's 4 CPUs): most of a fit is starting its workers
    with ThreadPoolExecutor(2) as pool:
        runs = {
            name: pool.submit(fit, name, args.storage, config, transform, datasets)
            for name, config in (("single", single), ("ddp", ddp))
        }
        out.update({name: run.result() for name, run in runs.items()})
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
