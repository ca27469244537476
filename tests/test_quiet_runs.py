"""What a user sees: the demo's output on a non-interactive stdout is short and ends with the
headline metrics; ``--verbose`` brings Ray's own logs back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}

RAY_NOISE = ("Execution plan", "TrainingReport", "(RayTrainWorker", "logging_progress", "INFO ")


def _run(*args: str, timeout: int = 600) -> list[str]:
    out = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stdout[-4000:]
    return out.stdout.splitlines()


@pytest.mark.timeout(900)
def test_demo_output_is_short_and_ends_with_the_headline_table(tmp_path):
    lines = _run(
        "jobs/demo.py",
        "--workdir", str(tmp_path / "demo"),
        "--n-train", "2000",
        "--n-test", "1000",
        "--members", "1",
        "--epochs", "2",
        "--num-cpus", "2",
    )  # fmt: skip
    assert len(lines) <= 60, "\n".join(lines)
    assert not [line for line in lines if any(noise in line for noise in RAY_NOISE)]
    assert not [line for line in lines if "Started a local Ray instance" in line]
    assert any(line.startswith("ray: started a local Ray") for line in lines)
    for stage in ("simulate:", "train:", "predict:", "merge:"):
        assert any(line.startswith(stage) for line in lines), stage
    table = lines[lines.index("| metric | ensemble | knn |") :]
    assert table[-1].startswith("| n(z) max abs mean-z shift |")
    assert any(line.startswith("| sigma_MAD |") for line in table)
    assert (tmp_path / "demo" / "report" / "ensemble" / "training_curves.png").exists()


def test_verbose_shows_rays_logs(tmp_path):
    """The quiet side is the demo's test above (the same local Ray start, said in one line)."""
    args = ["--n-objects", "300", "--seed", "1", "--output", str(tmp_path / "sim")]
    verbose = "\n".join(_run("jobs/simulate_survey.py", *args, "--num-cpus", "1", "--verbose"))
    assert "Started a local Ray instance" in verbose
    assert "simulate: 1/1 shards" in verbose
