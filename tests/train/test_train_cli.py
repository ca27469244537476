"""jobs/train_ensemble.py's flags -> TrainConfig (parsed only; nothing trains)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from raypz.models import CatalogNetConfig, ImageNetConfig
from raypz.train import TrainConfig

JOB = Path(__file__).resolve().parents[2] / "jobs" / "train_ensemble.py"


@pytest.fixture(scope="module")
def job():
    spec = importlib.util.spec_from_file_location("train_ensemble_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(job, *flags: str):
    return job.config_from_args(job.parse_args(["--train", "t", "--output", "o", *flags]))


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
