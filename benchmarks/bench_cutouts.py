"""Cutouts apart from the object table (issue 15): what the join costs, and its memory.

    python benchmarks/bench_cutouts.py --workdir /tmp/bench-cutouts     # ~10 min on 2 cores
    python benchmarks/bench_cutouts.py --workdir W --repeats 1 --skip-memory   # a quick look

One wide field is simulated (``--shards`` object shards of ``--rows-per-shard`` rows, 32x32
cutouts) in the three layouts ``jobs/simulate_survey.py`` writes: the cutout column of the
object shards, a cutout store of Parquet shards and one of FITS files (the same seed gives the
same objects and cutouts in all three). One small fusion CNN (1 member, as in
tests/infer/test_cutout_store.py) is trained on a deep field once per workdir and reused.
Printed, nothing asserted:

* the join alone, in this process: rows/s of ``raypz.object_stream.read_object_file`` over one
  object file for the column layout (no join, the cutout column read) and for the two stores,
  at the chunk size the pipeline passes (the rows of one predictor call) and at
  ``CUTOUT_CHUNK_ROWS``;
* end to end: ``jobs/infer_lsst.py`` in a subprocess (embedded Ray, ``--num-cpus``) on the
  ``--shards`` shards in each layout, interleaved, ``--repeats`` times: cutouts/s over the
  subprocess's wall time, the job summary's ``rows_per_second`` (from Ray's start on) and the
  rows over its main pass, with the ratio store / column (issue 15: the join costs <= 15 %);
* memory: the store layouts on ``--memory-shards`` (1x) and 8x as many shards of the same
  size, the peak of the summed RSS (and PSS) of the job and its descendant processes
  (``bench_infer.run_measured``), and the 8x / 1x ratio (issue 15: <= 1.25). Memory is
  bounded by the streaming window (``--object-store-mb-per-actor``, 256 MB per actor): choose
  ``--memory-shards`` so that the 1x set already holds more cutouts than that, or the 1x run
  never fills the window and the ratio measures the window, not the join.

Files of the smaller sets are hard links to the simulated ones (no extra disk). Each file is
read from the page cache after the first run: this measures the CPU cost of the join, not a
disk's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_infer import run_measured

from raypz import io
from raypz.cutout_store import CUTOUT_CHUNK_ROWS, CutoutStore
from raypz.infer import InferConfig
from raypz.infer.predictor import input_columns
from raypz.models import load_artifact
from raypz.object_stream import CutoutJoin, read_object_file

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = ("column", "shards", "fits")
STORES = ("shards", "fits")
FUSION_FLAGS = [  # the small fusion CNN of tests/infer/test_cutout_store.py
    "--inputs", "fusion", "--members", "1", "--batch-size", "128", "--val-fraction", "0.2",
    "--cnn-stem-channels", "8", "--cnn-blocks", "16", "16", "--cnn-hidden", "32",
    "--calibration-rows", "200", "--seed", "5",
]  # fmt: skip


def _job(script: str, *args: str) -> str:
    """Run ``jobs/<script>`` with ``args``; its output (RuntimeError with it on failure)."""
    cmd = [sys.executable, str(REPO / "jobs" / script), *args]
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{script} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc.stdout


def simulate(work: Path, layout: str, shards: int, a: argparse.Namespace) -> Path:
    """The wide field in ``layout``: ``work/sim/<layout>/{objects,cutouts}``, written once."""
    out = work / "sim" / layout
    done = out / "done.json"
    want = {"shards": shards, "rows": a.rows_per_shard, "size": a.cutout_size, "seed": a.seed}
    if done.exists() and json.loads(done.read_text()) == want:
        return out
    shutil.rmtree(out, ignore_errors=True)
    args = ["--n-objects", str(shards * a.rows_per_shard), "--seed", str(a.seed)]
    args += ["--field", "wide", "--cutouts", "--cutout-size", str(a.cutout_size)]
    args += ["--rows-per-shard", str(a.rows_per_shard), "--cutout-layout", layout]
    args += ["--output", str(out / "objects"), "--num-cpus", str(a.num_cpus)]
    if layout != "column":
        args += ["--cutout-output", str(out / "cutouts")]
    _job("simulate_survey.py", *args)
    done.write_text(json.dumps(want))
    return out


def subset(work: Path, layout: str, shards: int) -> tuple[str, str | None]:
    """(object table, cutout store or None) of the first ``shards`` shards of ``layout``'s
    simulation: directories of hard links, made once."""
    sim = work / "sim" / layout
    out = work / "sets" / f"{layout}_{shards}"
    parts = ["objects"] if layout == "column" else ["objects", "cutouts"]
    if not out.exists():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for part in parts:
            files = sorted(p for p in (sim / part).iterdir() if p.name.startswith("shard-"))
            if len(files) < shards:
                raise RuntimeError(f"{sim / part}: {len(files)} shards, {shards} wanted")
            (tmp / part).mkdir(parents=True)
            for f in files[:shards]:
                os.link(f, tmp / part / f.name)
        tmp.rename(out)
    store = None if layout == "column" else str(out / "cutouts")
    return str(out / "objects"), store


def train_model(work: Path, a: argparse.Namespace) -> Path:
    """The fusion CNN, trained once per workdir on a deep field with a Parquet cutout store."""
    model = work / "model"
    if (model / "model.json").exists():
        return model
    deep = work / "deep"
    shutil.rmtree(deep, ignore_errors=True)
    sim = ["--n-objects", str(a.train_rows), "--seed", "32", "--field", "deep", "--cutouts"]
    sim += ["--cutout-size", str(a.cutout_size), "--rows-per-shard", str(a.train_rows // 2)]
    sim += ["--cutout-layout", "shards", "--output", str(deep / "objects")]
    sim += ["--cutout-output", str(deep / "cutouts"), "--num-cpus", str(a.num_cpus)]
    _job("simulate_survey.py", *sim)
    t0 = time.perf_counter()
    _job(
        "train_ensemble.py",
        "--train", str(deep / "objects"),
        "--cutouts", str(deep / "cutouts"),
        "--output", str(model),
        "--name", "bench-fusion",
        "--epochs", str(a.epochs),
        "--num-cpus", str(a.num_cpus),
        *FUSION_FLAGS,
    )  # fmt: skip
    print(f"# trained the fusion CNN in {time.perf_counter() - t0:.0f} s: {model}", flush=True)
    return model


def infer(
    objects: str,
    store: str | None,
    model: Path,
    out: Path,
    num_cpus: int,
) -> dict:
    """``jobs/infer_lsst.py`` in a subprocess into a fresh ``out``: rates and memory peaks."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        str(REPO / "jobs" / "infer_lsst.py"),
        "--input", objects,
        "--model", str(model),
        "--output", str(out),
        "--num-cpus", str(num_cpus),
        "--validate", "schema",
    ]  # fmt: skip
    if store is not None:
        cmd += ["--cutouts", store]
    _, seconds, rss, pss = run_measured(cmd)
    summary = json.loads(io.read_bytes(str(out / "raypz_run_summary.json")))
    shutil.rmtree(out, ignore_errors=True)
    rows = summary["rows_out"]
    stages = summary["stage_seconds"]
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "job_rows_per_s": summary["rows_per_second"],
        "main_rows_per_s": rows / stages["main_pass"],
        "stages": stages,
        "peak_rss": rss,
        "peak_pss": pss,
        "no_cutout": summary["flagged"].get("no_cutout", 0),
    }


