"""The benchmarks a GPU session runs on the device (no Ray there) still run: on the CPU, at a
toy size. Their figures are not checked (tests never assert on speed); their own checks are.
bench_gpu_predictor.py had passed a filesystem of None to the first-pass scan since its
signature changed, and no test ran it."""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_predictor_benchmark_runs_on_the_cpu(small_survey, small_model):
    shard = sorted(glob.glob(f"{small_survey}/*.parquet"))[0]
    out = _run(
        "bench_gpu_predictor.py", "--input", shard, "--model", small_model, "--device", "cpu",
        "--rows", "2000", "--batch-sizes", "1024", "--profile-rows", "500",
        "--end-to-end-rows", "0",
    )  # fmt: skip
    assert "## catalog ensemble: 2 member(s) on CPU" in out
    assert "| 1,024 |" in out


def test_the_training_step_benchmark_passes_its_checks_on_the_cpu():
    out = _run(
        "gpu_train_step.py", "--device", "cpu", "--steps", "4", "--rows", "2000",
        "--batch-sizes", "256", "--chunks", "2", "--warmup", "1",
    )  # fmt: skip
    assert "all checks passed" in out and "[ok] batch 256: loss goes down" in out
