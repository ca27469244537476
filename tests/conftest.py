"""Shared fixtures: one local Ray per test session (2 CPUs), seeded RNGs, an S3 API on loopback.

The S3 endpoint and fake credentials are put in the environment at import, before any Ray
worker starts, so that Ray tasks and actors see the same loopback S3 as the test process; the
moto server itself starts only when a test asks for ``s3_root``.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# How long a Ray node (the session's, a job's embedded one) tries to reach its GCS: Ray's 20 x
# 1 s can run out on a loaded 2-core machine
os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")


def _free_port_below_ephemeral() -> int:
    """A free port below the kernel's ephemeral range (and above Ray's worker ports, 10002-
    19999). moto binds it minutes later, at the first ``s3_root``: meanwhile no socket bound
    to port 0 or connecting out can be given it, as one from the ephemeral range could."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    for _ in range(200):
        port = random.randrange(20000, max(low, 20001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


S3_PORT = _free_port_below_ephemeral()
S3_BUCKET = "raypz-test"
FAKE_AWS = {
    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
    "AWS_ACCESS_KEY_ID": "AKIAFAKETESTKEY12345",
    "AWS_SECRET_ACCESS_KEY": "fake+secret/never-to-be-logged-0123456789",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
os.environ.update(FAKE_AWS)

# Ray workers run beside the test process on 2 cores; multi-threaded torch there spins and was
# measured 150x slower on small nets. One thread per process keeps the suite fast.
torch.set_num_threads(1)


def _wait_for(server: subprocess.Popen, port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"moto server exited with {server.returncode} (port {port} taken?)")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"moto server did not listen on port {port}")


@pytest.fixture(scope="session")
def s3_root():
    """``s3://raypz-test`` on a moto S3 server bound to 127.0.0.1 (configured by environment)."""
    import pyarrow.fs as pafs

    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(S3_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(server, S3_PORT)
        admin = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{S3_PORT}",
            scheme="http",
            access_key=FAKE_AWS["AWS_ACCESS_KEY_ID"],
            secret_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
            allow_bucket_creation=True,
        )
        admin.create_dir(S3_BUCKET)
        yield f"s3://{S3_BUCKET}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 logical CPUs, started once for the whole test session."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # never a cluster a `ray start` on this machine left behind
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=512 * 1024**2,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so every test is reproducible."""
    return np.random.default_rng(12345)


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests where no CUDA device exists."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def fit_small_artifact(
    path: str,
    table,
    members: int = 2,
    epochs: int = 10,
    seed: int = 0,
    hidden: tuple[int, ...] = (64, 64),
) -> str:
    """Fit a small catalog ensemble in-process (no Ray) on ``table`` and save it at ``path``.

    The members are trained by the production trainer (``raypz.train.member.train_member``) on
    the table in memory, briefly: a real artifact fast enough for fixtures, whose PDFs already
    follow the data (so summaries and calibration checks are meaningful). ``hidden`` layers:
    wide ones make a predictor slow enough for tests that act while it runs.
    """
    from raypz.features import FeatureTransform, flux_arrays
    from raypz.models import CatalogNetConfig, save_artifact
    from raypz.models.reference import TrainingReference
    from raypz.pdf import ZGrid
    from raypz.train import TrainConfig
    from raypz.train.labelled import member_rows
    from raypz.train.member import MemberSpec, TableBatches, train_member

    config = TrainConfig(
        members=members,
        epochs=epochs,
        lr=3e-3,
        seed=seed,
        grid=ZGrid(),
        net=CatalogNetConfig(hidden=hidden),
    )
    flux, err = flux_arrays(table)
    transform = FeatureTransform.fit(flux, err)
    reference = TrainingReference.fit(transform.transform_fluxes(flux, err)[0], rows=1024)
    train, val = (TableBatches(member_rows(table, config, None, w)) for w in (True, False))
    states, info = [], []
    for m in range(members):
        result = train_member(MemberSpec(config, transform, seed + m), train, val, device="cpu")
        states.append(result.best_state)
        info.append({"seed": seed + m, "fold": None, "epochs_run": result.epochs_run})
    save_artifact(
        path,
        name="test",
        transform=transform,
        grid=config.grid,
        net_config=config.net,
        states=states,
        members=info,
        training={"config": config.to_dict(), "note": "fitted in-process by tests/conftest.py"},
        metrics={},
        reference=reference,
    )
    return path


@pytest.fixture(scope="session")
def small_survey(tmp_path_factory):
    """A 3-shard wide-field Y10 survey (1000 rows per shard) written in-process; its directory."""
    from raypz.sim import SurveyConfig
    from raypz.sim.survey import write_shard

    out = str(tmp_path_factory.mktemp("survey"))
    config = SurveyConfig(n_objects=3000, seed=11, field="wide", rows_per_shard=1000)
    for i in range(config.n_shards):
        write_shard(config, i, out)
    return out


@pytest.fixture(scope="session")
def small_model(tmp_path_factory, small_survey):
    """A 2-member artifact briefly fitted on ``small_survey``; its directory."""
    import pyarrow.dataset as pads

    table = pads.dataset(small_survey, format="parquet").to_table()
    return fit_small_artifact(str(tmp_path_factory.mktemp("model")), table)


@pytest.fixture(scope="session")
def artifact_fitter():
    """:func:`fit_small_artifact`, for tests that fit an artifact on their own data."""
    return fit_small_artifact
