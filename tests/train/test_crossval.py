"""Outer k-fold cross-validation (raypz.train.crossval, jobs/cross_validate.py) on a local Ray."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from raypz import io
from raypz.models import load_artifact
from raypz.pdf import ZGrid
from raypz.predictions import MODEL_HASH_KEY, read_predictions
from raypz.schema import ContractError, RefusedError
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train import TrainConfig
from raypz.train.crossval import cross_validate, outer_folds, read_rows
from raypz.train.splits import is_validation

pytestmark = pytest.mark.timeout(300)

_SPEC = importlib.util.spec_from_file_location(
    "job_cross_validate", Path(__file__).resolve().parents[2] / "jobs" / "cross_validate.py"
)
job = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(job)

CONFIG = TrainConfig(members=1, epochs=2, seed=3, grid=ZGrid(0.0, 3.5, 351))


def test_outer_folds_are_balanced_fixed_and_independent_of_the_validation_split():
    ids = np.arange(1_000_000, 1_040_000, dtype=np.int64)
    fold = outer_folds(ids, 4)
    assert np.array_equal(fold, outer_folds(ids[::-1], 4)[::-1])  # by id, not by position
    assert np.abs(np.bincount(fold, minlength=4) / len(ids) - 0.25).max() < 0.01
    val = is_validation(ids, 0.15)
    for k in range(4):  # each outer fold holds ~15% validation rows, as the whole table does
        assert abs(val[fold == k].mean() - 0.15) < 0.01


def test_every_row_is_predicted_once_by_the_ensemble_that_did_not_train_on_it(
    ray_session, tmp_path
):
    table = simulate_shard(SurveyConfig(n_objects=1200, seed=21, field="deep"), 0)
    pq.write_table(table, tmp_path / "specz.parquet")
    train, out = str(tmp_path / "specz.parquet"), str(tmp_path / "cv")
    result = cross_validate(train, out, CONFIG, folds=2, name="cv")

    ids = table["objectId"].to_numpy()
    pred = read_predictions(result.predictions)
    assert np.array_equal(np.sort(pred.object_id), np.sort(ids))  # every row, once
    assert result.fold_rows == [int((outer_folds(ids, 2) == k).sum()) for k in range(2)]
    for k in range(2):
        seen = pq.read_table(io.join(out, f"fold-{k}", "train.parquet"))["objectId"].to_numpy()
        held = read_predictions(io.join(result.predictions, f"fold-{k}.parquet")).object_id
        assert not np.isin(held, seen).any()  # predicted only by the model that never saw it
        assert len(seen) + len(held) == len(ids)
        assert io.is_file(io.join(result.models[k], "model.json"))
    assert np.allclose(np.trapezoid(pred.pdf, dx=pred.grid.dz, axis=1), 1.0, atol=1e-3)

    metrics = json.loads(io.read_bytes(io.join(result.report, "metrics.json")))
    assert metrics["models"]["cv"]["n_scored"] == len(ids)
    assert result.metrics["overall"]["sigma_mad"] == metrics["models"]["cv"]["overall"]["sigma_mad"]
    assert 0 < result.metrics["overall"]["sigma_mad"] < 0.5

    # rerun: the folds' members and predictions are kept, the scores are the same
    before = [io.read_bytes(io.join(result.predictions, f"fold-{k}.parquet")) for k in range(2)]
    again = cross_validate(train, out, CONFIG, folds=2, name="cv")
    after = [io.read_bytes(io.join(result.predictions, f"fold-{k}.parquet")) for k in range(2)]
    assert before == after
    assert again.metrics["overall"] == result.metrics["overall"]

    # other settings into the same directory: new models, and their rows replace the old ones
    other = cross_validate(train, out, dataclasses.replace(CONFIG, seed=4), folds=2, name="cv")
    for k in range(2):
        path = io.join(other.predictions, f"fold-{k}.parquet")
        meta = pq.read_schema(path).metadata
        assert meta[MODEL_HASH_KEY].decode() == load_artifact(other.models[k]).model_hash
        assert io.read_bytes(path) != before[k]
    assert other.metrics["overall"] != result.metrics["overall"]

    # fewer folds into the same directory: the extra fold's rows are not scored twice
    io.write_bytes_atomic(io.join(result.predictions, "fold-2.parquet"), before[0])
    again = cross_validate(train, out, dataclasses.replace(CONFIG, seed=4), folds=2, name="cv")
    assert sorted(p.name for p in (tmp_path / "cv" / "predictions").iterdir()) == [
        "fold-0.parquet",
        "fold-1.parquet",
    ]
    assert again.metrics["n_scored"] == len(ids)


def test_folds_keep_the_single_exposure_columns_and_a_bad_input_is_named_first(tmp_path):
    """The folds train as train_ensemble would (randomised coadds need the single-exposure
    columns), and a table that breaks the contract is named before any fold is written."""
    table = simulate_shard(SurveyConfig(n_objects=300, seed=5, field="deep", epochs=True), 0)
    pq.write_table(table, tmp_path / "specz.parquet")
    rows = read_rows(str(tmp_path / "specz.parquet"), CONFIG)
    epoch_flux, epoch_err = CONFIG.columns.epoch_columns()
    assert set(epoch_flux + epoch_err) <= set(rows.column_names)
    assert rows.num_rows == table.num_rows

    dec = CONFIG.columns.dec
    pq.write_table(table.drop_columns([dec]), tmp_path / "bad.parquet")
    with pytest.raises(ContractError, match=rf"bad\.parquet.*'{dec}'"):
        cross_validate(str(tmp_path / "bad.parquet"), str(tmp_path / "cv"), CONFIG, folds=2)
    assert not (tmp_path / "cv").exists()


def test_cli_builds_the_config_and_rejects_what_it_cannot_do():
    args = job.parse_args(
        ["--train", "t", "--output", "o", "--batch-size", "64", "--dropout", "0.2", "--folds", "5"]
    )
    config = job.config_from_args(args)
    assert (config.batch_size, config.net.dropout, args.folds) == (64, 0.2, 5)
    with pytest.raises(SystemExit, match="folds"):
        job.config_from_args(job.parse_args(["--train", "t", "--output", "o", "--folds", "1"]))
    with pytest.raises(ValueError, match="folds"):
        cross_validate("t", "o", CONFIG, folds=1)


def test_an_output_it_does_not_own_is_refused_before_any_work(tmp_path):
    """It deleted every Parquet file under OUTPUT/predictions that was not one of its folds,
    and wrote its fold tables inside the training table when the output lay there."""
    table = simulate_shard(SurveyConfig(n_objects=300, seed=5, field="deep"), 0)
    (tmp_path / "specz").mkdir()
    pq.write_table(table, tmp_path / "specz" / "part-0.parquet")
    train = str(tmp_path / "specz")
    with pytest.raises(RefusedError, match="outside its training table"):
        cross_validate(train, str(tmp_path / "specz" / "cv"), CONFIG, folds=2)
    assert [p.name for p in (tmp_path / "specz").iterdir()] == ["part-0.parquet"]

    release = tmp_path / "release"
    (release / "predictions" / "dr1").mkdir(parents=True)
    (release / "predictions" / "dr1" / "part-0.parquet").write_bytes(b"a release's file")
    with pytest.raises(RefusedError, match=r"predictions/dr1: not a fold's predictions"):
        cross_validate(train, str(release), CONFIG, folds=2)
    (release / "notes.txt").write_text("someone else's")
    with pytest.raises(FileExistsError, match=r"release: not empty \(notes\.txt"):
        cross_validate(train, str(release), CONFIG, folds=2)
    kept = sorted(str(p.relative_to(release)) for p in release.rglob("*"))
    assert kept == ["notes.txt", "predictions", "predictions/dr1", "predictions/dr1/part-0.parquet"]
