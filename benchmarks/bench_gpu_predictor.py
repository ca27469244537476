"""Predictor speed on one device: the network alone, the whole predictor, its host work.

    python benchmarks/bench_gpu_predictor.py --input shard.parquet --model models/ens5
    python benchmarks/bench_gpu_predictor.py --input shard.parquet --model models/ens5 \
        --image-model models/cnn --device cuda
    python benchmarks/bench_gpu_predictor.py --input shard.parquet --model models/ens5 --device cpu

In-process, no Ray needed: the same :class:`raypz.infer.CatalogPredictor` the pipeline's actors
run, on batches of an object table already in memory (Parquet decoding is not timed; the input
is tiled to ``--rows``). For the catalog ensemble (``--model``) and, with ``--image-model``, a
cutout CNN (cutouts synthesised: sky noise at the model's fitted pixel noise plus a round
galaxy; the speed does not depend on the pixels), it prints per batch size:

* network alone: the members and their mixtures on the grid (``predict_tensor``), inputs
  already on the device, nothing copied back;
* whole predictor: Arrow batch in -> features -> members -> summaries -> compact PDFs -> Arrow
  batch out, with 1 host thread and with ``--threads`` (what a Ray actor with that many
  concurrent calls does: one thread's Arrow and Parquet work overlaps the other's device work);
* host work per object outside torch (features, Arrow in and out, the HEALPix index and the
  staging writes the actor does after predicting), profiled with cProfile: the time of every
  call that is not a torch operation;
* on CUDA, the catalog against float32 on the CPU: largest difference of each column, rows
  whose z_mode moved by more than a grid step, compact-PDF levels that differ;
* on CPU, the same figures per core (run it with ``--device cpu``; torch uses one thread).
  There the host-work column also holds numpy's kernels of :mod:`raypz.rowops` and the work of
  tensor operators (``@``, ``*``, indexing), which cProfile books to their Python caller; on a
  GPU those are kernel launches, so the column is an upper bound of the host's own work.

Where Ray is installed (unless ``--end-to-end-rows 0``), it also runs ``jobs/infer_lsst.py`` on
``--end-to-end-rows`` of the same rows (with their cutouts for the CNN), written to a Parquet
file, and prints the job's rows/s (embedded Ray, start-up included). Needs numpy, pyarrow,
torch, safetensors, astropy and cdshealpix.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import pstats
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from raypz import compact, io
from raypz.catalog import plan_partitions, with_healpix29
from raypz.infer import CatalogPredictor, tasks
from raypz.models.ensemble import to_device
from raypz.pdf import SUMMARY_COLUMNS

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(table: pa.Table, batch: int) -> list[pa.Table]:
    return [table.slice(lo, batch) for lo in range(0, table.num_rows, batch)]


def time_network(predictor: CatalogPredictor, table: pa.Table, batch: int) -> float:
    """Objects/s of the members and mixtures alone: inputs on the device, nothing back."""
    ensemble, device = predictor.ensemble, predictor.ensemble.device
    x, _ = predictor.artifact.transform(table)
    images = None
    if predictor.artifact.cutouts is not None:
        raw, _ = predictor.artifact.cutouts.raw_from_batch(table)
        images = predictor.artifact.cutouts.stretch_tensor(to_device(raw, device))[0]
    xs = to_device(x, device)
    rows = [(xs[lo : lo + batch], None if images is None else images[lo : lo + batch])
            for lo in range(0, len(x), batch)]  # fmt: skip
    ensemble.predict_tensor(*rows[0])
    _sync(device)
    t0 = time.perf_counter()
    for r in rows:
        ensemble.predict_tensor(*r)
    _sync(device)
    return len(x) / (time.perf_counter() - t0)


def time_predictor(predictor: CatalogPredictor, table: pa.Table, batch: int, threads: int) -> float:
    """Objects/s of the whole predictor (Arrow in -> Arrow out) with ``threads`` host threads
    calling it concurrently, after a warm-up batch."""
    batches = _batches(table, batch)
    predictor(batches[0])
    t0 = time.perf_counter()
    if threads == 1:
        for b in batches:
            predictor(b)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(predictor, batches))
    return table.num_rows / (time.perf_counter() - t0)


def _is_torch(key: tuple) -> bool:
    """A cProfile entry that is torch's work: a torch function or tensor method."""
    filename, _, name = key
    return "torch" in filename or "torch" in name


