"""The post-training width calibration (raypz.train.calibration), in-process on a small artifact:
the scores it fits on cached head outputs equal the scores of full predictions at that scale."""

from __future__ import annotations

import numpy as np
import pytest

from raypz.models import EnsemblePredictor, load_artifact
from raypz.train import TrainConfig
from raypz.train.calibration import WIDTH_SCALES, calibrate, log_score, validation_pdfs
from raypz.train.labelled import read_labelled, train_mask
from raypz.train.members import fit_member_scales


def test_calibrated_score_matches_full_prediction(small_model, small_survey):
    artifact = load_artifact(small_model)
    config = TrainConfig(grid=artifact.grid, calibration_rows=800, seed=1)
    labelled = read_labelled(small_survey, config)
    predictor = EnsemblePredictor(artifact, "cpu")
    rows, _, _ = validation_pdfs(predictor, labelled, config)
    result = calibrate(predictor, labelled, config, rows)
    best = result["width_scale"]
    assert result["rows"] == min(800, int(rows.sum()))
    assert min(WIDTH_SCALES) - 0.1 <= best <= max(WIDTH_SCALES) + 0.1
    assert result["log_score"] <= result["log_score_uncalibrated"]
    # the predictor is left at the best scale: score the full predictions of the same rows
    idx = np.sort(
        np.random.default_rng(config.seed).choice(np.flatnonzero(rows), result["rows"], False)
    )
    sub = labelled.take(idx)
    r, pdf, _ = validation_pdfs(predictor, sub, config)
    assert r.all()
    assert log_score(pdf, config.grid, sub.z) == pytest.approx(result["log_score"], abs=1e-5)


@pytest.mark.parametrize("kfold", [0, 2])
def test_members_alone_are_calibrated_on_their_own_held_out_rows(small_model, small_survey, kfold):
    artifact = load_artifact(small_model)
    config = TrainConfig(kfold=kfold, grid=artifact.grid, calibration_rows=400, seed=1)
    artifact.meta["training"] = {**artifact.meta["training"], "config": config.to_dict()}
    predictor = EnsemblePredictor(artifact, "cpu")
    scales = fit_member_scales(predictor, small_survey)
    assert len(scales) == 2
    labelled = read_labelled(small_survey, config)
    for i, (scale, member) in enumerate(zip(scales, predictor.members, strict=True)):
        assert float(member.head.width_scale) == pytest.approx(scale)
        # member i alone, on the rows it did not train on (k-fold: its fold too), fits that scale
        rows = ~train_mask(labelled.object_id, config, i if kfold else None)
        assert rows.sum() > (~train_mask(labelled.object_id, config, None)).sum() or not kfold
        alone = EnsemblePredictor(artifact, "cpu")
        alone.members = [alone.members[i]]
        result = calibrate(alone, labelled, config, rows)
        assert result["rows"] == min(400, int(rows.sum()))
        assert result["width_scale"] == pytest.approx(scale)
