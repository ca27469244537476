"""Predictions of each ensemble member alone, to compare members with their ensemble.

:func:`predict_members` (``jobs/predict_members.py`` is its command line) writes
``OUTPUT/member-NN.parquet`` (one predictions table per member, the format that
``jobs/evaluate.py --compare "member NN=OUTPUT/member-NN.parquet"`` reads).

The members carry the artifact's width scale, which was fitted to the *ensemble*; a member
used alone deserves its own. ``--width-scale 1`` gives the members as trained, and
``--calibrate-on TRAIN`` fits each member's own scale on the validation split of the table the
artifact was trained on (k-fold: that split and the member's own fold, the rows it did not
train on; the same search as the ensemble calibration), so a member-vs-ensemble comparison is
fair. In-process and chunked: meant for test sets of up to a few million rows, not for a
survey (use ``jobs/infer_lsst.py`` there). Catalog models only: an image model's members read
cutouts, which this tool does not join.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from raypz import flags as fl
from raypz import io
from raypz.features import flux_arrays
from raypz.metrics import read_table
from raypz.models import EnsemblePredictor, load_artifact
from raypz.predictions import predictions_table
from raypz.schema import validate_dataset
from raypz.train.calibration import calibrate, set_width_scale
from raypz.train.config import TrainConfig
from raypz.train.labelled import read_labelled, train_mask


def member_file_name(index: int) -> str:
    """File name of member ``index``'s predictions."""
    return f"member-{index:02d}.parquet"


def fit_member_scales(predictor: EnsemblePredictor, train: str) -> list[float]:
    """Each member's own width scale, fitted on the rows of ``train`` it did not train on (the
    validation split, and in k-fold mode its own fold too); the members of ``predictor`` are
    left at those scales."""
    config = TrainConfig.from_dict(predictor.artifact.meta["training"]["config"])
    labelled = read_labelled(train, config)
    scales = []
    for i, net in enumerate(list(predictor.members)):
        rows = ~train_mask(labelled.object_id, config, i if config.kfold else None)
        alone = copy.copy(predictor)
        alone.members = [net]
        scales.append(calibrate(alone, labelled, config, rows)["width_scale"])
    return scales


def predict_members(
    model: str,
    input_path: str,
    output: str,
    chunk_rows: int = 50_000,
    device: str = "auto",
    width_scale: float | None = None,
    calibrate_on: str | None = None,
) -> list[str]:
    """Predict every member of ``model`` on the object table ``input_path``; returns the paths.

    ``width_scale`` overrides the artifact's scale for every member; ``calibrate_on`` fits
    each member's own (see the module notes); one of them at most. The input is checked
    against the object-table contract first (ids unique, fluxes not magnitudes...).
    """
    if width_scale is not None and calibrate_on:
        raise ValueError("give a width scale or a table to calibrate on, not both")
    if width_scale is not None and not (math.isfinite(width_scale) and width_scale > 0):
        raise ValueError(f"width scale {width_scale}: must be a finite number > 0")
    artifact = load_artifact(model)
    if artifact.cutouts is not None:
        raise ValueError(
            f"{model}: an image model (its members read cutouts); member predictions are "
            "made for catalog models only"
        )
    predictor = EnsemblePredictor(artifact, device=device)
    if width_scale is not None:
        set_width_scale(predictor, width_scale)
    if calibrate_on:
        print(f"own width scales: {fit_member_scales(predictor, calibrate_on)}", flush=True)
    columns = artifact.transform.columns
    bands = artifact.transform.bands
    print(validate_dataset(input_path, columns, bands).summary(), flush=True)
    table = read_table(
        input_path,
        [columns.object_id, *columns.flux_columns(bands), *columns.flux_err_columns(bands)],
    )
    ids = table[columns.object_id].to_numpy()
    x, flags = artifact.transform.transform_fluxes(*flux_arrays(table, columns, bands))
    usable = (flags & fl.NO_PDF) == 0
    paths = []
    for m in range(len(artifact.states)):
        pdf = np.zeros((len(ids), artifact.grid.n), dtype=np.float32)
        for start in range(0, len(ids), chunk_rows):
            rows = np.arange(start, min(start + chunk_rows, len(ids)))
            rows = rows[usable[rows]]
            if rows.size:
                pdf[rows] = predictor.predict_member(m, x[rows])
        path = io.join(output, member_file_name(m))
        io.write_parquet(predictions_table(ids, pdf, artifact.grid, flags=flags), path)
        paths.append(path)
        print(f"member {m}: {len(ids)} rows -> {path}", flush=True)
    return paths
