"""Score photo-z PDFs against true redshifts and write the evaluation report (DESIGN 8).

:func:`evaluate_predictions` joins predictions (a predictions table or the HATS PDF catalog)
with an object table holding the true redshifts on objectId, scores every model on the same
test rows (plus a kNN baseline when a labelled training table is given) and writes
``metrics.json``, ``report.md`` and per-model PNG plots. Objects missing from either side are
counted in the report, never silently dropped; rows flagged NO_PDF are counted, not scored.
Only the truth's rows of each predictions set are read (file by file), so scoring a spec-z
sample of a data release's catalog costs the sample's memory, not the catalog's.
``jobs/evaluate.py`` is its command line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from raypz import io
from raypz.baselines import KNNBaseline
from raypz.columns import ColumnTemplate, flux_to_mag
from raypz.features import flux_arrays
from raypz.metrics import (
    EvalConfig,
    evaluate,
    headline_table,
    match_ids,
    object_ids,
    read_table,
    write_report,
)
from raypz.models.artifact import MODEL_JSON, TRAINING_CURVES
from raypz.pdf import POINT_ESTIMATES, ZGrid, require_point_estimate
from raypz.plots import make_all_plots
from raypz.predictions import MODEL_HASH_KEY, Predictions, read_predictions
from raypz.schema import ContractError, RefusedError, validate_dataset
from raypz.tables import column_names


@dataclass(frozen=True)
class EvaluationRequest:
    """What to score and where to write it.

    Attributes:
        predictions: predictions of the main model (Parquet file/dir or HATS catalog).
        truth: object table with objectId, the true redshift and fluxes in nJy.
        report: output directory (local or URI).
        name: name of the main model in the report.
        compare: other models, name -> predictions path, scored on the same rows.
        train: labelled table on which to fit the kNN baseline ('knn'); None: no baseline.
        mag_band: band whose AB magnitude bins the metrics.
        z_column: true-redshift column of ``truth`` and ``train``.
        plots: write PNG plots as well as metrics.json and report.md.
        point_estimate: z_phot of every model: "mode" (DESIGN 8), "median", "mean" or "best"
            (:func:`raypz.pdf.best_redshift`) of the PDF.
        model: the main model's artifact directory: its training curves (train and validation
            loss per epoch of each member) are copied into the report and shown there.
    """

    predictions: str
    truth: str
    report: str
    name: str = "model"
    compare: dict[str, str] = field(default_factory=dict)
    train: str | None = None
    mag_band: str = "i"
    z_column: str = "redshift"
    plots: bool = True
    point_estimate: str = "mode"
    model: str | None = None

    def __post_init__(self) -> None:
        require_point_estimate(self.point_estimate, "EvaluationRequest.point_estimate")

    def model_names(self) -> list[str]:
        """Every model the report will hold."""
        return [self.name, *(["knn"] if self.train else []), *self.compare]


def slug(name: str) -> str:
    """A directory name for a model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "model"


class _Scored(NamedTuple):
    """One model's PDFs on the test rows it has, row-aligned with their truth."""

    grid: ZGrid
    pdf: np.ndarray  # (M, G)
    flags: np.ndarray | None  # (M,) int32
    z_spec: np.ndarray  # (M,)
    mag: np.ndarray  # (M,) AB mag
    stored: dict[str, np.ndarray] | None = None  # point estimates by kind, (M,) each


def _rows_of(pred: Predictions, rows: np.ndarray, z_spec: np.ndarray, mag: np.ndarray) -> _Scored:
    """``rows`` of a predictions set, paired with the truth of those rows, with the point
    estimates the set stores (a catalog's ``z_mode``... columns: what it serves as z_phot)."""
    flags = None
    if "flags" in pred.table.column_names:
        flags = pred.table["flags"].to_numpy(zero_copy_only=False)[rows]
    stored = {
        kind: pred.table[f"z_{kind}"].to_numpy(zero_copy_only=False).astype(np.float64)[rows]
        for kind in POINT_ESTIMATES
        if f"z_{kind}" in pred.table.column_names
    }
    # only the truth's rows were read, so ``rows`` is usually every row in order: no copy then
    every_row = rows.size == len(pred.pdf) and np.array_equal(rows, np.arange(rows.size))
    pdf = pred.pdf if every_row else pred.pdf[rows]
    return _Scored(pred.grid, pdf, flags, z_spec, mag, stored)


MATCH_RADIUS_ARCSEC = 1.0
"""Rows paired by objectId whose positions differ by more than this (arcsec) are different
objects: a truth table of another simulation or release that reuses the ids."""


def _positions(table: pa.Table, columns: ColumnTemplate) -> np.ndarray | None:
    """(N, 2) RA and Dec (degrees) of ``table``; None when it lacks either column."""
    if not {columns.ra, columns.dec} <= set(table.column_names):
        return None
    ra, dec = (table[c].to_numpy(zero_copy_only=False) for c in (columns.ra, columns.dec))
    return np.stack([ra, dec], axis=1).astype(np.float64)


