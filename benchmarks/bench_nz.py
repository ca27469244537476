"""n(z) of a whole catalog: ``jobs/nz.py`` (dask over HATS partitions) against loading every PDF.

    python benchmarks/bench_nz.py                         # builds a 1e6-row catalog (~1 min)
    python benchmarks/bench_nz.py --catalog CAT           # an existing PDF catalog

Builds (unless given) a HATS PDF catalog of ``--rows`` synthetic objects written with
raypz.catalog's writer: two-peaked PDFs on the default 351-point grid, stored in the compact
form (raypz.compact) like inference's output, summaries from raypz.pdf.summarize, 1% of the rows
without a PDF (flag NO_PDF), partitions of at most ``--max-rows-per-partition`` rows. Then runs,
each in its own process:

* ``jobs/nz.py`` (threads scheduler, one worker per core);
* the direct stacking: ``read_predictions`` of the whole catalog (every PDF decoded in one
  process, (N, G) float32), rows binned on z_mode and averaged per bin with numpy.

Printed, nothing asserted: wall time and peak RSS of each process (``ru_maxrss`` from
``os.wait4``: the process alone, which holds all the work with a threads scheduler), rows per
bin of both, and the largest absolute difference between their n(z).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from raypz import compact
from raypz import flags as fl
from raypz.catalog import (
    PixelHistogram,
    finalize_catalog,
    plan_partitions,
    split_by_partition,
    with_healpix29,
    write_partition,
)
from raypz.metrics import TOMO_EDGES, bin_index
from raypz.metrics.nz_file import read_nz
from raypz.pdf import SUMMARY_COLUMNS, ZGrid, summarize
from raypz.predictions import Z_GRID_KEY, read_predictions

REPO = Path(__file__).resolve().parents[1]
GRID = ZGrid()
NO_PDF_FRACTION = 0.01


def synthetic_pdfs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two-peaked PDFs (N, G) float32: a main peak of width 0.03 (1 + z) at z in [0.05, 3) and a
    secondary one a fifth as high; NO_PDF_FRACTION of the rows all zero (no PDF)."""
    z = rng.uniform(0.05, 3.0, n)[:, None]
    z2 = rng.uniform(0.05, 3.4, n)[:, None]
    zg = GRID.values
    pdf = np.exp(-0.5 * ((zg - z) / (0.03 * (1 + z))) ** 2)
    pdf += 0.2 * np.exp(-0.5 * ((zg - z2) / 0.08) ** 2)
    pdf[rng.random(n) < NO_PDF_FRACTION] = 0.0
    return pdf.astype(np.float32)


def partition_rows(piece: pa.Table, seed: int) -> pa.Table:
    """One partition's catalog columns (summaries, flags, compact PDFs) for its positions."""
    rng = np.random.default_rng(seed)
    pdf = synthetic_pdfs(rng, piece.num_rows)
    stats = summarize(pdf, GRID)
    null = ~pdf.any(axis=1)
    start, values = compact.encode(pdf)
    for name in SUMMARY_COLUMNS:
        piece = piece.append_column(name, pa.array(stats[name].astype(np.float32), mask=null))
    piece = piece.append_column("flags", pa.array(np.where(null, fl.NO_PDF, 0).astype(np.int32)))
    piece = piece.append_column("pdf_start", pa.array(start, pa.uint16()))
    return piece.append_column("pdf", values)


def build_catalog(root: str, rows: int, max_rows: int, seed: int = 0) -> None:
    """A HATS PDF catalog of ``rows`` objects spread over a 20 x 20 degree patch."""
    rng = np.random.default_rng(seed)
    positions = pa.table(
        {
            "objectId": np.arange(rows, dtype=np.int64),
            "coord_ra": rng.uniform(0.0, 20.0, rows),
            "coord_dec": rng.uniform(-10.0, 10.0, rows),
        }
    )
    positions = with_healpix29(positions, "coord_ra", "coord_dec")
    histogram = PixelHistogram.from_healpix29(positions["_healpix_29"].to_numpy(), order=10)
    plan = plan_partitions(histogram, max_rows_per_partition=max_rows)
    metadata = {Z_GRID_KEY.decode(): json.dumps(GRID.to_dict())}
    for i, (norder, npix, piece) in enumerate(split_by_partition(positions, plan)):
        write_partition(root, norder, npix, partition_rows(piece, seed + 1 + i), metadata)
    finalize_catalog(root, "bench_nz", "coord_ra", "coord_dec", plan=plan)


