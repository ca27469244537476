"""jobs/train_ensemble.py's flags -> TrainConfig, and its closing table (nothing trains)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from raypz.metrics import evaluate
from raypz.models import CatalogNetConfig, ImageNetConfig
from raypz.pdf import ZGrid
from raypz.train import TrainConfig
from raypz.train.ensemble import TrainResult

JOB = Path(__file__).resolve().parents[2] / "jobs" / "train_ensemble.py"


@pytest.fixture(scope="module")
def job():
    spec = importlib.util.spec_from_file_location("train_ensemble_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(job, *flags: str):
    return job.config_from_args(job.parse_args(["--train", "t", "--output", "o", *flags]))


def test_the_closing_table_prints_every_headline_validation_metric(job, monkeypatch):
    """The keys the table looks up are those raypz.metrics writes (a renamed key would
    silently drop its row)."""
    grid = ZGrid(0.0, 3.5, 351)
    z = np.linspace(0.2, 2.0, 200)
    pdf = np.exp(-0.5 * ((grid.values - z[:, None] - 0.01) / 0.05) ** 2)
    overall = evaluate(grid, pdf / pdf.sum(axis=1, keepdims=True) / grid.dz, z)["overall"]
    chose = ["each member's best epoch (the state kept)", "the width scale"]
    meta = {
        "metrics": {
            "split": "validation",
            "overall": overall,
            "calibration": {},
            "split_also_chose": chose,
        }
    }
    monkeypatch.setattr(job, "load_artifact", lambda path: SimpleNamespace(meta=meta))
    text = job.training_summary(TrainResult("model", "0" * 64, [], "model/val.parquet", 1.0))
    for key in job.HEADLINE_METRICS:
        assert f"validation {key}" in text and f"{overall[key]:.4f}" in text, key
    flat = " ".join(text.split())  # the table may wrap the note
    assert "the validation split also chose each member's best epoch (the state kept) and the " \
        "width scale: optimistic" in flat


def test_no_flag_gives_the_default_config(job):
    assert _config(job) == TrainConfig()


def test_catalog_is_the_default(job):
    config = _config(job, "--hidden", "64", "32", "--head", "binned", "--n-components", "3")
    assert config.image is None and config.network is config.net
    assert config.net == CatalogNetConfig(hidden=(64, 32), head="binned", n_components=3)


def test_fusion_with_domain_adaptation(job):
    config = _config(
        job, "--inputs", "fusion", "--domain-adapt", "--target", "w", "--cnn-blocks", "8", "12",
        "--cnn-stem", "16", "--cnn-head", "binned", "--cnn-label-sigma", "0.02",
        "--domain-weight", "0.5",
    )  # fmt: skip
    assert config.image == ImageNetConfig(
        stem_channels=16, blocks=(8, 12), fusion=True, domain_adapt=True, head="binned",
        label_sigma=0.02,
    )  # fmt: skip
    assert config.domain_adapt and config.domain_weight == 0.5 and config.flip_rotate
    assert config.net == CatalogNetConfig()


@pytest.mark.parametrize(
    "flags",
    [
        ["--inputs", "cutouts", "--domain-adapt"],
        ["--inputs", "cutouts", "--target", "w"],
        ["--domain-adapt", "--target", "w"],
        ["--cnn-blocks", "8"],
        ["--inputs", "fusion", "--head", "binned"],
        ["--inputs", "cutouts", "--cnn-head", "gaussian"],
        ["--members", "0"],
        ["--inputs", "cutouts", "--target-cutouts", "store"],  # was ignored without --target
        ["--name", "../../escape/x"],  # names checkpoint directories
    ],
)
def test_inconsistent_or_invalid_flags_are_refused(job, flags):
    with pytest.raises(SystemExit):
        _config(job, *flags)


def test_gpu_and_worker_resources(job):
    config = _config(
        job, "--gpu", "yes", "--workers", "2", "--worker-resources", "trainer=1", "x=0.5"
    )
    assert config.use_gpu is True and config.workers == 2
    assert _config(job, "--gpu", "no").use_gpu is False and _config(job).use_gpu is None
    assert config.worker_resources == {"trainer": 1.0, "x": 0.5}
    assert _config(job).worker_resources == {}
    for bad in ("trainer", "=1", "trainer=many"):
        with pytest.raises(SystemExit):
            _config(job, "--worker-resources", bad)


def test_switches_keep_their_old_flags(job):
    config = _config(job, "--no-calibrate", "--no-flip-rotate", "--balanced")
    assert not config.calibrate and not config.flip_rotate and config.balanced
