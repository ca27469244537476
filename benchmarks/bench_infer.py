"""Inference speed and memory: raypz's Ray Data pipeline against a plain single-process loop.

    python benchmarks/bench_infer.py                       # 1e6 rows (~5 min on 2 cores)
    python benchmarks/bench_infer.py --large-rows 10000000 # adds the 1e7-row memory run
    python benchmarks/bench_infer.py --rows 200000 --skip-ray   # a quick look

Both paths use the same 5-member artifact (default CatalogNet architecture, MDN head) on the
same simulated object shards. Printed, nothing asserted:

* plain loop: pyarrow iter_batches -> CatalogPredictor -> Parquet writer (the pipeline's
  staging settings), in one process, with 1 torch thread and with one per core; its rows/s
  and peak RSS. The faster of the two is the baseline the Ray pipeline is compared with;
* Ray pipeline: ``jobs/infer_lsst.py`` in a subprocess (embedded Ray), rows/s over its whole
  run and the peak of the summed RSS of the job process and its descendants (the whole embedded Ray
  session), sampled every 0.2 s;
* per-core rate (one torch thread) with the fraction of this core's float32 matmul peak that
  the ensemble's arithmetic reaches;
* the projection for a 2e10-object data release from the measured per-node rate.

The input is simulated once (1e6 rows, ~90 s) and tiled with shifted objectIds for larger runs
(identical rows are as expensive to predict as new ones).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from raypz import io
from raypz.catalog.write import FRAGMENT_WRITE_OPTIONS
from raypz.features import FeatureTransform, flux_arrays
from raypz.infer import CatalogPredictor
from raypz.models import CatalogNet, CatalogNetConfig, save_artifact
from raypz.sim import SurveyConfig
from raypz.sim.survey import write_shard
from raypz.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
ROWS_PER_FILE = 250_000


def make_inputs(workdir: Path, rows: int) -> Path:
    """Parquet shards of ``rows`` rows: one simulated 1e6 block tiled with shifted objectIds."""
    n_base = min(rows, 1_000_000)
    base = workdir / f"base_{n_base}"
    if not base.exists():
        config = SurveyConfig(n_objects=n_base, seed=5, rows_per_shard=ROWS_PER_FILE)
        base.mkdir(parents=True)
        for i in range(config.n_shards):
            write_shard(config, i, str(base))
    files = sorted(base.glob("*.parquet"))
    out = workdir / f"input_{rows}"
    if out.exists():
        return out
    out.mkdir()
    written, k = 0, 0
    while written < rows:
        table = pq.read_table(files[k % len(files)])
        table = table.slice(0, min(table.num_rows, rows - written))
        offset = (k // len(files)) * 10**12
        ids = pc.add(table["objectId"], pa.scalar(offset, pa.int64()))
        table = table.set_column(table.schema.get_field_index("objectId"), "objectId", ids)
        pq.write_table(table, out / f"part-{k:04d}.parquet", row_group_size=50_000)
        written += table.num_rows
        k += 1
    return out


def make_artifact(workdir: Path, inputs: Path, members: int) -> Path:
    """A ``members``-member artifact of the default architecture (weights: seeded init)."""
    path = workdir / f"model_{members}"
    if path.exists():
        return path
    table = pq.read_table(sorted(inputs.glob("*.parquet"))[0])
    transform = FeatureTransform.fit(*flux_arrays(table))
    grid, config = TrainConfig().grid, TrainConfig().net  # what a default training run writes
    z = torch.tensor(grid.values, dtype=torch.float32)
    states = []
    for m in range(members):
        torch.manual_seed(m)
        states.append(CatalogNet(transform.n_features, z, config).state_dict())
    save_artifact(
        str(path),
        name="bench",
        transform=transform,
        grid=grid,
        net_config=config,
        states=states,
        members=[{"seed": m} for m in range(members)],
        training={"note": "benchmark weights (untrained): speed only"},
        metrics={},
    )
    return path


def plain_loop(inputs: Path, model: Path, out: Path, batch: int, threads: int) -> dict:
    """Rows/s of read -> predict -> write in this process, written with the Ray pipeline's
    staging settings (the same Parquet work per row as its predictor actors do)."""
    torch.set_num_threads(threads)
    predictor = CatalogPredictor(str(model), device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    t0, rows = time.perf_counter(), 0
    for f in sorted(inputs.glob("*.parquet")):
        reader = pq.ParquetFile(f)
        with pq.ParquetWriter(out / f.name, predictor.schema, **FRAGMENT_WRITE_OPTIONS) as writer:
            for b in reader.iter_batches(batch_size=batch, columns=predictor.input_columns):
                result = predictor(pa.Table.from_batches([b]))
                writer.write_table(result)
                rows += result.num_rows
    seconds = time.perf_counter() - t0
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def _tree_memory(root: psutil.Process) -> tuple[int, int]:
    """Summed RSS and PSS (bytes) of a process and its descendants (an embedded Ray's GCS,
    raylet and workers descend from the driver). RSS counts shared pages (the object store)
    once per process that maps them; PSS splits them, so its sum is the real footprint."""
    rss = pss = 0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
    return rss, pss


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[str, float, int, int]:
    """Run ``cmd`` (with extra ``env``); its output, wall seconds and the peaks of summed RSS
    and PSS (bytes)."""
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", **(env or {})}
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, stop = [0, 0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss, pss = _tree_memory(proc)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    log, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd[1]} failed:\n{log[-4000:]}")
    return log, time.perf_counter() - t0, peak[0], peak[1]


def plain_subprocess(inputs: Path, model: Path, out: Path, batch: int, threads: int) -> dict:
    """:func:`plain_loop` in a fresh process, so its memory is measured like Ray's.

    numpy's BLAS (used for the PDF moments) gets ``threads`` threads too, as Ray gives its
    workers OMP_NUM_THREADS: by default OpenBLAS starts one thread per core, which made the
    1-thread loop use both cores and, side by side with another process, halved both.
    """
    cmd = [sys.executable, __file__, "--plain", str(inputs), str(model), str(out)]
    cmd += ["--batch-size", str(batch), "--threads", str(threads)]
    blas = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    log, _, rss, pss = run_measured(cmd, env=blas)
    result = json.loads(log.strip().splitlines()[-1])
    return {**result, "peak_rss": rss, "peak_pss": pss}


def ray_pipeline(inputs: Path, model: Path, out: Path, batch: int) -> dict:
    """Run jobs/infer_lsst.py in a subprocess into a fresh ``out`` (a finished catalog there
    would make the run a no-op); its summary plus the memory peaks."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        str(REPO / "jobs" / "infer_lsst.py"),
        "--input", str(inputs),
        "--model", str(model),
        "--output", str(out),
        "--batch-size", str(batch),
        "--validate", "schema",
    ]  # fmt: skip
    _, seconds, rss, pss = run_measured(cmd)
    summary = json.loads(io.read_bytes(str(out / "raypz_run_summary.json")))
    rows = summary["rows_out"]
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "job_rows_per_s": summary["rows_per_second"],
        "peak_rss": rss,
        "peak_pss": pss,
        "pdf_bytes_per_object": summary["pdf_bytes_per_object"],
        "stage_seconds": summary["stage_seconds"],
    }