def direct_stacking(catalog: str, edges: tuple[float, ...], out: str) -> None:
    """The reference, run in a child process: every PDF decoded at once, binned, averaged;
    saves the (B, G) stacks and (B,) counts to ``out`` (.npz)."""
    pred = read_predictions(catalog, columns=["z_mode", "flags"])
    has = ((pred.table["flags"].to_numpy() & fl.NO_PDF) == 0) & pred.pdf.any(axis=1)
    idx = np.where(has, bin_index(pred.table["z_mode"].to_numpy(zero_copy_only=False), edges), -1)
    stacks = np.zeros((len(edges) - 1, pred.grid.n))
    for b in range(len(edges) - 1):
        if (idx == b).any():
            stacks[b] = pred.pdf[idx == b].mean(axis=0, dtype=np.float64)
    counts = np.bincount(idx[idx >= 0], minlength=len(edges) - 1)
    np.savez(out, stacks=stacks, counts=counts)


def build_catalog_in_child(root: str, rows: int, max_rows: int) -> None:
    """:func:`build_catalog` in a child process, so that this one stays small: a child forked
    from it starts its ``ru_maxrss`` at this process's RSS (exec keeps it), which would hide
    the measured job's own peak under the builder's."""
    cmd = [sys.executable, __file__, "--build", root, "--rows", str(rows)]
    subprocess.run([*cmd, "--max-rows-per-partition", str(max_rows)], check=True)


def run_measured(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd``; its wall seconds and peak RSS (bytes, ``ru_maxrss`` of that process, which
    starts at this process's RSS when forked: keep this one small)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd[1]} failed:\n{log[-4000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss * 1024


def catalog_parser(description: str) -> argparse.ArgumentParser:
    """A benchmark's parser with the flags of the catalog it measures (see :func:`catalog_of`)."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the built catalog")
    p.add_argument("--max-rows-per-partition", type=int, default=100_000, metavar="N")
    p.add_argument("--catalog", help="an existing PDF catalog (default: build one)")
    p.add_argument("--workdir", help="where the catalog and outputs go (default: a temp dir)")
    return p


def catalog_of(a: argparse.Namespace, work: Path) -> str:
    """The catalog the flags name, or one built under ``work`` (in a child process)."""
    if a.catalog is not None:
        return a.catalog
    catalog = str(work / "catalog")
    t0 = time.perf_counter()
    build_catalog_in_child(catalog, a.rows, a.max_rows_per_partition)
    print(f"built {a.rows:,} rows at {catalog} in {time.perf_counter() - t0:.0f} s")
    return catalog


def main(argv: list[str] | None = None) -> int:
    p = catalog_parser(__doc__)
    p.add_argument("--bins", type=float, nargs="+", default=list(TOMO_EDGES), metavar="EDGE")
    p.add_argument("--direct", nargs=2, metavar=("CATALOG", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--build", metavar="CATALOG", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    edges = tuple(a.bins)
    if a.direct:  # the child process of the direct stacking
        direct_stacking(a.direct[0], edges, a.direct[1])
        return 0
    if a.build:  # the child process that builds the catalog
        build_catalog(a.build, a.rows, a.max_rows_per_partition)
        return 0
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_nz_"))
    catalog = catalog_of(a, work)
    bins = [str(e) for e in edges]
    job = [sys.executable, str(REPO / "jobs" / "nz.py"), "--catalog", catalog]
    job_s, job_rss = run_measured([*job, "--output", str(work / "nz"), "--bins", *bins])
    ref = str(work / "direct.npz")
    direct_s, direct_rss = run_measured(
        [sys.executable, __file__, "--direct", catalog, ref, "--bins", *bins]
    )
    _, table, run = read_nz(str(work / "nz" / "nz.parquet"))
    expected = np.load(ref)
    diff = np.abs(np.array(table["nz"].to_pylist()) - expected["stacks"]).max()
    print(
        f"catalog: {run['rows']:,} rows, {run['partitions']} partitions, {run['no_pdf']:,} no PDF"
    )
    print(f"jobs/nz.py      : {job_s:6.1f} s, peak RSS {job_rss / 2**20:7.0f} MiB")
    print(f"direct stacking : {direct_s:6.1f} s, peak RSS {direct_rss / 2**20:7.0f} MiB")
    print(f"rows per bin equal: {table['count'].to_pylist() == expected['counts'].tolist()}")
    print(f"max |n(z) job - n(z) direct| = {diff:.2e} (per unit z)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
