"""Training throughput of one ensemble member: Ray Train with 1 and 2 workers (DDP on CPU).

    python benchmarks/bench_train.py --train sim/deep100k            # ~5 min on 2 cores
    python benchmarks/bench_train.py --train sim/deep100k --epochs 3 --rows 30000

For each case, one member is trained for ``--epochs`` epochs (no early stop) on the same
labelled table, with the production loop (``raypz.train.loop``: Ray Data shards, checkpoints
every epoch), and the script prints:

- training samples/s: training rows seen / seconds spent in training epochs (all workers);
- fit wall time: ``TorchTrainer.fit()`` from call to return (start-up, data, checkpoints);
- time to best val: seconds from the ``fit()`` call to the end of the epoch that reached the
  final (lowest) validation loss, and that loss.

A plain in-process loop (same network, batches and schedule, torch with 1 and with 2 threads,
numpy batches in memory) gives the reference. With DDP each worker takes ``--batch-size`` rows
per step, so 2 workers take half the steps per epoch with twice the effective batch; compare
the validation losses as well as the speed. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import ray
import torch

from raypz.features import FeatureTransform
from raypz.models.catalog_net import CatalogNet
from raypz.ray_runtime import init_ray
from raypz.train.batches import BatchPreparer
from raypz.train.config import TrainConfig
from raypz.train.data import member_datasets, read_labelled, train_mask
from raypz.train.ensemble import _fit
from raypz.train.schedule import Resources


def _subset(path: str, rows: int | None, tmp: str) -> str:
    """``path`` itself, or its first ``rows`` rows written to one file under ``tmp``."""
    if not rows:
        return path
    import pyarrow.dataset as pads

    from raypz import io

    table = pads.dataset(io.list_parquet_files(path)).head(rows)
    out = f"{tmp}/subset.parquet"
    pq.write_table(table, out)
    return out


def ray_case(path: str, config: TrainConfig, transform: FeatureTransform, workers: int, tmp: str):
    """Train one member with ``workers`` Ray Train workers; returns the figures."""
    config = dataclasses.replace(config, workers=workers)
    cpus = ray.cluster_resources().get("CPU", 2.0)
    res = Resources(False, max(0.25, min(1.0, (cpus - 1.0) / workers)))
    datasets = member_datasets(path, config, None, None, False)
    loop = {
        "train": config.to_dict(),
        "features": transform.to_dict(),
        "seed": config.seed,
        "epochs": config.epochs,
        "lr": config.lr,
    }
    t0 = time.time()
    _, metrics = _fit(f"bench-w{workers}", f"{tmp}/ckpt", datasets, loop, config, res)
    wall = time.time() - t0
    return {
        "case": f"Ray Train, {workers} worker(s) x {res.cpus_per_worker} CPU",
        "samples_s": metrics["train_rows"] / metrics["train_seconds"],
        "wall": wall,
        "to_best": metrics["best_wall_time"] - t0,
        "best_val": metrics["best_val_loss"],
    }


def plain_case(path: str, config: TrainConfig, transform: FeatureTransform, threads: int):
    """The same training as a plain in-process loop over numpy arrays."""
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    t0 = time.time()
    lab = read_labelled(path, config)
    tr = lab.take(train_mask(lab.object_id, config, None))
    va = lab.take(~train_mask(lab.object_id, config, None))
    names = [*config.columns.flux_columns(), *config.columns.flux_err_columns()]
    cols = np.concatenate([tr.flux, tr.err], axis=1)
    batch_all = {n: cols[:, j] for j, n in enumerate(names)} | {config.columns.redshift: tr.z}
    prep = BatchPreparer(transform, config, config.seed)
    grid = torch.tensor(config.grid.values, dtype=torch.float32)
    net = CatalogNet(transform.n_features, grid, config.net)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    e_max = config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda e: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(e, e_max) / e_max))
    )
    xv, _ = transform.transform_fluxes(va.flux, va.err)
    xv, zv = torch.from_numpy(xv.astype(np.float32)), torch.from_numpy(va.z.astype(np.float32))
    rng = np.random.default_rng(config.seed)
    train_s, best, best_t = 0.0, math.inf, 0.0
    for _ in range(e_max):
        t_e = time.time()
        net.train()
        perm = rng.permutation(len(tr.z))
        for s in range(0, len(perm), config.batch_size):
            idx = perm[s : s + config.batch_size]
            (x,), z, w = prep({k: v[idx] for k, v in batch_all.items()}, augment=True)
            x, z, w = torch.from_numpy(x), torch.from_numpy(z), torch.from_numpy(w)
            loss = (net.loss(net(x), x, z) * w).sum() / w.sum().clamp_min(1e-6)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
        sched.step()
        train_s += time.time() - t_e
        net.eval()
        with torch.no_grad():
            val = float(net.loss(net(xv), xv, zv).mean())
        if val < best:
            best, best_t = val, time.time()
    return {
        "case": f"plain loop, torch {threads} thread{'s' if threads > 1 else ''}",
        "samples_s": len(tr.z) * e_max / train_s,
        "wall": time.time() - t0,
        "to_best": best_t - t0,
        "best_val": best,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every case and print a markdown table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train", required=True, help="labelled object table (Parquet)")
    p.add_argument("--rows", type=int, help="use only the first ROWS rows")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    p.add_argument("--skip-plain", action="store_true", help="only the Ray Train cases")
    args = p.parse_args(argv)
    config = TrainConfig(
        members=1, epochs=args.epochs, patience=args.epochs, batch_size=args.batch_size
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = _subset(args.train, args.rows, tmp)
        lab = read_labelled(path, config)
        fit = lab.take(train_mask(lab.object_id, config, None))
        transform = FeatureTransform.fit(fit.flux, fit.err, columns=config.columns)
        n_train = len(fit.z)
        if not args.skip_plain:
            for threads in (1, 2):
                rows.append(plain_case(path, config, transform, threads))
                print(rows[-1], flush=True)
        init_ray(num_cpus=args.num_cpus)
        for workers in (1, 2):
            rows.append(ray_case(path, config, transform, workers, tmp))
            print(rows[-1], flush=True)
    print(
        f"\n{n_train} training rows, {args.epochs} epochs, batch {args.batch_size} per worker, "
        f"torch {torch.__version__}, ray {ray.__version__}\n"
    )
    print("| case | training samples/s | fit wall s | s to best val loss | best val loss |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['samples_s']:,.0f} | {r['wall']:.1f} | {r['to_best']:.1f} "
            f"| {r['best_val']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
