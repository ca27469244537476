"""Calibration of an ensemble's PDF widths after training.

The ensemble PDF is the mean of its members' PDFs, which adds the members' spread to each
member's own width; one factor on every member's widths (MDN sigmas, binned-head temperature)
undoes the excess or a lack. :func:`calibrate` picks the factor that minimises the ensemble's
log score on the validation rows, which no member trained on (in k-fold mode too: the folds
divide the other rows), so the factor is fitted to the PDF that is deployed, the mean of all
members; :func:`with_width_scale` stores it in a member's weights, so it travels with the
(hashed) artifact.
"""

from __future__ import annotations

import numpy as np
import torch

from raypz import flags as fl
from raypz.models import EnsemblePredictor
from raypz.models.heads import WIDTH_SCALE_KEY
from raypz.pdf import ZGrid, cdf_at
from raypz.schema import usable_redshift
from raypz.train.config import TrainConfig
from raypz.train.labelled import LabelledArrays, train_mask

WIDTH_SCALES = np.round(np.arange(0.5, 1.5001, 0.1), 3)
"""Coarse PDF width scales tried by the calibration (1 = uncalibrated); it then refines the
best one in steps of ``WIDTH_SCALE_STEP``."""
WIDTH_SCALE_STEP = 0.02


def with_width_scale(state: dict, scale: float) -> dict:
    """A member state dict whose head carries the calibration ``scale``."""
    key = f"head.{WIDTH_SCALE_KEY}"
    return {**state, key: torch.tensor(float(scale), dtype=torch.float32)}


def set_width_scale(predictor: EnsemblePredictor, scale: float) -> None:
    """Set every member's PDF width scale (1 = as trained) in place: the heads multiply the
    widths of their PDFs by it."""
    for net in predictor.members:
        getattr(net.head, WIDTH_SCALE_KEY).fill_(float(scale))


def validation_pdfs(
    predictor: EnsemblePredictor, labelled: LabelledArrays, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (N,) bool of the validation split, the ensemble's PDFs there (n, G) and their
    flags (n,)."""
    rows = ~train_mask(labelled.object_id, config, None)
    if not rows.any():
        return rows, np.zeros((0, config.grid.n), np.float32), np.zeros(0, np.int32)
    x, flags = predictor.artifact.transform.transform_fluxes(
        labelled.flux[rows], labelled.err[rows]
    )
    pdf, extra_flags = predictor.predict(x, _rows_of(labelled.images, rows))
    return rows, pdf, flags | extra_flags


def _rows_of(images: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return images[rows] if images is not None else None


def log_score(pdf: np.ndarray, grid: ZGrid, z: np.ndarray, floor: float = 1e-4) -> float:
    """Mean negative log of the PDFs (n, G) at their true redshifts (linear on the grid)."""
    lo, frac = grid.locate(z)
    r = np.arange(len(z))
    dens = (1 - frac) * pdf[r, lo] + frac * pdf[r, lo + 1]
    return float(-np.mean(np.log(np.maximum(dens, floor))))


MIN_CALIBRATION_ROWS = 30
"""Fewest validation rows with a usable redshift that a width scale is fitted on: on 1-3 rows
the scale went to either end of its range (0.42 or 1.58) on chance alone."""


def calibrate(
    predictor: EnsemblePredictor, labelled: LabelledArrays, config: TrainConfig, rows: np.ndarray
) -> dict:
    """The width scale minimising the ensemble's log score on ``rows`` (ties: closest to 1),
    which no member may have trained on (:func:`validation_pdfs`). With fewer than
    :data:`MIN_CALIBRATION_ROWS` usable rows the scale stays 1, and the result says so.

    The ensemble PDF is the mean of member PDFs, which adds the members' spread to each
    member's own width; one scale of every member's widths undoes the excess (or a lack).
    """
    usable = int(usable_redshift(labelled.z[rows]).sum())
    if usable < MIN_CALIBRATION_ROWS:
        print(
            f"calibration skipped: {usable} validation rows with a usable redshift, fewer than "
            f"{MIN_CALIBRATION_ROWS}; width scale 1 (add labelled rows or raise val_fraction)"
        )
        set_width_scale(predictor, 1.0)
        return {"width_scale": 1.0, "rows": usable, "skipped": "too few validation rows"}
    idx = np.flatnonzero(rows)
    if len(idx) > config.calibration_rows:
        idx = np.sort(
            np.random.default_rng(config.seed).choice(idx, config.calibration_rows, replace=False)
        )
    sub = labelled.take(idx)
    x, row_flags = predictor.artifact.transform.transform_fluxes(sub.flux, sub.err)
    # rows without a usable band get no PDF in a catalog (their features are all fill values):
    # they must not choose the width scale either
    has_pdf = (row_flags & fl.NO_PDF) == 0
    # the networks run once; only the heads' PDFs are redone for each trial scale
    outputs = predictor.head_outputs(x, sub.images)

    def pdfs() -> np.ndarray:
        return predictor.pdf_from_head_outputs(outputs)

    scores: dict[float, float] = {}

    def scored(pdf: np.ndarray) -> np.ndarray:
        # rows that can score a PDF: a PDF with mass, and a usable label
        return has_pdf & usable_redshift(sub.z) & (pdf.sum(axis=1) > 0)

    def score(scale: float) -> float:
        if scale not in scores:
            set_width_scale(predictor, scale)
            pdf = pdfs()
            keep = scored(pdf)
            scores[scale] = log_score(pdf[keep], config.grid, sub.z[keep])
        return scores[scale]

    def best_of(candidates) -> float:
        return min(candidates, key=lambda s: (round(score(s), 6), abs(s - 1.0)))

    coarse = best_of([float(s) for s in WIDTH_SCALES])
    fine = np.round(coarse + WIDTH_SCALE_STEP * np.arange(-4, 5), 3)
    best = best_of([float(s) for s in fine if s > 0.05] + [1.0])
    set_width_scale(predictor, best)
    pdf = pdfs()
    keep = scored(pdf)
    pit = cdf_at(pdf[keep], config.grid, sub.z[keep])
    print(
        f"calibration: width scale {best} (validation log score {scores[1.0]:.4f} at 1 -> "
        f"{scores[best]:.4f}; {int(keep.sum())} rows)"
    )
    ends = (WIDTH_SCALES.min() - 4 * WIDTH_SCALE_STEP, WIDTH_SCALES.max() + 4 * WIDTH_SCALE_STEP)
    if any(abs(best - end) < 1e-9 for end in ends):
        print(
            f"warning: calibration's width scale {best} is at the end of its search "
            f"({ends[0]:g}-{ends[1]:g}): the PDFs may need more than it can give; look at "
            "the validation PIT (jobs/evaluate.py on MODEL/validation)"
        )
    return {
        "width_scale": best,
        "rows": int(keep.sum()),
        "log_score_uncalibrated": scores[1.0],
        "log_score": scores[best],
        "coverage_68_fit_rows": float(np.mean(np.abs(pit - 0.5) <= 0.34)),
    }