def host_work(predictor: CatalogPredictor, table: pa.Table, batch: int, plan, root: str) -> dict:
    """Microseconds per object of the actor's work per batch (predict, HEALPix index, staging
    writes), split into torch operations (which wait for the device) and everything else."""
    cols = predictor.columns
    origin = {"node_id": "bench", "node_ip": "127.0.0.1", "device": str(predictor.ensemble.device)}
    sources = np.zeros(batch, dtype=np.int64)

    def actor_batch(b: pa.Table) -> None:
        out = with_healpix29(predictor(b), cols.ra, cols.dec)
        tasks.stage_block(out, sources[: b.num_rows], root, plan, origin)

    batches = _batches(table, batch)
    actor_batch(batches[0])
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    for b in batches:
        actor_batch(b)
    profile.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tottime, cumtime, ...)}
    in_torch = sum(v[2] for k, v in stats.items() if _is_torch(k))
    outside = sum(v[2] for k, v in stats.items() if not _is_torch(k))
    us = 1e6 / table.num_rows
    return {"wall": wall * us, "torch": in_torch * us, "host": outside * us}


def compare_with_cpu(model: str, table: pa.Table, device: str) -> None:
    """The catalog of ``device`` against float32 on the CPU, column by column."""
    a = CatalogPredictor(model, device)(table)
    b = CatalogPredictor(model, "cpu")(table)
    grid = CatalogPredictor(model, "cpu").artifact.grid
    print(f"  {device} vs CPU on {table.num_rows:,} rows, largest |difference|:")
    for name in SUMMARY_COLUMNS:
        d = np.abs(a[name].to_numpy(zero_copy_only=False) - b[name].to_numpy(zero_copy_only=False))
        print(f"    {name:9s} {np.nanmax(d):.2e} (median {np.nanmedian(d):.1e})")
    moved = np.abs(a["z_mode"].to_numpy() - b["z_mode"].to_numpy()) > 1.5 * grid.dz
    flags_differ = int((a["flags"].to_numpy() != b["flags"].to_numpy()).sum())
    print(f"    rows whose z_mode moved by more than a grid step: {int(moved.sum())}")
    print(f"    rows whose flags differ: {flags_differ}")
    la, lb = (compact.levels(t["pdf_start"], t["pdf"], grid.n).astype(int) for t in (a, b))
    diff = np.abs(la - lb)
    same = sum(x == y for x, y in zip(a["pdf"].to_pylist(), b["pdf"].to_pylist(), strict=True))
    print(
        f"    compact PDF levels: max difference {int(diff.max())} quanta; rows with any"
        f" difference {int((diff > 0).any(axis=1).sum())}; rows with identical bytes {same}"
    )


def with_synthetic_cutouts(table: pa.Table, predictor: CatalogPredictor, seed: int = 0) -> pa.Table:
    """``table`` with a cutout column of the image model's shape: sky noise at its fitted
    pixel noise and a round galaxy of random brightness (nJy/pixel). 8,192 distinct cutouts,
    repeated."""
    stretch = predictor.artifact.cutouts
    c, h, w = stretch.shape
    rng = np.random.default_rng(seed)
    n = min(8192, table.num_rows)
    sigma = np.asarray(stretch.sigma_njy, dtype=np.float32)[None, :, None, None]
    images = rng.standard_normal((n, c, h, w), dtype=np.float32) * sigma
    yy, xx = np.mgrid[:h, :w] - (h - 1) / 2
    profile = np.exp(-(xx**2 + yy**2) / (2 * 2.0**2)).astype(np.float32)
    images += rng.uniform(1, 200, (n, c, 1, 1)).astype(np.float32) * sigma * profile
    tiled = np.resize(images, (table.num_rows, c, h, w))
    column = pa.FixedShapeTensorArray.from_numpy_ndarray(tiled)
    return table.append_column(stretch.column, column)


