"""Distance to the training set (raypz.models.reference) and the catalog's quality columns."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch

from raypz import flags as fl
from raypz.infer.predictor import CatalogPredictor
from raypz.metrics import evaluate
from raypz.models import load_artifact
from raypz.models.reference import FAR_FROM_TRAINING_DISTANCE, TrainingReference
from raypz.pdf import ZGrid


def test_training_like_rows_score_one_and_far_rows_score_high(rng):
    train = rng.normal(size=(3000, 8)).astype(np.float32)
    ref = TrainingReference.fit(train, rows=1024, k=5)
    alike = ref.distance(torch.from_numpy(rng.normal(size=(2000, 8)).astype(np.float32)))
    assert float(alike.median()) == pytest.approx(1.0, abs=0.1)
    far = ref.distance(torch.from_numpy(rng.normal(6.0, 1.0, size=(50, 8)).astype(np.float32)))
    assert float(far.min()) > FAR_FROM_TRAINING_DISTANCE
    with pytest.raises(ValueError, match="more than k=5"):
        TrainingReference.fit(train[:5])


def test_catalog_has_quality_columns_and_flags(small_model, small_survey):
    artifact = load_artifact(small_model)
    assert artifact.reference is not None and artifact.reference.features.shape[0] == 1024
    batch = pads.dataset(small_survey, format="parquet").head(300)
    # one object far outside the training colours: its g flux 1000x brighter
    g = batch["g_cModelFlux"].to_numpy().copy()
    g[0] *= 1000.0
    batch = batch.set_column(batch.schema.get_field_index("g_cModelFlux"), "g_cModelFlux", [g])
    out = CatalogPredictor(artifact, "cpu")(batch)
    distance = out["train_distance"].to_numpy()
    spread = out["member_spread"].to_numpy()
    flags = out["flags"].to_numpy()
    assert np.isfinite(distance).all() and np.isfinite(spread).all() and (spread >= 0).all()
    assert distance[0] > FAR_FROM_TRAINING_DISTANCE and flags[0] & fl.FAR_FROM_TRAINING
    assert np.median(distance[1:]) < 1.5
    far = (flags & fl.FAR_FROM_TRAINING) != 0
    assert (far == (distance > FAR_FROM_TRAINING_DISTANCE)).all()
    disagree = (flags & fl.ENSEMBLE_DISAGREEMENT) != 0
    assert (disagree == (spread > 0.1)).all()


def test_flagged_rows_are_scored_apart():
    grid = ZGrid(0.0, 3.0, 301)
    z = np.full(200, 1.0)
    z_phot = np.where(np.arange(200) < 20, 2.0, 1.0)  # the first 20 are outliers...
    pdf = np.zeros((200, grid.n), np.float32)
    pdf[np.arange(200), np.rint(z_phot / grid.dz).astype(int)] = 1.0 / grid.dz
    flags = np.where(np.arange(200) < 30, fl.FAR_FROM_TRAINING, 0).astype(np.int32)  # ...flagged
    result = evaluate(grid, pdf, z, flags=flags)["by_flag"]
    far = result["far_from_training"]
    assert far["fraction"] == pytest.approx(0.15) and far["n_flagged"] == 30
    assert far["flagged"]["eta_0.15"] == pytest.approx(20 / 30)
    assert far["unflagged"]["eta_0.15"] == 0.0
    assert result["any quality flag"]["n_flagged"] == 30
    assert result["ensemble_disagreement"]["n_flagged"] == 0