def memory_scaling(inputs: Path, model: Path, work: Path, a: argparse.Namespace) -> None:
    """Peak memory of the Ray pipeline at ``--rows`` and ``--large-rows`` input rows."""
    small = ray_pipeline(inputs, model, work / "mem_small", a.batch_size)
    big = ray_pipeline(make_inputs(work, a.large_rows), model, work / "mem_large", a.batch_size)
    for rows, r in ((a.rows, small), (a.large_rows, big)):
        print(
            f"Ray at {rows:>12,} rows: {r['rows_per_s']:>8,.0f} rows/s, peak RSS sum"
            f" {r['peak_rss'] / 2**30:.2f} GiB, PSS sum {r['peak_pss'] / 2**30:.2f} GiB"
        )
    print(
        f"large / small: RSS {big['peak_rss'] / small['peak_rss']:.2f}x,"
        f" PSS {big['peak_pss'] / small['peak_pss']:.2f}x (target <= 1.25)"
    )


def matmul_peak_gflops() -> float:
    """This core's float32 matmul rate with one torch thread (GFLOP/s)."""
    torch.set_num_threads(1)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t0, n = time.perf_counter(), 10
    for _ in range(n):
        a @ b
    return 2 * 1024**3 * n / (time.perf_counter() - t0) / 1e9