def micro(work: Path, model: Path, chunk_rows: int, repeats: int) -> dict[str, list[float]]:
    """Rows/s of ``read_object_file`` on the first object file of each layout (tables
    consumed, nothing else done with them), interleaved, ``repeats`` times after a warm-up."""
    artifact = load_artifact(str(model))
    shape = artifact.cutouts.shape
    columns = input_columns(artifact)
    rates: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    for rep in range(repeats + 1):  # round 0: a warm-up (page cache, imports), not timed
        for layout in LAYOUTS:
            objects, store = subset(work, layout, 1)
            path = str(Path(objects) / "shard-00000.parquet")
            join = None
            cols = columns
            if store is not None:
                cols = [c for c in columns if c != artifact.cutouts.column]
                join = CutoutJoin(CutoutStore.open(store), artifact.cutouts.column, shape)
            t0, rows = time.perf_counter(), 0
            for part in read_object_file(path, objects, cols, join, chunk_rows):
                rows += part.num_rows
            if rep:
                rates[layout].append(rows / (time.perf_counter() - t0))
    return rates


def _spread(values: list[float], fmt: str = ",.0f") -> str:
    """Median and range of ``values``."""
    if len(values) == 1:
        return format(values[0], fmt)
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workdir", default=None, help="scratch directory, reused (default: temp)")
    p.add_argument("--shards", type=int, default=8, help="object shards of the speed runs")
    p.add_argument("--rows-per-shard", type=int, default=2000, help="rows per object shard")
    p.add_argument("--cutout-size", type=int, default=32, help="cutout side (pixels)")
    p.add_argument("--memory-shards", type=int, default=2, help="shards of the 1x memory runs")
    p.add_argument("--memory-factor", type=int, default=8, help="the large memory run's size")
    p.add_argument("--repeats", type=int, default=2, help="runs of each measurement")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--seed", type=int, default=7, help="simulation seed of the wide field")
    p.add_argument("--train-rows", type=int, default=4000, help="deep-field training rows")
    p.add_argument("--epochs", type=int, default=1, help="training epochs of the fusion CNN")
    p.add_argument("--model", default=None, help="an image artifact to use instead of training")
    p.add_argument("--skip-speed", action="store_true", help="no end-to-end speed runs")
    p.add_argument("--skip-memory", action="store_true", help="no memory runs")
    a = p.parse_args()

    work = Path(a.workdir or tempfile.mkdtemp(prefix="raypz-bench-cutouts-"))
    work.mkdir(parents=True, exist_ok=True)
    big = a.memory_shards * a.memory_factor
    most = max(a.shards, 0 if a.skip_memory else big)
    t0 = time.perf_counter()
    for layout in LAYOUTS:
        simulate(work, layout, a.shards if layout == "column" else most, a)
    print(f"# data ready in {time.perf_counter() - t0:.0f} s under {work}", flush=True)
    model = Path(a.model) if a.model else train_model(work, a)
    artifact = load_artifact(str(model))
    call_rows = InferConfig().rows_per_batch(artifact.cutouts.shape)
    cores = os.cpu_count() or 1
    print(
        f"# {a.shards} x {a.rows_per_shard} rows, cutouts {artifact.cutouts.shape},"
        f" {cores} cores (embedded Ray: {a.num_cpus} CPUs), {a.repeats} repeats interleaved,"
        f" rows per predictor call {call_rows}",
        flush=True,
    )
    table: list[tuple[str, str]] = []

    for chunk in (call_rows, CUTOUT_CHUNK_ROWS):
        rates = micro(work, model, chunk, max(a.repeats, 3))
        for layout in LAYOUTS:
            line = f"read_object_file {layout}, chunk {chunk}"
            table.append((line, f"{_spread(rates[layout])} rows/s"))
            print(f"{line}: {table[-1][1]}", flush=True)

    if not a.skip_speed:
        runs: dict[str, list[dict]] = {layout: [] for layout in LAYOUTS}
        for rep in range(a.repeats):
            for layout in LAYOUTS:
                objects, store = subset(work, layout, a.shards)
                r = infer(objects, store, model, work / "out" / layout, a.num_cpus)
                runs[layout].append(r)
                print(
                    f"speed {layout} #{rep + 1}: {r['rows']} rows in {r['seconds']:.1f} s ="
                    f" {r['rows_per_s']:,.0f}/s end to end, {r['job_rows_per_s']:,.0f}/s in"
                    f" the job, {r['main_rows_per_s']:,.0f}/s main pass; stages {r['stages']};"
                    f" peak RSS {r['peak_rss'] / 2**30:.2f} GiB; no_cutout {r['no_cutout']}",
                    flush=True,
                )
        for layout in LAYOUTS:
            rs = runs[layout]
            table.append(
                (
                    f"infer {layout}, {a.shards} shards: cutouts/s end to end | job | main pass",
                    " | ".join(
                        _spread([r[k] for r in rs])
                        for k in ("rows_per_s", "job_rows_per_s", "main_rows_per_s")
                    ),
                )
            )
        for layout in STORES:
            # ratio of the runs of the same round (run next to each other)
            ratios = {
                k: [s[k] / c[k] for s, c in zip(runs[layout], runs["column"], strict=True)]
                for k in ("rows_per_s", "job_rows_per_s", "main_rows_per_s")
            }
            table.append(
                (
                    f"  {layout} / column (target >= 0.85) end to end | job | main pass",
                    " | ".join(_spread(v, ".2f") for v in ratios.values()),
                )
            )

    if not a.skip_memory:
        peaks: dict[tuple[str, int], list[dict]] = {}
        for rep in range(a.repeats):
            for name in STORES:
                for shards in (a.memory_shards, big):
                    objects, store = subset(work, name, shards)
                    out = work / "out" / f"mem_{name}"
                    r = infer(objects, store, model, out, a.num_cpus)
                    peaks.setdefault((name, shards), []).append(r)
                    print(
                        f"memory {name} {shards} shards #{rep + 1}: peak RSS sum"
                        f" {r['peak_rss'] / 2**30:.2f} GiB, PSS sum"
                        f" {r['peak_pss'] / 2**30:.2f} GiB ({r['rows_per_s']:,.0f} rows/s)",
                        flush=True,
                    )
        for name in dict.fromkeys(name for name, _ in peaks):
            small, large = peaks[(name, a.memory_shards)], peaks[(name, big)]
            for key, kind in (("peak_rss", "RSS"), ("peak_pss", "PSS")):
                table.append(
                    (
                        f"memory {name}: peak {kind} sum GiB {a.memory_shards} | {big} shards",
                        f"{_spread([r[key] / 2**30 for r in small], '.2f')} |"
                        f" {_spread([r[key] / 2**30 for r in large], '.2f')}",
                    )
                )
                ratios = [b[key] / s[key] for s, b in zip(small, large, strict=True)]
                table.append(
                    (
                        f"  {kind} {a.memory_factor}x / 1x (target <= 1.25)",
                        _spread(ratios, ".2f"),
                    )
                )

    width = max(len(k) for k, _ in table)
    print("\nmedian (min-max) of the runs:")
    for k, v in table:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