def _same_objects(
    predicted: np.ndarray | None,
    predicted_rows: np.ndarray,
    true: np.ndarray | None,
    true_rows: np.ndarray,
    what: str,
) -> np.ndarray:
    """(M,) bool: which of the M pairs of rows matched by objectId (``predicted_rows[i]`` of
    the predictions, ``true_rows[i]`` of the truth) lie within MATCH_RADIUS_ARCSEC, from the
    positions (N, 2) in degrees of each side; all True when either side has none (None).
    Raises RefusedError when most pairs are farther apart: the ids name other objects there,
    and every score would be noise."""
    if predicted is None or true is None:
        return np.ones(len(predicted_rows), bool)
    ra1, dec1 = np.radians(predicted[predicted_rows]).T
    ra2, dec2 = np.radians(true[true_rows]).T
    hav = (
        np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    )
    arcsec = np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))) * 3600.0
    with np.errstate(invalid="ignore"):
        near = ~(arcsec > MATCH_RADIUS_ARCSEC)  # a NaN position is not evidence either way
    if near.size and near.mean() < 0.5:
        raise RefusedError(
            f"{what}: {int((~near).sum())} of {near.size} rows paired by objectId lie more than "
            f"{MATCH_RADIUS_ARCSEC:g} arcsec apart (median {np.nanmedian(arcsec):.3g} arcsec): "
            "not the same objects (a truth table of another simulation or release?)"
        )
    return near


def _knn(train_path: str, test: pa.Table, columns: ColumnTemplate, grid: ZGrid):
    """kNN baseline fitted on ``train_path``, predicted on the test rows; (PDFs, flags, notes)."""
    # the contract's checks (fluxes in nJy, not magnitudes; ids unique), as for training
    validate_dataset(train_path, columns, require_labels=True)
    train_cols = [*columns.flux_columns(), *columns.flux_err_columns(), columns.redshift]
    train = read_table(train_path, train_cols)
    z_train = train[columns.redshift].to_numpy(zero_copy_only=False).astype(np.float64)
    try:
        knn = KNNBaseline.fit(*flux_arrays(train, columns), z_train)
    except ValueError as err:  # too few usable rows: name the table and its label column
        raise ContractError(train_path, columns.redshift, str(err)) from err
    pdf, flags = knn.predict_pdf(*flux_arrays(test, columns), grid)
    notes = {
        "knn: trained on": f"{train_path} ({train.num_rows} rows)",
        "knn: k, bandwidth": f"{knn.k}, {knn.bandwidth} (1+z)",
    }
    return pdf, flags, notes