def ensemble_flops_per_row(members: int, n_features: int, grid_n: int) -> float:
    """Multiply-adds x 2 of the linear layers run at prediction (the encoder, not the decoder)
    plus the MDN evaluation on the grid, per row."""
    c = CatalogNetConfig()
    dims = [n_features + c.latent_dim, *c.hidden]
    mlp = sum(a * b for a, b in itertools.pairwise(dims))
    encoder = n_features * c.dae_hidden + c.dae_hidden * c.latent_dim
    head = c.hidden[-1] * 3 * c.n_components
    mixture = grid_n * c.n_components * 6  # sub, scale, square, negate, exp, fma (not the clamp)
    return members * (2 * (mlp + encoder + head) + mixture)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the main comparison")
    p.add_argument("--large-rows", type=int, default=0, help="also run Ray on this many rows")
    p.add_argument("--members", type=int, default=5, help="ensemble members")
    p.add_argument("--batch-size", type=int, default=16384, help="rows per predictor call")
    p.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    p.add_argument(
        "--model",
        help="artifact to use (default: the default architecture with untrained weights; the"
        " arithmetic per row is the same for trained weights)",
    )
    p.add_argument("--skip-ray", action="store_true", help="only the in-process figures")
    p.add_argument(
        "--memory-only",
        action="store_true",
        help="only the Ray runs' memory at --rows and --large-rows (streaming check)",
    )
    p.add_argument("--plain", nargs=3, metavar=("INPUT", "MODEL", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.plain:  # child process of plain_subprocess
        inputs, model, out = (Path(x) for x in a.plain)
        print(json.dumps(plain_loop(inputs, model, out, a.batch_size, a.threads)))
        return
    work = Path(a.workdir or tempfile.mkdtemp(prefix="raypz-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs(work, a.rows)
    model = Path(a.model) if a.model else make_artifact(work, inputs, a.members)
    cores = os.cpu_count() or 1
    print(f"# {a.members}-member ensemble, {a.rows:,} rows, batch {a.batch_size}, {cores} cores")

    if a.memory_only:
        return memory_scaling(inputs, model, work, a)
    one = plain_subprocess(inputs, model, work / "plain1", a.batch_size, threads=1)
    peak = matmul_peak_gflops()
    flops = ensemble_flops_per_row(a.members, 23, TrainConfig().grid.n)
    print(
        f"per core (1 thread):    {one['rows_per_s']:>10,.0f} rows/s  (target >= 20,000),"
        f" peak RSS {one['peak_rss'] / 2**30:.2f} GiB"
    )
    print(
        f"  arithmetic: {flops / 1e6:.2f} MFLOP/row -> {one['rows_per_s'] * flops / 1e9:.1f}"
        f" GFLOP/s of this core's {peak:.1f} GFLOP/s matmul peak"
        f" ({100 * one['rows_per_s'] * flops / 1e9 / peak:.0f}%)"
    )
    plain = plain_subprocess(inputs, model, work / "plain", a.batch_size, threads=cores)
    print(
        f"plain loop ({cores} threads): {plain['rows_per_s']:>10,.0f} rows/s,"
        f" peak RSS {plain['peak_rss'] / 2**30:.2f} GiB"
    )
    # the baseline is the faster plain configuration: with small chunked ops, torch's intra-op
    # threads can cost more than they bring
    if one["rows_per_s"] > plain["rows_per_s"]:
        plain = one
    if a.skip_ray:
        return
    ray = ray_pipeline(inputs, model, work / "ray_catalog", a.batch_size)
    print(
        f"Ray pipeline:           {ray['rows_per_s']:>10,.0f} rows/s end to end"
        f" ({ray['job_rows_per_s']:,.0f} inside the job),"
        f" peak RSS sum {ray['peak_rss'] / 2**30:.2f} GiB (PSS sum {ray['peak_pss'] / 2**30:.2f})"
    )
    print(
        f"  Ray / faster plain loop: speed {ray['rows_per_s'] / plain['rows_per_s']:.2f}x"
        f" (target >= 0.8), memory {ray['peak_rss'] / plain['peak_rss']:.2f}x by RSS sum,"
        f" {ray['peak_pss'] / plain['peak_rss']:.2f}x by PSS sum (target <= 1.5);"
        f" PDF {ray['pdf_bytes_per_object']:.0f} bytes/object"
    )
    print("  seconds per stage of the job:", ray["stage_seconds"])
    if a.large_rows:
        big = ray_pipeline(
            make_inputs(work, a.large_rows), model, work / "ray_catalog_large", a.batch_size
        )
        print(
            f"Ray at {a.large_rows:,} rows: {big['rows_per_s']:,.0f} rows/s, peak RSS sum"
            f" {big['peak_rss'] / 2**30:.2f} GiB = {big['peak_rss'] / ray['peak_rss']:.2f}x the"
            f" {a.rows:,}-row run (PSS {big['peak_pss'] / ray['peak_pss']:.2f}x; target <= 1.25)"
        )
    node_rate = ray["rows_per_s"]
    hours_one_node = 2e10 / node_rate / 3600
    print(
        f"projection, 2e10 objects at {node_rate:,.0f} rows/s per {cores}-core node:"
        f" {hours_one_node:,.0f} node-hours (e.g. {hours_one_node / 100:,.1f} h on 100 nodes)"
    )


if __name__ == "__main__":
    main()
