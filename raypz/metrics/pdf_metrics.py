"""Metrics of redshift PDFs against true redshifts: PIT, CRPS and interval coverage (DESIGN 8).

PDFs are rows of a (N, G) array on a :class:`~raypz.pdf.ZGrid`. Their CDF is the one of
:func:`raypz.pdf.cdf` (trapezoid rule at the grid points) and is taken as linear between grid
points, the same convention as :func:`raypz.pdf.cdf_at` and :func:`raypz.pdf.quantiles`, so the
PIT, the CRPS and the quantile intervals all describe one distribution. Work on the PDFs is done
in chunks of rows, so memory stays bounded by ``chunk_rows * G`` whatever N is.
"""

from __future__ import annotations

import numpy as np

from raypz.pdf import ZGrid, cdf, cdf_at, require_on_grid

CHUNK_ROWS = 2048
"""Rows per chunk when evaluating CDFs: a few (chunk, G) float64 arrays live at once."""

PIT_EXTREME = 1e-4
"""PIT values below this or above 1 minus this count as catastrophic PDF failures."""

COVERAGE_LEVELS: tuple[float, ...] = (0.68, 0.95)
"""Probability contents of the central intervals whose coverage is reported."""


def pit(
    pdf: np.ndarray, grid: ZGrid, z_spec: np.ndarray, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """Probability integral transform ``PIT_i = CDF_i(z_spec,i)``, shape (N,), in [0, 1].

    A true redshift below (above) the grid gives 0 (1); a non-finite one gives NaN.
    """
    z_spec = np.asarray(z_spec, dtype=np.float64)
    require_on_grid(np.shape(pdf), grid, len(z_spec))
    out = np.empty(z_spec.shape[0])
    for start in range(0, z_spec.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        out[rows] = cdf_at(pdf[rows], grid, z_spec[rows])
    return out


def pit_metrics(pit_values: np.ndarray, extreme: float = PIT_EXTREME) -> dict[str, float]:
    """Distances of the PIT distribution from U(0, 1), each a float (NaN when N = 0).

    With the sorted PIT values ``u_(1) <= ... <= u_(n)``:

    - ``pit_ks``: Kolmogorov-Smirnov statistic
      ``D = max_i max(i/n - u_(i), u_(i) - (i-1)/n)`` = sup |F_n - F|;
    - ``pit_cvm``: Cramer-von Mises distance ``omega^2 = integral (F_n(u) - u)^2 du``
      ``= 1/(12 n^2) + (1/n) sum_i (u_(i) - (2i-1)/(2n))^2``. This is the per-object distance,
      NOT the test statistic ``T = n omega^2`` (e.g. of ``scipy.stats.cramervonmises``), so bins
      of different size can be compared; multiply by n to get T;
    - ``pit_extreme_frac``: fraction of PIT < ``extreme`` or > 1 - ``extreme``.
    """
    u = np.sort(np.asarray(pit_values, dtype=np.float64))
    n = u.size
    if n == 0:
        return dict.fromkeys(("pit_ks", "pit_cvm", "pit_extreme_frac"), float("nan"))
    i = np.arange(1, n + 1)
    ks = max(float(np.max(i / n - u)), float(np.max(u - (i - 1) / n)))
    cvm = 1.0 / (12.0 * n * n) + float(np.mean((u - (2 * i - 1) / (2.0 * n)) ** 2))
    extreme_frac = float(np.mean((u < extreme) | (u > 1.0 - extreme)))
    return {"pit_ks": ks, "pit_cvm": cvm, "pit_extreme_frac": extreme_frac}


def crps(
    pdf: np.ndarray, grid: ZGrid, z_spec: np.ndarray, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """Continuous ranked probability score of each row, shape (N,), in redshift units.

    ``CRPS_i = integral (F_i(z) - H(z - z_spec,i))^2 dz`` over the real line, with H the unit
    step and F_i the CDF, linear between grid points (0 below the grid, 1 above it). The
    integral is exact for that CDF: on a grid interval of width h where F goes from a to b,
    ``integral F^2 = h (a^2 + ab + b^2) / 3`` and ``integral (1-F)^2`` likewise with 1-a, 1-b;
    the interval holding z_spec is split there. A z_spec beyond the grid adds its distance to
    the grid. For a delta-like PDF the CRPS tends to |z_phot - z_spec|. NaN where z_spec is
    not finite (as :func:`pit`).
    """
    z_spec = np.asarray(z_spec, dtype=np.float64)
    require_on_grid(np.shape(pdf), grid, len(z_spec))
    finite = np.isfinite(z_spec)
    z_at = np.where(finite, z_spec, grid.z_min)  # any point on the grid; the row becomes NaN
    out = np.empty(z_spec.shape[0])
    for start in range(0, z_spec.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        out[rows] = _crps_exact(cdf(pdf[rows], grid), grid, z_at[rows])
    return np.where(finite, out, np.nan)


def _crps_exact(c: np.ndarray, grid: ZGrid, z: np.ndarray) -> np.ndarray:
    """CRPS of piecewise-linear CDFs ``c`` (n, G) at their own true redshifts ``z`` (n,)."""
    h = grid.dz
    a, b = c[:, :-1], c[:, 1:]  # (n, G-1) CDF at the two ends of each grid interval
    below = h * (a * a + a * b + b * b) / 3.0  # integral of F^2 over each interval
    ua, ub = 1.0 - a, 1.0 - b
    above = h * (ua * ua + ua * ub + ub * ub) / 3.0  # integral of (1 - F)^2
    k, t = grid.locate(z)  # the interval holding z (clipped to the grid), where z sits in it
    j = np.arange(grid.n - 1)
    total = np.where(j < k[:, None], below, 0.0).sum(axis=1)
    total += np.where(j > k[:, None], above, 0.0).sum(axis=1)
    rows = np.arange(c.shape[0])
    ak, bk = a[rows, k], b[rows, k]
    m = ak + t * (bk - ak)  # CDF at z
    um, ubk = 1.0 - m, 1.0 - bk
    total += t * h * (ak * ak + ak * m + m * m) / 3.0
    total += (1.0 - t) * h * (um * um + um * ubk + ubk * ubk) / 3.0
    return total + np.maximum(z - grid.z_max, 0.0) + np.maximum(grid.z_min - z, 0.0)


def coverage_curve(pit_values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Observed coverage of central credible intervals of probability content ``levels`` (L,).

    The true redshift lies inside the central interval [Q((1-p)/2), Q((1+p)/2)] of a continuous,
    increasing CDF exactly when ``|PIT - 1/2| <= p/2``, so coverage is read off the PIT values
    (equal to using :func:`raypz.pdf.quantiles` up to ties where a CDF is flat). For calibrated
    PDFs the result equals ``levels``. Returns (L,) fractions (NaN when there are no rows).
    """
    u = np.asarray(pit_values, dtype=np.float64)
    levels = np.asarray(levels, dtype=np.float64)
    if u.size == 0:
        return np.full(levels.shape, np.nan)
    return (np.abs(u[:, None] - 0.5) <= levels[None, :] / 2.0).mean(axis=0)


def coverage(
    pit_values: np.ndarray, levels: tuple[float, ...] = COVERAGE_LEVELS
) -> dict[str, float]:
    """Coverage of the central ``levels`` intervals, keyed ``coverage_68``, ``coverage_95``, ..."""
    observed = coverage_curve(pit_values, np.asarray(levels))
    return {f"coverage_{round(100 * p)}": float(v) for p, v in zip(levels, observed, strict=True)}
