"""Outer k-fold cross-validation of a whole training configuration on one labelled table.

A setting (a batch size, a dropout, a head) is chosen by how the ensemble it trains scores on
objects it did not see, without touching the test file. Here the labelled rows are cut into
``folds`` outer folds by a hash of objectId (salted, so the outer folds are independent of the
training's own validation split and k-fold folds, :mod:`raypz.train.splits`). For each fold,
:func:`raypz.train.train_ensemble` trains a whole ensemble on the other folds' rows, exactly
as ``jobs/train_ensemble.py`` would (its own early-stopping split, calibration, members in Ray
tasks), and the catalog predictor (:class:`raypz.infer.CatalogPredictor`, the columns the
inference pipeline writes, compact PDFs included) predicts the held-out fold. Every labelled
row thus gets one out-of-fold catalog row, and the evaluation of ``jobs/evaluate.py`` scores
them all.

Layout under ``output``::

    fold-K/train.parquet       the rows fold K trains on (every fold but K)
    fold-K/model/              fold K's ensemble artifact (resumable, as train_ensemble)
    predictions/fold-K.parquet the held-out rows of fold K, predicted by fold K's ensemble
    report/                    metrics.json, report.md and plots of all out-of-fold rows

Rerunning the same call resumes: finished members are kept, and a fold's predictions are kept
while its model is the same (its hash is in the file's metadata). A rerun with other settings
into the same directory replaces the folds' models (``train_ensemble(..., replace=True)``) and
never scores the old rows. The output is refused, before any work, when it lies inside the
training table or holds anything but these names (and one run writes it at a time).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz import io, tables
from raypz.evaluation import EvaluationRequest, evaluate_predictions, slug
from raypz.infer.predictor import CatalogPredictor
from raypz.lease import OutputLease
from raypz.pdf import require_point_estimate
from raypz.predictions import MODEL_HASH_KEY
from raypz.schema import RefusedError, validate_dataset
from raypz.train.config import TrainConfig
from raypz.train.ensemble import require_model_name, train_ensemble
from raypz.train.labelled import has_epoch_columns, training_columns
from raypz.train.splits import fold_of

PREDICTIONS, REPORT = "predictions", "report"
"""The directories a cross-validation writes beside its ``fold-K/`` ones."""

FOLD_FILE = re.compile(r"fold-(\d+)\.parquet")
"""A fold's predictions file under ``predictions/``."""

OUTER_SALT = 0x2545F4914F6CDD1D
"""Mixed into objectId before hashing, so that outer folds do not coincide with the training's
own validation split or folds (both hash the bare objectId)."""


def outer_folds(object_id: np.ndarray, folds: int) -> np.ndarray:
    """Outer fold in [0, folds) per objectId, (N,) int64; the same on every run and machine."""
    salted = np.asarray(object_id).astype(np.int64).view(np.uint64) ^ np.uint64(OUTER_SALT)
    return fold_of(salted.view(np.int64), folds)


@dataclass(frozen=True)
class CrossValidation:
    """A finished cross-validation.

    Attributes:
        predictions: directory of the out-of-fold predictions (one Parquet file per fold).
        report: directory of the evaluation report.
        models: the folds' artifact directories.
        fold_rows: held-out rows per fold.
        metrics: the evaluation's metrics of the out-of-fold rows (``metrics.json``'s model).
        seconds: wall time of the whole run.
    """

    predictions: str
    report: str
    models: list[str]
    fold_rows: list[int]
    metrics: dict
    seconds: float


def check_settings(config: TrainConfig, folds: int, point_estimate: str = "mode") -> None:
    """ValueError unless ``config`` and ``folds`` can be cross-validated (catalog networks, at
    least two folds) and the report's ``point_estimate`` exists: before any fold trains."""
    require_point_estimate(point_estimate, "cross_validate: point_estimate")
    if folds < 2:
        raise ValueError(f"cross_validate: folds must be >= 2, got {folds}")
    if config.image is not None:
        raise ValueError("cross_validate: catalog networks only (TrainConfig.image is set)")


def cross_validate(
    train: str,
    output: str,
    config: TrainConfig | None = None,
    folds: int = 4,
    pretrain: str | None = None,
    point_estimate: str = "mode",
    name: str = "cross-validated",
) -> CrossValidation:
    """Cross-validate ``config`` on the labelled table ``train``; see the module docstring.

    Args:
        train: labelled object table (Parquet or FITS file/dir, or HATS; local or URI).
        output: directory to write (local or URI).
        config: the training configuration (catalog networks; default TrainConfig()).
        folds: number of outer folds K >= 2; each ensemble trains on (K - 1) / K of the rows.
        pretrain: labelled simulated survey every fold pre-trains on (as train_ensemble).
        point_estimate: z_phot of the report ("mode", "median", "mean" or "best").
        name: the model's name in the report.
    """
    config = config or TrainConfig()
    check_settings(config, folds, point_estimate)
    require_model_name(f"{slug(name)}-fold-{folds - 1}")  # the fold models' names
    train, output = io.absolute(train), io.absolute(output)
    if io.is_inside(output, train):
        raise RefusedError(
            f"{output}: the cross-validation must be written outside its training table "
            f"{train} (its fold tables and predictions would be read as labelled rows)"
        )
    t0 = time.perf_counter()
    table = read_rows(train, config)
    with OutputLease(output, "raypz cross-validation"):  # one run writes a directory at once
        io.require_empty(output, "raypz cross-validation", ours=("fold-*", PREDICTIONS, REPORT))
        fs, _ = io.resolve(output)
        for stale in _stale_folds(io.join(output, PREDICTIONS), folds):
            fs.delete_file(stale)
        return _cross_validate(
            train, output, config, folds, pretrain, point_estimate, name, table, t0
        )