def _tile(table: pa.Table, rows: int) -> pa.Table:
    reps = -(-rows // table.num_rows)
    return pa.concat_tables([table] * reps).slice(0, rows).combine_chunks()


def run_model(a: argparse.Namespace, model: str, label: str, table: pa.Table, plan) -> None:
    """Every figure for one model."""
    predictor = CatalogPredictor(model, a.device)
    device = predictor.ensemble.device
    if predictor.artifact.cutouts is not None:
        table = with_synthetic_cutouts(table, predictor)
    table = table.select(predictor.input_columns)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    members = len(predictor.ensemble.members)
    print(f"\n## {label}: {members} member(s) on {name} ({torch.get_num_threads()} torch threads)")
    print(
        f"| batch | network alone | whole predictor, 1 thread | whole predictor, {a.threads}"
        " threads | host work outside torch | torch calls |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for batch in (int(b) for b in a.batch_sizes.split(",")):
        net = time_network(predictor, table, batch)
        one = time_predictor(predictor, table, batch, 1)
        many = time_predictor(predictor, table, batch, a.threads)
        with tempfile.TemporaryDirectory() as root:
            work = host_work(predictor, table.slice(0, a.profile_rows), batch, plan, root)
        print(
            f"| {batch:,} | {net:,.0f}/s | {one:,.0f}/s | {many:,.0f}/s |"
            f" {work['host']:.2f} us/object | {work['torch']:.2f} us/object |",
            flush=True,
        )
    if a.end_to_end_rows and importlib.util.find_spec("ray") is not None:
        rows = table.slice(0, min(a.end_to_end_rows, a.distinct_rows))  # no tiled repeats
        rate = end_to_end(model, rows, a.device)
        print(f"jobs/infer_lsst.py on {rows.num_rows:,} rows, end to end: {rate:,.0f} rows/s")
    if device.type == "cuda":  # the CPU side of a CNN comparison is slow: fewer rows
        rows = a.compare_rows if predictor.artifact.cutouts is None else a.compare_rows // 5
        compare_with_cpu(model, table.slice(0, rows), str(device))


def end_to_end(model: str, table: pa.Table, device: str) -> float:
    """``jobs/infer_lsst.py`` (embedded Ray) over ``table`` written as one Parquet file: the
    rows/s its run summary reports."""
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(table, f"{tmp}/objects.parquet", row_group_size=16384)
        job = str(REPO / "jobs" / "infer_lsst.py")
        cmd = [sys.executable, job, "--input", f"{tmp}/objects.parquet", "--model", model,
               "--output", f"{tmp}/catalog", "--validate", "schema",
               "--device", device]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        summary = json.loads(Path(tmp, "catalog", "raypz_run_summary.json").read_text())
    return summary["rows_per_second"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--input", required=True, help="object-table Parquet file")
    p.add_argument("--model", required=True, help="catalog ensemble artifact directory")
    p.add_argument("--image-model", help="cutout CNN artifact directory (cutouts synthesised)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda[:n]")
    p.add_argument("--rows", type=int, default=400_000, help="rows timed (the input tiled)")
    p.add_argument("--image-rows", type=int, default=65_536, help="rows timed for the CNN")
    p.add_argument("--batch-sizes", default="16384,65536", help="comma-separated rows per call")
    p.add_argument("--threads", type=int, default=2, help="host threads calling the predictor")
    p.add_argument("--profile-rows", type=int, default=131_072, help="rows of the host profile")
    p.add_argument("--compare-rows", type=int, default=20_000, help="rows of the CPU comparison")
    p.add_argument(
        "--end-to-end-rows",
        type=int,
        default=200_000,
        help="rows for the jobs/infer_lsst.py run where Ray is installed (0: skip)",
    )
    a = p.parse_args(argv)
    if a.device == "cpu":
        torch.set_num_threads(1)
    base = pq.read_table(a.input)
    a.distinct_rows = base.num_rows
    cols = CatalogPredictor(a.model, "cpu").columns
    fs, inner = io.resolve(a.input)
    histogram = tasks.histogram_file(inner, fs, cols.ra, cols.dec, 10).histogram
    plan = plan_partitions(histogram, 1_000_000)
    run_model(a, a.model, "catalog ensemble", _tile(base, a.rows), plan)
    if a.image_model:
        run_model(a, a.image_model, "cutout CNN", _tile(base, a.image_rows), plan)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
