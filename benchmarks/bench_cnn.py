"""Cutouts/s of the image networks: training steps, ensemble inference, and the Ray pipeline.

    python benchmarks/bench_cnn.py                          # ~3 min on 2 CPU cores
    python benchmarks/bench_cnn.py --size 32 --rows 4000 --ray

Cutouts are simulated in-process (wide field, Y10, ``--size`` pixels). For the default CNN
(``ImageNetConfig()``) and its catalog fusion variant, on the device picked at run time (CUDA
with bf16 autocast and channels-last when present, else the CPU with torch's threads), it
prints:

- training cutouts/s: forward + backward + AdamW step on in-memory batches of each
  ``--train-batch`` size, flips/rotations and the stretch included (the production
  ``BatchPreparer``), after one warm-up step;
- inference cutouts/s: ``EnsemblePredictor.predict`` (PDFs on the 701-point grid) for a
  ``--members`` ensemble, batches of ``--infer-batch`` rows run in chunks of
  ``IMAGE_CHUNK_ROWS``;
- with ``--ray``: rows/s of ``jobs/infer_lsst.py``'s pipeline (read Parquet -> actor pool ->
  HATS catalog) over the same cutouts, start-up included.

Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from raypz.features import FeatureTransform, flux_arrays
from raypz.features.cutouts import CutoutStretch, cutout_array
from raypz.models import EnsemblePredictor, ImageNetConfig, load_artifact, save_artifact
from raypz.models.artifact import build_network
from raypz.models.ensemble import IMAGE_CHUNK_ROWS, pick_device
from raypz.pdf import ZGrid
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train.batches import BatchPreparer
from raypz.train.config import TrainConfig


def _train_rate(
    config: TrainConfig, transform, stretch, table: pa.Table, batch: int, steps: int, device
) -> float:
    """Training cutouts/s of ``steps`` optimiser steps of ``batch`` rows."""
    torch.manual_seed(0)
    net = build_network(config.network, transform, config.grid, stretch).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    prep = BatchPreparer(transform, config, 0, stretch)
    c = config.columns
    names = [*c.flux_columns(), *c.flux_err_columns(), c.redshift]
    # numpy columns, as Ray Data hands them to the training loop
    columns = {name: table[name].to_numpy() for name in names}
    columns[c.cutout] = cutout_array(table[c.cutout])[0]
    amp = device.type == "cuda"
    t0 = 0.0
    for step in range(steps + 1):  # step 0 warms up
        if step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        lo = (step * batch) % max(1, len(columns["redshift"]) - batch)
        rows = {name: values[lo : lo + batch] for name, values in columns.items()}
        (x, images), z, w = prep(rows, augment=True)
        xs = [torch.from_numpy(a).to(device) for a in (x, images, z, w)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = net(xs[0], xs[1])
            loss = (net.loss(out, xs[0], xs[2]) * xs[3]).sum() / xs[3].sum().clamp_min(1e-6)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def _infer_rate(artifact_dir: str, table: pa.Table, batch: int, device: str) -> float:
    """Inference cutouts/s of the ensemble on ``batch``-row calls (stretch included)."""
    artifact = load_artifact(artifact_dir)
    ensemble = EnsemblePredictor(artifact, device)
    n = min(table.num_rows, max(batch, 2 * IMAGE_CHUNK_ROWS))
    sub = table.slice(0, n)
    x, _ = artifact.transform(sub)
    images, _ = artifact.cutouts.from_batch(sub)
    ensemble.predict(x[:64], images[:64])  # warm-up
    t0 = time.perf_counter()
    for lo in range(0, n, batch):
        ensemble.predict(x[lo : lo + batch], images[lo : lo + batch])
    return n / (time.perf_counter() - t0)


def _artifact(path: str, config: TrainConfig, transform, stretch, members: int) -> str:
    """An artifact of ``members`` untrained networks (the speed does not depend on training)."""
    states = []
    for m in range(members):
        torch.manual_seed(m)
        states.append(build_network(config.network, transform, config.grid, stretch).state_dict())
    save_artifact(
        path,
        name="bench",
        transform=transform,
        grid=config.grid,
        net_config=config.network,
        states=states,
        members=[{"seed": m} for m in range(members)],
        training={"note": "untrained, benchmarks/bench_cnn.py"},
        metrics={},
        cutouts=stretch,
    )
    return path


def _ray_rate(tmp: str, table: pa.Table, artifact_dir: str) -> float:
    from raypz.infer import InferConfig, run_inference

    pq.write_table(table, f"{tmp}/input.parquet", row_group_size=1024)
    summary = run_inference(f"{tmp}/input.parquet", artifact_dir, f"{tmp}/catalog", InferConfig())
    return summary.rows_per_second


def main(argv: list[str] | None = None) -> int:
    """Run the cases and print a markdown table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=32, help="cutout side, pixels (default 32)")
    p.add_argument("--rows", type=int, default=2048, help="simulated cutouts (default 2048)")
    p.add_argument("--train-batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--steps", type=int, default=8, help="timed training steps per case")
    p.add_argument("--infer-batch", type=int, default=1024, help="rows per predict call")
    p.add_argument("--members", type=int, default=1, help="ensemble members at inference")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice; 1 avoids oversubscription on a "
        "shared machine)",
    )
    p.add_argument("--ray", action="store_true", help="also time the Ray inference pipeline")
    a = p.parse_args(argv)
    device = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    survey = SurveyConfig(n_objects=a.rows, seed=7, cutouts=True, cutout_size=a.size)
    t0 = time.perf_counter()
    table = simulate_shard(survey, 0)
    seconds = time.perf_counter() - t0
    print(f"simulated {table.num_rows} cutouts of {a.size}x{a.size} in {seconds:.1f} s")
    transform = FeatureTransform.fit(*flux_arrays(table))
    raw, usable = cutout_array(table["cutout"])
    stretch = CutoutStretch.fit(raw[usable])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fusion in (False, True):
            name = "CNN + catalog fusion" if fusion else "CNN"
            config = TrainConfig(grid=ZGrid(0.0, 3.5, 701), image=ImageNetConfig(fusion=fusion))
            for batch in a.train_batch:
                rate = _train_rate(config, transform, stretch, table, batch, a.steps, device)
                rows.append((name, "training step", batch, rate))
                print(rows[-1], flush=True)
            model = _artifact(f"{tmp}/{int(fusion)}", config, transform, stretch, a.members)
            rate = _infer_rate(model, table, a.infer_batch, a.device)
            rows.append((name, f"inference, {a.members} member(s)", a.infer_batch, rate))
            print(rows[-1], flush=True)
            if a.ray and not fusion:
                rate = _ray_rate(tmp, table, model)
                rows.append((name, "Ray pipeline (jobs/infer_lsst.py)", "auto", rate))
                print(rows[-1], flush=True)
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {threads} threads"
    print(f"\n{a.size}x{a.size} cutouts, {where}, torch {torch.__version__}\n")
    print("| network | case | batch | cutouts/s |")
    print("|---|---|---:|---:|")
    for name, case, batch, rate in rows:
        print(f"| {name} | {case} | {batch} | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
