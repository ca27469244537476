"""Predictor speed on one device, and how far bf16 autocast on a GPU moves the PDFs.

    python benchmarks/bench_gpu_predictor.py --input shard.parquet --model models/ens5
    python benchmarks/bench_gpu_predictor.py --input shard.parquet --model models/ens5 --device cpu

In-process, no Ray: the same :class:`raypz.infer.CatalogPredictor` the pipeline's actors run,
on batches of an object table already in memory (Parquet decoding is not timed). Printed,
nothing asserted:

* objects/s of the whole predictor (features -> ensemble PDFs -> summaries -> compact PDFs)
  for each batch size, and of the ensemble alone (networks and mixture on the device, PDFs
  copied back), so the share of the host-side summaries and encoding is visible;
* on CUDA, with and without bf16 autocast: the speed, and the change against float32 on the
  CPU on the first rows (largest PDF difference relative to each row's peak, differences of
  every summary, rows whose z_mode moved by more than a grid step).

Needs only numpy, pyarrow, torch and safetensors (it runs on a bare GPU machine).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from raypz.infer.predictor import CatalogPredictor
from raypz.pdf import SUMMARY_COLUMNS, summarize


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_predictor(predictor: CatalogPredictor, table: pa.Table, batch: int) -> float:
    """Objects/s of the whole predictor over ``table`` in batches (after one warm-up batch)."""
    predictor(table.slice(0, batch))
    t0 = time.perf_counter()
    for lo in range(0, table.num_rows, batch):
        predictor(table.slice(lo, batch))
    return table.num_rows / (time.perf_counter() - t0)


def _inputs(predictor: CatalogPredictor, table: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
    """Features and, for an image model, stretched cutouts of the rows."""
    x, _ = predictor.artifact.transform(table)
    cutouts = predictor.artifact.cutouts
    return x, cutouts.from_batch(table)[0] if cutouts is not None else None


def time_ensemble(
    predictor: CatalogPredictor, x: np.ndarray, images: np.ndarray | None, batch: int
) -> float:
    """Objects/s of the ensemble alone (networks and mixture, PDFs back on the host)."""
    ensemble = predictor.ensemble

    def rows(lo: int) -> tuple[np.ndarray, np.ndarray | None]:
        return x[lo : lo + batch], None if images is None else images[lo : lo + batch]

    ensemble.predict(*rows(0))
    _sync(ensemble.device)
    t0 = time.perf_counter()
    for lo in range(0, len(x), batch):
        ensemble.predict(*rows(lo))
    _sync(ensemble.device)
    return len(x) / (time.perf_counter() - t0)


def compare_precision(model: str, table: pa.Table, device: str, amp: bool) -> None:
    """``device`` (bf16 autocast or not) against float32 on the CPU, on the rows of ``table``."""
    gpu, cpu = CatalogPredictor(model, device, amp), CatalogPredictor(model, "cpu")
    x, images = _inputs(cpu, table)
    p_gpu, _ = gpu.ensemble.predict(x, images)
    p_cpu, _ = cpu.ensemble.predict(x, images)
    grid = cpu.artifact.grid
    peak = np.maximum(p_cpu.max(axis=1), 1e-30)
    rel = float((np.abs(p_gpu - p_cpu).max(axis=1) / peak).max())
    s_gpu, s_cpu = summarize(p_gpu, grid), summarize(p_cpu, grid)
    label = "bf16 autocast" if amp else "float32"
    print(f"{label} on {device} vs float32 on CPU, {len(x):,} rows: max |dPDF| / peak {rel:.2e}")
    for name in SUMMARY_COLUMNS:
        d = np.abs(s_gpu[name] - s_cpu[name])
        print(f"  {name:9s} max |diff| {np.nanmax(d):.2e}  median {np.nanmedian(d):.2e}")
    modes_differ = np.abs(s_gpu["z_mode"] - s_cpu["z_mode"]) > 1.5 * grid.dz
    print(f"  rows whose z_mode moved by more than one grid step: {int(modes_differ.sum())}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--input", required=True, help="object-table Parquet file")
    p.add_argument("--model", required=True, help="artifact directory")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda[:n]")
    p.add_argument("--rows", type=int, default=200_000, help="rows to time (from the file start)")
    p.add_argument(
        "--batch-sizes", default="16384,65536,200000", help="comma-separated rows per call"
    )
    p.add_argument("--compare-rows", type=int, default=20_000, help="rows for the bf16 check")
    a = p.parse_args()
    for amp in (True, False) if torch.cuda.is_available() and a.device != "cpu" else (False,):
        run(a, amp)


def run(a: argparse.Namespace, amp: bool) -> None:
    """Timings and (on CUDA) the precision check, with or without autocast."""
    predictor = CatalogPredictor(a.model, a.device, amp)
    device = predictor.ensemble.device
    table = pq.read_table(a.input, columns=predictor.input_columns).slice(0, a.rows)
    table = table.combine_chunks()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = torch.get_num_threads()
    members = len(predictor.ensemble.members)
    print(f"# {members}-member ensemble on {name} ({threads} CPU threads), autocast {amp}")
    x, images = _inputs(predictor, table)
    for batch in (int(b) for b in a.batch_sizes.split(",")):
        whole = time_predictor(predictor, table, batch)
        nets = time_ensemble(predictor, x, images, batch)
        print(
            f"batch {batch:>7,}: predictor {whole:>12,.0f} objects/s;"
            f" ensemble alone {nets:>12,.0f} objects/s"
        )
    if device.type == "cuda":
        compare_precision(a.model, table.slice(0, a.compare_rows), str(device), amp)


if __name__ == "__main__":
    main()
