"""A Ray Train worker killed once mid-training: the run resumes from its last checkpoint, and
ends with the very weights of an uninterrupted run with the same seed (every random stream of
the member trainer is seeded per epoch, so resuming at epoch k replays epochs k, k+1, ...)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from ray_nodes import kill_once_in_background, ray_process_pids, walk_files

from raypz.models import CatalogNetConfig, load_artifact
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train import TrainConfig, train_ensemble

pytestmark = pytest.mark.timeout(600)

CONFIG = TrainConfig(
    members=1,
    epochs=8,
    patience=8,
    batch_size=128,
    flux_noise=0.5,  # an augmentation stream that the resume must replay
    # wide enough that an epoch takes a while: the kill lands mid-run, not after the last epoch
    net=CatalogNetConfig(hidden=(512, 512, 512)),
    calibrate=False,
    trainer="ray_train",
)


def test_killed_worker_resumes_from_checkpoint(ray_session, tmp_path, capsys):
    data = tmp_path / "survey"
    data.mkdir()
    table = simulate_shard(SurveyConfig(n_objects=4000, seed=12, field="deep"), 0)
    pq.write_table(table, data / "part-0.parquet")

    reference = train_ensemble(str(data), str(tmp_path / "reference"), CONFIG, name="ref")

    out = tmp_path / "killed"
    # kill once Ray Train has registered a checkpoint (its controller then writes this file;
    # a checkpoint directory alone may not be registered yet, and a worker killed before any
    # registration starts over from epoch 0)
    capsys.readouterr()
    with kill_once_in_background(
        lambda: ray_process_pids("RayTrainWorker"),
        ready=lambda: bool(walk_files(out / "_checkpoints", "checkpoint_manager_snapshot.json")),
        poll_s=0.05,
    ) as killed:
        result = train_ensemble(str(data), str(out), CONFIG, name="killed")
    assert killed, "no training worker was killed"
    # epochs replayed after the restart are counted once (the line could pass 100%)
    total = CONFIG.n_members * CONFIG.epochs
    assert f"train: {total}/{total} epochs (100%)" in capsys.readouterr().out
    member, ref = result.members[0], reference.members[0]
    assert ref["resumed_at"] == []
    # the restarted worker began after its last registered checkpoint, not at epoch 0
    assert len(member["resumed_at"]) == 1 and 1 <= member["resumed_at"][0] < CONFIG.epochs
    assert member["history"]["epoch"] == list(range(CONFIG.epochs)) == ref["history"]["epoch"]
    assert member["history"]["val_loss"] == ref["history"]["val_loss"]
    ours, theirs = load_artifact(str(out)).states[0], load_artifact(reference.artifact).states[0]
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name
    assert Path(result.artifact, "model.json").exists()