def evaluate_predictions(request: EvaluationRequest) -> dict[str, dict]:
    """Score every model of ``request`` and write its report; returns metrics per model name."""
    names = request.model_names()
    if len({slug(n) for n in names}) < len(names):  # each gets a plot directory
        raise ValueError(f"model names must be distinct as directory names, got {names}")
    columns = ColumnTemplate(redshift=request.z_column)
    mag_flux = columns.flux.format(band=request.mag_band)
    truth_cols = [columns.object_id, columns.redshift, mag_flux]
    if request.train:  # the kNN baseline predicts from the test rows' fluxes
        truth_cols += [*columns.flux_columns(), *columns.flux_err_columns()]
    has = column_names(request.truth)
    truth_cols += [c for c in (columns.ra, columns.dec) if c in has]  # to check the pairing
    truth = read_table(request.truth, list(dict.fromkeys(truth_cols)))
    truth_ids = object_ids(truth, columns.object_id, request.truth)
    truth_pos = _positions(truth, columns)
    # only the truth's rows of the predictions are kept, and a catalog's partitions far from
    # every truth position are not read: a spec-z sample of a data release's catalog costs
    # the memory of the sample, and the reading of the sample's fields
    sky = None if truth_pos is None else (truth_pos[:, 0], truth_pos[:, 1])
    pred = read_predictions(request.predictions, only_ids=truth_ids, near=sky)
    if request.model:  # before any file is written
        _require_model_of(request.model, pred, request.predictions)
    join = match_ids(pred.object_id, truth_ids)
    if join.left_rows.size == 0:
        raise RefusedError(
            f"{request.predictions} and {request.truth}: no objectId in common "
            f"({pred.n_not_kept} prediction rows, {truth_ids.size} truth rows); the truth "
            "must hold the predicted objects"
        )
    left, right = join.left_rows, join.right_rows
    pred_pos = _positions(pred.table, columns)
    what = f"{request.predictions} and {request.truth}"
    near = _same_objects(pred_pos, left, truth_pos, right, what)
    left, right = left[near], right[near]
    test = truth.take(right)  # the test rows, in prediction order
    test_ids = truth_ids[right]
    test_pos = None if truth_pos is None else truth_pos[right]
    z_spec = test[columns.redshift].to_numpy(zero_copy_only=False).astype(np.float64)
    mag = flux_to_mag(test[mag_flux].to_numpy(zero_copy_only=False))
    inputs: dict = {
        "predictions": request.predictions,
        "truth": request.truth,
        "test rows (in predictions and truth)": int(left.size),
        f"rows paired by objectId but > {MATCH_RADIUS_ARCSEC:g} arcsec apart (not scored)": int(
            (~near).sum()
        ),
        "prediction rows without truth (not read)": pred.n_not_kept,
        "truth rows without prediction": join.n_right_only,
        "duplicate objectId rows in predictions (first used)": join.n_left_duplicates,
        "duplicate objectId rows in truth (first used)": join.n_right_duplicates,
        "magnitude": f"{request.mag_band} (AB, from {mag_flux})",
    }
    models = {request.name: _rows_of(pred, left, z_spec, mag)}
    for name, path in request.compare.items():
        other = read_predictions(
            path, only_ids=test_ids, near=None if test_pos is None else tuple(test_pos.T)
        )
        m = match_ids(test_ids, other.object_id)
        other_pos = _positions(other.table, columns)
        what = f"{path} and {request.truth}"
        near = _same_objects(other_pos, m.right_rows, test_pos, m.left_rows, what)
        rows, truth_rows = m.right_rows[near], m.left_rows[near]
        models[name] = _rows_of(other, rows, z_spec[truth_rows], mag[truth_rows])
        inputs[f"{name}: rows > {MATCH_RADIUS_ARCSEC:g} arcsec from the truth (not scored)"] = int(
            (~near).sum()
        )
        inputs[f"{name}: predictions"] = path
        inputs[f"{name}: test rows without prediction (not scored)"] = m.n_left_only
        inputs[f"{name}: prediction rows without a test row (not read)"] = other.n_not_kept
        inputs[f"{name}: duplicate objectId rows (first used)"] = m.n_right_duplicates
    if request.train:
        pdf, flags, notes = _knn(request.train, test, columns, pred.grid)
        models["knn"] = _Scored(pred.grid, pdf, flags, z_spec, mag)
        inputs.update(notes)

    config = EvalConfig(point_estimate=request.point_estimate)
    results: dict[str, dict] = {}
    images: list[str] = []
    for name, s in models.items():
        results[name] = evaluate(s.grid, s.pdf, s.z_spec, s.mag, s.flags, config, s.stored)
        if name == request.name and results[name]["n_scored"] == 0:  # before any file
            got = results[name]
            raise RefusedError(
                f"{request.predictions} and {request.truth}: no row to score of "
                f"{got['n_rows']} paired ({got['n_no_pdf']} without a PDF, "
                f"{got['n_bad_z_spec']} without a usable {columns.redshift}); every metric "
                "would be empty"
            )
        if request.plots:
            directory = io.join(request.report, slug(name))
            paths = make_all_plots(
                directory,
                s.grid,
                s.pdf,
                s.z_spec,
                s.mag,
                s.flags,
                config,
                request.mag_band,
                name,
                s.stored,
            )
            images += [f"{slug(name)}/{path.rsplit('/', 1)[-1]}" for path in paths]
    images = _training_curves(request) + images  # after the refusals: no file before
    written = write_report(results, request.report, inputs, images)
    files = ", ".join(path.rsplit("/", 1)[-1] for path in written.values())
    plots = f" and {len(images)} plots" if images else ""
    print(f"evaluation written to {request.report}: {files}{plots}")
    print(headline_table(results))  # last: what a reader looks for
    return results


def _require_model_of(model: str, pred: Predictions, predictions: str) -> None:
    """RefusedError when the predictions ``pred`` read from ``predictions`` record the hash of
    another model than ``model``'s (the catalog's and the predictor's schema metadata hold
    it): its training curves would be shown as theirs. Predictions without a recorded hash
    pass."""
    made_by = (pred.table.schema.metadata or {}).get(MODEL_HASH_KEY, b"").decode()
    own = json.loads(io.read_bytes(io.join(model, MODEL_JSON))).get("model_hash")
    if made_by and own != made_by:
        raise RefusedError(
            f"{model}: model hash {str(own)[:12]}, but {predictions} were made by model "
            f"{made_by[:12]}; give --model the directory of the model that made them"
        )


def _training_curves(request: EvaluationRequest) -> list[str]:
    """The main model's training-curve PNG copied into the report (its path there), when the
    request names a model directory that has one."""
    if not (request.model and request.plots):
        return []
    source = io.join(request.model, TRAINING_CURVES)
    if not io.is_file(source):
        print(f"{source}: no training curves in the model directory (not shown)")
        return []
    relative = f"{slug(request.name)}/{TRAINING_CURVES}"
    io.makedirs(io.join(request.report, slug(request.name)))
    io.write_bytes_atomic(io.join(request.report, relative), io.read_bytes(source))
    return [relative]
