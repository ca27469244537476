"""The Ray-free training steps (raypz.train.steps) and benchmarks/gpu_train_step.py on CPU."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from raypz.features import FeatureTransform
from raypz.models import CatalogNetConfig
from raypz.models.artifact import build_network
from raypz.pdf import ZGrid
from raypz.train.steps import restore_training_state, run_epoch, to_cpu, training_state

REPO = Path(__file__).resolve().parents[2]

NOT_INSTALLED = ("ray", "pandas", "speclite")
"""Packages the GPU machine lacks: the benchmark runs with stubs of them that fail to import."""


def _toy(rng: np.random.Generator, n: int = 512):
    flux = rng.lognormal(7.0, 1.0, size=(n, 6))
    err = np.full_like(flux, 30.0)
    transform = FeatureTransform.fit(flux, err)
    x, _ = transform.transform_fluxes(flux, err)
    z = rng.uniform(0.1, 2.0, n).astype(np.float32)
    return transform, x.astype(np.float32), z, np.ones(n, np.float32)


def _batches(x, z, w, size=128):
    return [((x[i : i + size],), z[i : i + size], w[i : i + size]) for i in range(0, len(z), size)]


def test_epoch_trains_and_checkpoint_round_trip(rng):
    transform, x, z, w = _toy(rng)
    torch.manual_seed(0)
    config = CatalogNetConfig(hidden=(32, 32))
    net = build_network(config, transform, ZGrid(0.0, 3.5, 351))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = [run_epoch(net, net, _batches(x, z, w), torch.device("cpu"), opt)[0] for _ in range(8)]
    assert losses[-1] < losses[0]
    sums = run_epoch(net, net, _batches(x, z, w), torch.device("cpu"), None)
    assert sums.rows == len(z) and sums.unused_rows == 0 and np.isnan(sums.domain_loss)
    w[::7] = 0.0  # rows without a usable input or label: seen, counted, teaching nothing
    sums = run_epoch(net, net, _batches(x, z, w), torch.device("cpu"), None)
    assert sums.rows == len(z) and sums.unused_rows == len(z[::7])

    state = training_state(net, opt, epoch=7)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, map_location="cpu", weights_only=True)
    assert loaded["epoch"] == 7
    net2 = build_network(config, transform, ZGrid(0.0, 3.5, 351))
    opt2 = torch.optim.AdamW(net2.parameters(), lr=3e-3)
    restore_training_state(net2, opt2, loaded)
    net.eval()
    net2.eval()
    a = run_epoch(net, net, _batches(x, z, w), torch.device("cpu"), None)[0]
    b = run_epoch(net2, net2, _batches(x, z, w), torch.device("cpu"), None)[0]
    assert a == pytest.approx(b, abs=1e-6)


def test_to_cpu_copies_nested_tensors():
    t = torch.ones(2, requires_grad=True)
    out = to_cpu({"a": [t, (t, 3)], "b": "x"})
    assert out["b"] == "x" and out["a"][1][1] == 3
    assert not out["a"][0].requires_grad
    out["a"][0].add_(1)
    assert float(t.detach()[0]) == 1.0  # a copy, not a view


@pytest.mark.timeout(120)
def test_gpu_step_benchmark_runs_on_cpu_without_ray(tmp_path):
    for name in NOT_INSTALLED:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('no {name} (test)')\n")
    script = REPO / "benchmarks" / "gpu_train_step.py"
    run = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--steps", "10",
         "--chunks", "2", "--warmup", "1", "--rows", "3000", "--batch-sizes", "64", "256",
         "--threads", "1"],
        cwd=REPO, env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    said = run.stdout + run.stderr
    assert run.returncode == 0, said[-4000:]
    assert "process group: gloo" in said and "all checks passed" in said
    assert "head output is torch.float32" in said


def test_the_domain_loss_counts_training_source_rows_and_usable_target_rows(rng):
    """Rows without a usable band or cutout hold fill values (zeroed images): counted, they
    let the domain classifier tell the fields apart by their missing data."""
    from raypz.train import TrainConfig
    from raypz.train.batches import BatchPreparer
    from raypz.train.steps import join_target

    transform, *_ = _toy(rng)
    flux = rng.lognormal(7.0, 1.0, size=(4, 6))
    flux[2] = np.nan  # no usable band
    columns = TrainConfig().columns
    batch = {columns.flux.format(band=b): flux[:, i] for i, b in enumerate("ugrizy")}
    batch |= {columns.flux_err.format(band=b): np.full(4, 30.0) for b in "ugrizy"}
    prepare = BatchPreparer(transform, TrainConfig(), seed=0)
    target = prepare(batch, augment=False)  # no redshift column: a target batch
    assert target[2].tolist() == [1.0, 1.0, 0.0, 1.0]
    source = prepare({**batch, columns.redshift: np.array([0.5, -99.0, 0.7, 0.9])}, False)
    assert source[2].tolist() == [1.0, 0.0, 0.0, 1.0]  # no label, no usable band
    _, _, w, is_target, counted = join_target(source, target)
    assert w.tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert is_target.tolist() == [0.0] * 4 + [1.0] * 4
    assert counted.tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]