def _cross_validate(
    train: str,
    output: str,
    config: TrainConfig,
    folds: int,
    pretrain: str | None,
    point_estimate: str,
    name: str,
    table: pa.Table,
    t0: float,
) -> CrossValidation:
    """:func:`cross_validate` once its output is leased and checked (``t0``: when it began, on
    ``time.perf_counter``)."""
    c = config.columns
    fold = outer_folds(table[c.object_id].to_numpy(), folds)
    predictions = io.join(output, PREDICTIONS)
    io.makedirs(predictions)
    models, fold_rows = [], []
    for k in range(folds):
        held_out = fold == k
        if not held_out.any() or held_out.all():
            raise RefusedError(f"{train}: {len(fold)} rows are too few for {folds} outer folds")
        fold_dir = io.join(output, f"fold-{k}")
        fold_train = io.join(fold_dir, "train.parquet")
        io.makedirs(fold_dir)
        io.write_parquet(table.filter(pa.array(~held_out)), fold_train)
        model = io.join(fold_dir, "model")
        print(f"cross-validation: fold {k + 1}/{folds}, {int((~held_out).sum())} training rows")
        fit = train_ensemble(
            fold_train,
            model,
            config,
            pretrain=pretrain,
            name=f"{slug(name)}-fold-{k}",
            replace=True,
        )
        path = io.join(predictions, f"fold-{k}.parquet")
        if _predicted_by(path) != fit.model_hash:  # a rerun keeps the rows of the same model
            io.write_parquet(_predict(model, table.filter(pa.array(held_out))), path)
        models.append(model)
        fold_rows.append(int(held_out.sum()))
    report = io.join(output, REPORT)
    request = EvaluationRequest(
        predictions=predictions,
        truth=train,
        report=report,
        name=name,
        z_column=c.redshift,
        point_estimate=point_estimate,
    )
    metrics = evaluate_predictions(request)[name]
    seconds = time.perf_counter() - t0
    return CrossValidation(predictions, report, models, fold_rows, metrics, seconds)


def read_rows(train: str, config: TrainConfig) -> pa.Table:
    """Every row of the labelled table ``train``, checked against the contract first (so a bad
    input is named before any fold is written), with what the folds need: the columns
    training reads (single-exposure fluxes included, so randomised coadds stay on) and the
    positions the predictor reads."""
    c = config.columns
    print(validate_dataset(train, c, require_labels=True).summary())
    columns = training_columns(config, has_epoch_columns(train, config))
    return tables.read_table(train, [c.ra, c.dec, *columns])


def _predict(model: str, rows: pa.Table) -> pa.Table:
    """Catalog rows of ``rows`` from the artifact ``model``, with the z grid (what
    :func:`raypz.predictions.read_predictions` needs) and the model's hash in the schema
    metadata."""
    predictor = CatalogPredictor(model)
    return predictor(rows.select(predictor.input_columns))


def _stale_folds(predictions: str, folds: int) -> list[str]:
    """Fold files (``fold-K.parquet``, K >= ``folds``) that an earlier run with more folds
    left in ``predictions`` (paths inside its filesystem): they would be scored with this
    run's (their rows twice), so the caller deletes them. Anything else there is not this
    job's to delete, and would be scored too: refused, named."""
    fs, inner = io.resolve(predictions)
    stale = []
    for entry in fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True)):
        number = FOLD_FILE.fullmatch(entry.base_name)
        if entry.type != pafs.FileType.File or number is None:
            raise RefusedError(
                f"{io.uri(predictions, entry.path)}: not a fold's predictions "
                "(fold-K.parquet), yet it would be scored with them; move it, or choose "
                "another output"
            )
        if int(number[1]) >= folds:
            stale.append(entry.path)
    return stale


def _predicted_by(path: str) -> str | None:
    """The model hash a fold's predictions file was written by; None without one."""
    if not io.is_file(path):
        return None
    fs, inner = io.resolve(path)
    meta = pq.read_schema(inner, filesystem=fs).metadata or {}
    return meta[MODEL_HASH_KEY].decode() if MODEL_HASH_KEY in meta else None
