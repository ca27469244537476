"""The post-training width calibration (raypz.train.ensemble), in-process on a small artifact:
the scores it fits on cached head outputs equal the scores of full predictions at that scale."""

from __future__ import annotations

import numpy as np
import pytest

from raypz.models import EnsemblePredictor, load_artifact
from raypz.train import TrainConfig
from raypz.train.data import read_labelled
from raypz.train.ensemble import WIDTH_SCALES, _calibrate, _validation_pdfs, log_score


@pytest.mark.parametrize("kfold", [0, 2])
def test_calibrated_score_matches_full_prediction(small_model, small_survey, kfold):
    artifact = load_artifact(small_model)
    config = TrainConfig(kfold=kfold, grid=artifact.grid, calibration_rows=800, seed=1)
    labelled = read_labelled(small_survey, config)
    predictor = EnsemblePredictor(artifact, "cpu")
    rows, _, _ = _validation_pdfs(predictor, labelled, config)
    result = _calibrate(predictor, labelled, config, rows)
    best = result["width_scale"]
    assert result["rows"] == min(800, int(rows.sum()))
    assert min(WIDTH_SCALES) - 0.1 <= best <= max(WIDTH_SCALES) + 0.1
    assert result["log_score"] <= result["log_score_uncalibrated"]
    # the predictor is left at the best scale: score the full predictions of the same rows
    idx = np.sort(
        np.random.default_rng(config.seed).choice(np.flatnonzero(rows), result["rows"], False)
    )
    sub = labelled.take(idx)
    r, pdf, _ = _validation_pdfs(predictor, sub, config)
    assert r.all()
    assert log_score(pdf, config.grid, sub.z) == pytest.approx(result["log_score"], abs=1e-5)
