"""Metrics of photometric-redshift PDFs against true redshifts (DESIGN 8), and their reports.

>>> import numpy as np
>>> from raypz.metrics import evaluate
>>> from raypz.pdf import ZGrid, normalize
>>> grid = ZGrid(0.0, 3.0, 301)
>>> rng = np.random.default_rng(0)
>>> z_true = rng.uniform(0.2, 2.0, 500)
>>> mu = z_true + 0.03 * (1 + z_true) * rng.standard_normal(500)
>>> width = 0.03 * (1 + mu[:, None])
>>> pdf = normalize(np.exp(-0.5 * ((grid.values - mu[:, None]) / width) ** 2), grid)
>>> result = evaluate(grid, pdf, z_true)
>>> round(result["overall"]["sigma_mad"], 2), round(result["overall"]["coverage_68"], 1)
(0.03, 0.7)
"""

from raypz.metrics.binning import bin_index
from raypz.metrics.nz import (
    TOMO_EDGES,
    NZStacks,
    mean_z,
    nz_metrics,
    nz_stacks,
    truth_density,
    wasserstein1,
)
from raypz.metrics.pdf_metrics import coverage, coverage_curve, crps, pit, pit_metrics
from raypz.metrics.point import point_metrics, scaled_residual
from raypz.metrics.report import headline_table, render_markdown, write_report
from raypz.metrics.scoring import (
    EvalConfig,
    RowScores,
    aggregate,
    binned,
    evaluate,
    point_estimates,
    scorable_rows,
    score_rows,
    served_point_estimates,
)
from raypz.metrics.tables import IdMatch, match_ids, object_ids, read_table

__all__ = [
    "TOMO_EDGES",
    "EvalConfig",
    "IdMatch",
    "NZStacks",
    "RowScores",
    "aggregate",
    "bin_index",
    "binned",
    "coverage",
    "coverage_curve",
    "crps",
    "evaluate",
    "headline_table",
    "match_ids",
    "mean_z",
    "nz_metrics",
    "nz_stacks",
    "object_ids",
    "pit",
    "pit_metrics",
    "point_estimates",
    "point_metrics",
    "read_table",
    "render_markdown",
    "scaled_residual",
    "scorable_rows",
    "score_rows",
    "served_point_estimates",
    "truth_density",
    "wasserstein1",
    "write_report",
]
