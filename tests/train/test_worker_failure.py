"""A Ray Train worker killed once mid-training: the run resumes from its last checkpoint.

Slow (two training runs): ``pytest -m slow tests/train/test_worker_failure.py``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ray_nodes import kill_once_in_background, ray_process_pids

from raypz.models import CatalogNetConfig
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train import TrainConfig, train_ensemble

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CONFIG = TrainConfig(
    members=1,
    epochs=8,
    patience=8,
    batch_size=128,
    net=CatalogNetConfig(hidden=(64, 64)),
    calibrate=False,
)


def test_killed_worker_resumes_from_checkpoint(ray_session, tmp_path):
    data = tmp_path / "survey"
    data.mkdir()
    table = simulate_shard(SurveyConfig(n_objects=4000, seed=12, field="deep"), 0)
    pq.write_table(table, data / "part-0.parquet")

    reference = train_ensemble(str(data), str(tmp_path / "reference"), CONFIG, name="ref")

    out = tmp_path / "killed"
    killer, killed = kill_once_in_background(
        lambda: ray_process_pids("RayTrainWorker"),
        ready=lambda: len(list((out / "_checkpoints").rglob("checkpoint_*"))) >= 2,
        poll_s=0.1,
    )
    result = train_ensemble(str(data), str(out), CONFIG, name="killed")
    killer.join(timeout=5)
    assert killed, "no training worker was killed"
    member, ref = result.members[0], reference.members[0]
    assert member["epochs_run"] == CONFIG.epochs
    # same seed and data: the resumed run ends close to the uninterrupted one
    assert abs(member["best_val_loss"] - ref["best_val_loss"]) < 0.15 * abs(ref["best_val_loss"])
    assert Path(result.artifact, "model.json").exists()
