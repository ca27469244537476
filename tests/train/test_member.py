"""The Ray-free member trainer (raypz.train.member): in-process training, exact resume, no Ray."""

from __future__ import annotations

import dataclasses
import io
import math
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest
import torch

from raypz.features import FeatureTransform, flux_arrays
from raypz.models import CatalogNetConfig
from raypz.models.artifact import build_network
from raypz.pdf import ZGrid
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train import TrainConfig
from raypz.train.labelled import member_rows
from raypz.train.member import MemberSpec, TableBatches, train_member

CONFIG = TrainConfig(
    epochs=5,
    patience=5,
    batch_size=256,
    flux_noise=0.5,  # an augmentation stream that a resume must replay exactly
    grid=ZGrid(0.0, 3.5, 351),
    net=CatalogNetConfig(hidden=(32, 32)),
)


@pytest.fixture(scope="module")
def member_data():
    table = simulate_shard(SurveyConfig(n_objects=1500, seed=21, field="deep"), 0)
    spec = MemberSpec(CONFIG, FeatureTransform.fit(*flux_arrays(table)), seed=3)
    train, val = (TableBatches(member_rows(table, CONFIG, None, w)) for w in (True, False))
    return spec, train, val


def test_member_learns_and_keeps_its_history(member_data):
    spec, train, val = member_data
    result = train_member(spec, train, val, device="cpu")
    history = result.progress.history
    assert [r.epoch for r in history] == list(range(result.epochs_run)) == list(range(5))
    assert history[-1].val_loss < history[0].val_loss
    assert result.progress.best_loss == min(r.val_loss for r in history)
    assert history[0].lr == pytest.approx(CONFIG.lr) and history[-1].lr < CONFIG.lr
    assert result.progress.resumed_at == []
    net = build_network(CONFIG.network, spec.transform, CONFIG.grid)
    assert set(result.best_state) == set(net.state_dict())
    assert all(t.device.type == "cpu" for t in result.best_state.values())


def test_a_last_batch_of_one_row_trains_with_the_batch_before_it(member_data):
    """257 training rows in batches of 256: batch normalisation cannot train on the one-row
    batch left at the end of each epoch, so it joins the batch before it; no row is skipped."""
    spec, train, val = member_data
    rows = TableBatches({k: v[: CONFIG.batch_size + 1] for k, v in train.columns.items()})
    result = train_member(spec, rows, val, device="cpu")
    assert result.progress.train_rows == (CONFIG.batch_size + 1) * result.epochs_run


def test_a_member_whose_loss_is_not_finite_stops_and_says_so(member_data):
    """NaN in the starting weights: the first epoch says the loss is not finite, instead of
    early stopping on NaN validation losses and reporting that no epoch was trained."""
    spec, train, val = member_data
    net = build_network(CONFIG.network, spec.transform, CONFIG.grid)
    poisoned = {k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                for k, v in net.state_dict().items()}
    spec = dataclasses.replace(spec, init_state=poisoned)
    with pytest.raises(FloatingPointError, match="epoch 0: the training loss is nan"):
        train_member(spec, train, val, device="cpu")


def test_a_member_without_a_finite_validation_loss_says_so_fresh_or_resumed(member_data):
    """Validation rows without a usable label give no finite validation loss, so no epoch is
    ever the best: the member says why, and a resumed run (whose checkpoint held ``{}`` as
    its best weights) says the same instead of returning empty weights."""
    spec, train, _ = member_data
    table = simulate_shard(SurveyConfig(n_objects=300, seed=22, field="deep"), 0)
    val_rows = member_rows(table, CONFIG, None, False)
    z = val_rows.schema.get_field_index("redshift")
    val_rows = val_rows.set_column(z, "redshift", pa.nulls(len(val_rows), pa.float32()))
    val = TableBatches(val_rows)
    saved = {}

    def keep(progress, checkpoint, stop):
        saved["state"] = checkpoint()

    with pytest.raises(FloatingPointError, match="no epoch of 5 gave a finite validation loss"):
        train_member(spec, train, val, device="cpu", on_epoch=keep)
    state = saved["state"]
    assert state["best"] == {}
    state["progress"].update(next_epoch=3, stale=3)  # as if killed after epoch 2
    del state["progress"]["history"][3:]
    with pytest.raises(FloatingPointError, match="no epoch of 5 gave a finite validation loss"):
        train_member(spec, train, val, device="cpu", resume=state)


class _KilledError(Exception):
    pass


def test_resumed_member_equals_an_uninterrupted_one(member_data):
    """Killed after epoch 2, resumed from that epoch's checkpoint: the same weights as a run
    that was never interrupted (every random stream is seeded per epoch)."""
    spec, train, val = member_data
    whole = train_member(spec, train, val, device="cpu")
    saved = {}

    def kill_after_epoch_2(progress, checkpoint, stop):
        buf = io.BytesIO()
        torch.save(checkpoint(), buf)  # what Ray Train's checkpoint directory holds
        saved["bytes"] = buf.getvalue()
        if progress.history[-1].epoch == 2:
            raise _KilledError

    with pytest.raises(_KilledError):
        train_member(spec, train, val, device="cpu", on_epoch=kill_after_epoch_2)
    state = torch.load(io.BytesIO(saved["bytes"]), map_location="cpu", weights_only=True)
    resumed = train_member(spec, train, val, device="cpu", resume=state)

    assert resumed.progress.resumed_at == [3]
    assert [r.epoch for r in resumed.progress.history] == list(range(CONFIG.epochs))
    for a, b in zip(whole.progress.history, resumed.progress.history, strict=True):
        assert (a.train_loss, a.val_loss) == (b.train_loss, b.val_loss)
    for name, tensor in whole.best_state.items():
        assert torch.equal(tensor, resumed.best_state[name]), name


def test_a_member_that_stopped_early_is_resumed_as_finished(member_data):
    """The final checkpoint of a member that early stopping ended (as Ray Train restores it
    when a finished run starts again) trains no further epoch: one more could lower the
    validation loss and reset the count that stopped it."""
    spec, train, val = member_data
    saved = {}

    def keep_epoch_1(progress, checkpoint, stop):
        if progress.history[-1].epoch == 1:
            saved["state"] = checkpoint()

    train_member(spec, train, val, device="cpu", on_epoch=keep_epoch_1)
    state = saved["state"]
    state["progress"]["stale"] = CONFIG.patience  # as if epochs 0-1 had ended it
    resumed = train_member(spec, train, val, device="cpu", resume=state)
    assert [r.epoch for r in resumed.progress.history] == [0, 1]
    assert resumed.progress.next_epoch == 2
    for name, tensor in state["best"].items():
        assert torch.equal(tensor, resumed.best_state[name]), name


def test_training_a_member_does_not_import_ray(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        from raypz.features import FeatureTransform, flux_arrays
        from raypz.models import CatalogNetConfig
        from raypz.sim import SurveyConfig, simulate_shard
        from raypz.train import TrainConfig
        from raypz.train.labelled import member_rows
        from raypz.train.member import MemberSpec, TableBatches, train_member

        table = simulate_shard(SurveyConfig(n_objects=600, seed=4, field="deep"), 0)
        config = TrainConfig(epochs=2, net=CatalogNetConfig(hidden=(16,)))
        spec = MemberSpec(config, FeatureTransform.fit(*flux_arrays(table)), seed=0)
        train, val = (TableBatches(member_rows(table, config, None, w)) for w in (True, False))
        result = train_member(spec, train, val)
        print(result.epochs_run, "ray" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.split() == ["2", "False"]
