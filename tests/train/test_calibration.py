"""The post-training width calibration (raypz.train.calibration), in-process on a small artifact:
the scores it fits on cached head outputs equal the scores of full predictions at that scale."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from raypz.models import EnsemblePredictor, load_artifact
from raypz.models.heads import WIDTH_SCALE_KEY
from raypz.predictions import read_predictions
from raypz.train import VALIDATION_DIR, TrainConfig
from raypz.train.calibration import (
    MIN_CALIBRATION_ROWS,
    WIDTH_SCALE_STEP,
    WIDTH_SCALES,
    calibrate,
    log_score,
    validation_pdfs,
)
from raypz.train.ensemble import recalibrate
from raypz.train.labelled import read_labelled, train_mask
from raypz.train.members import fit_member_scales


def _calibration_inputs(model: str, survey: str, **settings):
    """A TrainConfig on the artifact's grid (seed 1, ``settings``), the survey's labelled rows
    and the artifact's predictor on the CPU."""
    artifact = load_artifact(model)
    config = TrainConfig(grid=artifact.grid, seed=1, **settings)
    return config, read_labelled(survey, config), EnsemblePredictor(artifact, "cpu")


def test_calibrated_score_matches_full_prediction(small_model, small_survey):
    config, labelled, predictor = _calibration_inputs(
        small_model, small_survey, calibration_rows=800
    )
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


def test_rows_without_a_usable_band_do_not_choose_the_width_scale(small_model, small_survey):
    """A catalog gives such rows no PDF (their features are fill values); their PDFs entered
    the log score that chose the scale."""
    config, labelled, predictor = _calibration_inputs(
        small_model, small_survey, calibration_rows=10_000
    )
    rows, _, _ = validation_pdfs(predictor, labelled, config)
    clean = calibrate(predictor, labelled, config, rows)
    blind = np.flatnonzero(rows)[::2]  # half the validation rows lose every band
    flux = labelled.flux.copy()
    flux[blind] = np.nan
    broken = replace(labelled, flux=flux)
    result = calibrate(predictor, broken, config, rows)
    assert result["log_score"] != clean["log_score"]  # fewer rows scored
    kept = rows.copy()
    kept[blind] = False
    on_kept = calibrate(predictor, labelled, config, kept)
    assert result["log_score"] == pytest.approx(on_kept["log_score"], abs=1e-9)
    # the rows counted and the coverage reported are those of the scored rows too (an empty
    # PDF's PIT of 0 counted as not covered)
    assert result["rows"] == on_kept["rows"] == int(kept.sum())
    assert result["coverage_68_fit_rows"] == pytest.approx(on_kept["coverage_68_fit_rows"])


def test_too_few_validation_rows_leave_the_width_scale_at_one(small_model, small_survey, capsys):
    """On 1-3 rows the fitted scale went to either end of its range on chance alone."""
    config, labelled, predictor = _calibration_inputs(small_model, small_survey)
    rows = np.zeros(len(labelled.z), bool)
    rows[:MIN_CALIBRATION_ROWS - 1] = True
    result = calibrate(predictor, labelled, config, rows)
    assert result["width_scale"] == 1.0 and result["rows"] == MIN_CALIBRATION_ROWS - 1
    assert "calibration skipped" in capsys.readouterr().out
    rows[MIN_CALIBRATION_ROWS - 1] = True
    assert calibrate(predictor, labelled, config, rows)["rows"] == MIN_CALIBRATION_ROWS


def test_a_width_scale_at_the_end_of_its_search_is_warned_of(small_model, small_survey, capsys):
    """Labels scattered far beyond the PDFs' widths want a scale wider than the search gives:
    the fit stops at its end, and says so (an unwarned 1.58 would read as a calibrated model)."""
    config, labelled, predictor = _calibration_inputs(
        small_model, small_survey, calibration_rows=800
    )
    rows, _, _ = validation_pdfs(predictor, labelled, config)
    calibrate(predictor, labelled, config, rows)
    assert "warning" not in capsys.readouterr().out  # the model's own labels: inside the range
    noise = np.random.default_rng(5).normal(0.0, 0.4, labelled.z.size)
    scattered = replace(labelled, z=np.clip(labelled.z + noise, 0.01, None))
    result = calibrate(predictor, scattered, config, rows)
    end = max(WIDTH_SCALES) + 4 * WIDTH_SCALE_STEP
    assert result["width_scale"] == pytest.approx(end)
    out = capsys.readouterr().out
    assert f"warning: calibration's width scale {end:g} is at the end of its search" in out


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


def test_recalibrate_refits_an_artifact_in_place(small_model, small_survey, tmp_path):
    """``recalibrate`` stores the refitted scale in every member's weights, records it and the
    validation metrics in model.json and writes the validation predictions; a k-fold model of
    the former scheme (members trained on every row) is refused, not calibrated on seen rows."""
    model = shutil.copytree(small_model, tmp_path / "model")
    base = TrainConfig.from_dict(load_artifact(str(model)).meta["training"]["config"])
    metrics = recalibrate(str(model), small_survey, replace(base, calibration_rows=400))
    scale = metrics["calibration"]["width_scale"]
    assert metrics["split"] == "validation" and metrics["calibration"]["rows"] == 400
    assert metrics["calibration"]["log_score"] <= metrics["calibration"]["log_score_uncalibrated"]
    artifact = load_artifact(str(model))
    assert artifact.meta["metrics"]["calibration"]["width_scale"] == scale
    for state in artifact.states:
        assert float(state[f"head.{WIDTH_SCALE_KEY}"]) == pytest.approx(scale)
    pred = read_predictions(str(model / VALIDATION_DIR))
    assert len(pred.object_id) == metrics["n_rows"]

    meta_path = model / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["metrics"]["split"] = "out-of-fold"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"out-of-fold.*train it again"):
        recalibrate(str(model), small_survey)
