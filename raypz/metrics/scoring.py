"""Score a set of PDFs against true redshifts: overall and binned metrics in one nested dict.

Per-row quantities (point estimate, PIT, CRPS) are computed once by :func:`score_rows`; the
metrics of DESIGN 8 are then aggregates over any subset of rows, which makes the binned tables
(in magnitude, true redshift and photometric redshift) cheap. Rows that cannot be scored (flag
``NO_PDF``, a PDF without mass or with non-finite values, a non-finite true redshift) are
excluded and counted, never silently dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from raypz import flags as fl
from raypz.metrics.binning import bin_index
from raypz.metrics.nz import TOMO_EDGES, nz_metrics
from raypz.metrics.pdf_metrics import (
    CHUNK_ROWS,
    COVERAGE_LEVELS,
    PIT_EXTREME,
    coverage,
    crps,
    pit,
    pit_metrics,
)
from raypz.metrics.point import point_metrics, scaled_residual
from raypz.pdf import (
    POINT_ESTIMATES,
    ZGrid,
    point_estimate,
    require_on_grid,
    require_point_estimate,
)


def _increasing(name: str, edges: tuple[float, ...]) -> None:
    if len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"EvalConfig.{name} must be >= 2 strictly increasing edges, got {edges}")


@dataclass(frozen=True)
class EvalConfig:
    """How to score and bin an evaluation.

    Attributes:
        mag_edges: magnitude bin edges (AB mag); 1-mag bins from 16 to 28 by default.
        z_edges: bin edges in true and in photometric redshift for the binned tables.
        tomo_edges: tomographic bin edges in photometric redshift for the n(z) metrics.
        coverage_levels: probability contents of the central intervals whose coverage is given.
        pit_extreme: PIT below this or above 1 minus this is a catastrophic PDF failure.
        chunk_rows: rows per chunk when evaluating CDFs (memory ~ a few chunk_rows x G floats).
        point_estimate: z_phot of the point metrics, binning and tomographic bins: "mode"
            (DESIGN 8), "median", "mean" or "best" (:func:`raypz.pdf.best_redshift`) of each
            PDF.
    """

    mag_edges: tuple[float, ...] = (
        16.0,
        17.0,
        18.0,
        19.0,
        20.0,
        21.0,
        22.0,
        23.0,
        24.0,
        25.0,
        26.0,
        27.0,
        28.0,
    )
    z_edges: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 3.5)
    tomo_edges: tuple[float, ...] = TOMO_EDGES
    coverage_levels: tuple[float, ...] = COVERAGE_LEVELS
    pit_extreme: float = PIT_EXTREME
    chunk_rows: int = CHUNK_ROWS
    point_estimate: str = "mode"

    def __post_init__(self) -> None:
        for name in ("mag_edges", "z_edges", "tomo_edges"):
            _increasing(name, getattr(self, name))
        if not all(0.0 < p < 1.0 for p in self.coverage_levels):
            raise ValueError(
                f"EvalConfig.coverage_levels must be in (0, 1): {self.coverage_levels}"
            )
        if not 0.0 < self.pit_extreme < 0.5:
            raise ValueError(f"EvalConfig.pit_extreme must lie in (0, 0.5): {self.pit_extreme}")
        if self.chunk_rows < 1:
            raise ValueError(f"EvalConfig.chunk_rows must be >= 1: {self.chunk_rows}")
        require_point_estimate(self.point_estimate, "EvalConfig.point_estimate")


@dataclass(frozen=True)
class RowScores:
    """Per-row scores of the scorable rows, each of shape (M,).

    Attributes:
        z_phot: point estimate (redshift), the PDF mode unless stated.
        z_spec: true redshift.
        pit: CDF at the true redshift.
        crps: continuous ranked probability score (redshift units).
    """

    z_phot: np.ndarray
    z_spec: np.ndarray
    pit: np.ndarray
    crps: np.ndarray

    def subset(self, rows: np.ndarray) -> RowScores:
        """The scores of ``rows`` (bool mask or indices)."""
        return RowScores(self.z_phot[rows], self.z_spec[rows], self.pit[rows], self.crps[rows])

    @property
    def dz(self) -> np.ndarray:
        """Scaled residual (z_phot - z_spec) / (1 + z_spec)."""
        return scaled_residual(self.z_phot, self.z_spec)


def scorable_rows(
    pdf: np.ndarray, z_spec: np.ndarray, flags: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Which rows can be scored, (N,) bool, and why the others cannot.

    Excluded are rows flagged ``NO_PDF`` or whose PDF has no mass, non-finite values or a
    negative value (no density: its CDF would fall, and its PIT mean nothing; a compared
    model's PDFs come from elsewhere), counted as ``n_no_pdf``, and, among the rest, rows
    whose true redshift is not finite or <= -1 (``n_bad_z_spec``). Returns the mask and
    ``{"n_rows", "n_scored", "n_no_pdf", "n_bad_z_spec"}``.
    """
    pdf = np.asarray(pdf)
    total = pdf.sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        no_pdf = ~(np.isfinite(total) & (total > 0)) | (pdf.min(axis=1) < 0)
    if flags is not None:
        no_pdf |= (np.asarray(flags) & fl.NO_PDF) != 0
    z_spec = np.asarray(z_spec, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        good_z = np.isfinite(z_spec) & (z_spec > -1.0)
    keep = ~no_pdf & good_z
    counts = {
        "n_rows": int(keep.size),
        "n_scored": int(keep.sum()),
        "n_no_pdf": int(no_pdf.sum()),
        "n_bad_z_spec": int((~no_pdf & ~good_z).sum()),
    }
    return keep, counts


def point_estimates(
    pdf: np.ndarray, grid: ZGrid, point: str = "mode", chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """:func:`~raypz.pdf.point_estimate` of PDFs (M, G), ``chunk_rows`` rows at a time (the
    median needs a float64 CDF per row)."""
    out = np.empty(len(pdf))
    for lo in range(0, len(pdf), chunk_rows):
        out[lo : lo + chunk_rows] = point_estimate(pdf[lo : lo + chunk_rows], grid, point)
    return out


def served_point_estimates(
    kept_pdf: np.ndarray,
    grid: ZGrid,
    kind: str,
    keep: np.ndarray,
    stored: Mapping[str, np.ndarray] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> np.ndarray:
    """The ``kind`` point estimates (M,) of the scorable rows ``keep`` (N,) bool: the ``stored``
    ones (N,) where given and finite (what a catalog serves, from its full-precision PDFs),
    else those of ``kept_pdf`` (M, G), the PDFs of those rows (perhaps decoded from the
    compact form, whose quantised peak moves the mode)."""
    given = None if kind not in (stored or {}) else np.asarray(stored[kind], np.float64)[keep]
    if given is not None and np.isfinite(given).all():
        return given
    own = point_estimates(kept_pdf, grid, kind, chunk_rows)
    return own if given is None else np.where(np.isfinite(given), given, own)


def score_rows(
    grid: ZGrid,
    pdf: np.ndarray,
    z_spec: np.ndarray,
    chunk_rows: int = CHUNK_ROWS,
    point: str = "mode",
    z_phot: np.ndarray | None = None,
) -> RowScores:
    """Point estimate (``point``: see :func:`~raypz.pdf.point_estimate`; or ``z_phot`` (M,)
    when given), PIT and CRPS of scorable PDFs (M, G) at their true redshifts (M,)."""
    z_spec = np.asarray(z_spec, dtype=np.float64)
    return RowScores(
        z_phot=point_estimates(pdf, grid, point, chunk_rows) if z_phot is None else z_phot,
        z_spec=z_spec,
        pit=pit(pdf, grid, z_spec, chunk_rows),
        crps=crps(pdf, grid, z_spec, chunk_rows),
    )


def aggregate(scores: RowScores, config: EvalConfig = EvalConfig()) -> dict[str, float]:
    """All scalar metrics of DESIGN 8 over the given rows (NaN where there are none).

    Keys: ``n``, those of :func:`~raypz.metrics.point_metrics`, ``crps_mean``, those of
    :func:`~raypz.metrics.pit_metrics` and of :func:`~raypz.metrics.coverage`.
    """
    n = int(scores.z_spec.size)
    out: dict[str, float] = {"n": n}
    out.update(point_metrics(scores.z_phot, scores.z_spec))
    out["crps_mean"] = float(scores.crps.mean()) if n else float("nan")
    out.update(pit_metrics(scores.pit, config.pit_extreme))
    out.update(coverage(scores.pit, config.coverage_levels))
    return out


def binned(
    scores: RowScores, x: np.ndarray, edges: tuple[float, ...], config: EvalConfig = EvalConfig()
) -> dict:
    """:func:`aggregate` in bins of ``x`` (M,), e.g. magnitude or redshift.

    Returns ``{"edges": [...], "n_outside": rows outside the edges or with NaN x,
    "bins": [{"lo", "hi", "n", metrics...}, ...]}``; empty bins carry n = 0 and NaN metrics.
    """
    idx = bin_index(x, edges)
    bins = [
        {"lo": float(lo), "hi": float(hi), **aggregate(scores.subset(idx == b), config)}
        for b, (lo, hi) in enumerate(itertools.pairwise(edges))
    ]
    return {"edges": [float(e) for e in edges], "n_outside": int((idx < 0).sum()), "bins": bins}


QUALITY_FLAGS = {
    "ensemble_disagreement": fl.ENSEMBLE_DISAGREEMENT,
    "far_from_training": fl.FAR_FROM_TRAINING,
    "out_of_color_space": fl.OUT_OF_COLOR_SPACE,
    "any quality flag": fl.QUALITY,
}
"""The flags whose rows :func:`by_flag` scores apart: each quality bit, and any of them."""


def by_flag(scores: RowScores, flags: np.ndarray) -> dict[str, dict]:
    """Do the quality flags find the bad PDFs? For each of :data:`QUALITY_FLAGS`: the fraction
    of scored rows flagged, and the point metrics (:func:`~raypz.metrics.point_metrics`) of
    the flagged and the unflagged rows. ``flags`` are those of the scored rows."""
    out = {}
    for name, bits in QUALITY_FLAGS.items():
        flagged = (flags & bits) != 0
        out[name] = {
            "fraction": float(flagged.mean()) if flagged.size else float("nan"),
            "n_flagged": int(flagged.sum()),
            "flagged": point_metrics(scores.z_phot[flagged], scores.z_spec[flagged]),
            "unflagged": point_metrics(scores.z_phot[~flagged], scores.z_spec[~flagged]),
        }
    return out


def evaluate(
    grid: ZGrid,
    pdf: np.ndarray,
    z_spec: np.ndarray,
    mag: np.ndarray | None = None,
    flags: np.ndarray | None = None,
    config: EvalConfig = EvalConfig(),
    stored: Mapping[str, np.ndarray] | None = None,
) -> dict:
    """Score PDFs against true redshifts: overall, binned, and n(z) per tomographic bin.

    Args:
        grid: the z grid of ``pdf``.
        pdf: (N, G) PDFs (rows integrating to 1; all zero where no PDF was made).
        z_spec: (N,) true redshifts.
        mag: optional (N,) AB magnitudes for the magnitude bins (NaN allowed: not binned).
        flags: optional (N,) int32 quality flags; rows with ``NO_PDF`` are not scored.
        config: binning and metric settings.
        stored: point estimates (N,) by kind of :data:`~raypz.pdf.POINT_ESTIMATES` that the
            predictor computed from the full-precision PDFs (a catalog's ``z_mode``...
            columns). They are scored instead of estimates from ``pdf``, which may be decoded
            from the compact form: its quantised peak is flat over a few grid points, and the
            first of them moved the mode low by ~0.004 on average. NaN entries fall back to
            ``pdf``'s.

    Returns:
        A JSON-ready dict: the counts of :func:`scorable_rows`, ``point_estimate`` (what z_phot
        is), ``flag_counts`` (rows per flag bit, when flags are given), ``overall``
        (:func:`aggregate` of all scored rows), ``by_point_estimate`` (the overall
        :func:`~raypz.metrics.point_metrics` of each of :data:`~raypz.pdf.POINT_ESTIMATES`),
        ``by_flag`` (with flags: :func:`by_flag`), ``binned`` (``z_spec``, ``z_phot`` and, with
        ``mag``, ``mag``: see :func:`binned`) and
        ``nz`` (:func:`~raypz.metrics.nz_metrics` in ``config.tomo_edges``).
    """
    require_on_grid(np.shape(pdf), grid, len(z_spec))
    keep, counts = scorable_rows(pdf, z_spec, flags)
    kept_pdf = pdf if keep.all() else np.asarray(pdf)[keep]

    def z_phot(kind: str) -> np.ndarray:
        return served_point_estimates(kept_pdf, grid, kind, keep, stored, config.chunk_rows)

    scores = score_rows(
        grid,
        kept_pdf,
        np.asarray(z_spec)[keep],
        config.chunk_rows,
        z_phot=z_phot(config.point_estimate),
    )
    result: dict = {**counts, "point_estimate": config.point_estimate}
    if flags is not None:
        result["flag_counts"] = fl.count_flags(flags)
    result["overall"] = aggregate(scores, config)
    if flags is not None:
        result["by_flag"] = by_flag(scores, np.asarray(flags)[keep])
    result["by_point_estimate"] = {
        kind: point_metrics(
            scores.z_phot if kind == config.point_estimate else z_phot(kind), scores.z_spec
        )
        for kind in POINT_ESTIMATES
    }
    result["binned"] = {
        "z_spec": binned(scores, scores.z_spec, config.z_edges, config),
        "z_phot": binned(scores, scores.z_phot, config.z_edges, config),
    }
    if mag is not None:
        result["binned"]["mag"] = binned(scores, np.asarray(mag)[keep], config.mag_edges, config)
    result["nz"] = nz_metrics(kept_pdf, grid, scores.z_phot, scores.z_spec, config.tomo_edges)
    return result
