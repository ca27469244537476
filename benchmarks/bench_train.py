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

The same member trained in process without Ray (``raypz.train.member.train_member`` on the
table in memory, torch with 1 and with 2 threads) gives the reference. With DDP each worker
takes ``--batch-size`` rows per step, so 2 workers take half the steps per epoch with twice the
effective batch; compare the validation losses as well as the speed. Figures only; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import pyarrow.parquet as pq
import ray
import torch

from raypz.features import FeatureTransform
from raypz.ray_runtime import init_ray
from raypz.train.config import TrainConfig
from raypz.train.datasets import member_datasets
from raypz.train.ensemble import fit_on_ray
from raypz.train.labelled import member_rows, read_labelled, read_training_rows, train_mask
from raypz.train.member import MemberProgress, MemberSpec, TableBatches, train_member
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
    t0 = time.time()
    fit = fit_on_ray(
        f"bench-w{workers}", f"{tmp}/ckpt", datasets, MemberSpec(config, transform, 0), res
    )
    return _figures(f"Ray Train, {workers} worker(s) x {res.cpus_per_worker} CPU", fit.progress, t0)


def in_process_case(path: str, config: TrainConfig, transform: FeatureTransform, threads: int):
    """The same member trained in this process (``raypz.train.member.train_member`` on the
    table in memory), torch with ``threads`` threads."""
    torch.set_num_threads(threads)
    t0 = time.time()
    table = read_training_rows(path, config)
    train, val = (TableBatches(member_rows(table, config, None, want)) for want in (True, False))
    result = train_member(MemberSpec(config, transform, 0), train, val, device="cpu")
    return _figures(f"in process, torch {threads} thread(s)", result.progress, t0)


def _figures(case: str, progress: MemberProgress, t0: float) -> dict:
    return {
        "case": case,
        "samples_s": progress.train_rows / progress.train_seconds,
        "wall": time.time() - t0,
        "to_best": progress.best_wall_time - t0,
        "best_val": progress.best_loss,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every case and print a markdown table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train", required=True, help="labelled object table (Parquet)")
    p.add_argument("--rows", type=int, help="use only the first ROWS rows")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    p.add_argument("--skip-in-process", action="store_true", help="only the Ray Train cases")
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
        if not args.skip_in_process:
            for threads in (1, 2):
                rows.append(in_process_case(path, config, transform, threads))
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
