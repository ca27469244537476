"""Redshift PDFs on a common grid: the grid, normalisation, CDFs and summary statistics.

Every model head (MDN, binned softmax) and every ensemble is evaluated to a PDF on the artifact's
:class:`ZGrid`; metrics, summaries and the catalog all work on arrays ``pdf`` of shape (N, G)
whose rows integrate to 1 over the grid (trapezoid rule).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ZGrid:
    """A uniform redshift grid.

    Attributes:
        z_min: first grid point (redshift).
        z_max: last grid point (redshift).
        n: number of grid points (dz = (z_max - z_min) / (n - 1)).
    """

    z_min: float = 0.0
    z_max: float = 3.5
    n: int = 351

    def __post_init__(self) -> None:
        if not (self.z_max > self.z_min >= 0.0):
            raise ValueError(f"ZGrid needs 0 <= z_min < z_max, got {self.z_min}, {self.z_max}")
        if self.n < 3:
            raise ValueError(f"ZGrid needs n >= 3 points, got {self.n}")

    @property
    def values(self) -> np.ndarray:
        """Grid points, shape (G,)."""
        return np.linspace(self.z_min, self.z_max, self.n)

    @property
    def dz(self) -> float:
        """Grid spacing."""
        return (self.z_max - self.z_min) / (self.n - 1)

    def to_dict(self) -> dict:
        """JSON-ready form, stored in model.json and in Parquet metadata."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ZGrid:
        """Inverse of :meth:`to_dict`."""
        return cls(float(d["z_min"]), float(d["z_max"]), int(d["n"]))


def _trapezoid_weights(n: int, dz: float) -> np.ndarray:
    w = np.full(n, dz)
    w[0] = w[-1] = dz / 2
    return w


def normalize(pdf: np.ndarray, grid: ZGrid) -> np.ndarray:
    """Rows of ``pdf`` (N, G) scaled to integrate to 1; rows with no mass stay all zero."""
    pdf = np.clip(np.asarray(pdf, dtype=np.float64), 0.0, None)
    norm = pdf @ _trapezoid_weights(grid.n, grid.dz)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm[:, None] > 0, pdf / norm[:, None], 0.0)


def cdf(pdf: np.ndarray, grid: ZGrid) -> np.ndarray:
    """Cumulative distribution at each grid point, shape (N, G), from 0 to 1 (trapezoid rule)."""
    pdf = np.asarray(pdf, dtype=np.float64)
    # trapezoid partial sums: sum_{i<=j} p_i - (p_0 + p_j) / 2, in units of dz (dz cancels in
    # the normalisation)
    out = np.cumsum(pdf, axis=1)
    half = 0.5 * pdf
    half += half[:, :1]
    out -= half
    total = out[:, -1:].copy()
    return np.divide(out, total, out=out, where=total > 0)


def cdf_at(pdf: np.ndarray, grid: ZGrid, z: np.ndarray) -> np.ndarray:
    """CDF of each row evaluated at its own redshift ``z`` (N,), linear between grid points.

    This is the PIT value when ``z`` is the true redshift.
    """
    return _interp_rows(cdf(pdf, grid), grid, np.asarray(z, dtype=np.float64))


def _interp_rows(values: np.ndarray, grid: ZGrid, z: np.ndarray) -> np.ndarray:
    """Row i of ``values`` (N, G) linearly interpolated at ``z[i]`` (clipped to the grid).

    A non-finite ``z[i]`` gives NaN (instead of an invalid integer cast and an IndexError).
    """
    finite = np.isfinite(z)
    pos = np.clip((np.where(finite, z, grid.z_min) - grid.z_min) / grid.dz, 0.0, grid.n - 1.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), grid.n - 2)
    frac = pos - lo
    rows = np.arange(values.shape[0])
    out = (1 - frac) * values[rows, lo] + frac * values[rows, lo + 1]
    return np.where(finite, out, np.nan)


def quantiles(pdf: np.ndarray, grid: ZGrid, qs: tuple[float, ...]) -> np.ndarray:
    """Redshift quantiles of each row, shape (N, len(qs)), linear inside a grid interval."""
    return _quantiles_of_cdf(cdf(pdf, grid), grid, qs)


def _quantiles_of_cdf(c: np.ndarray, grid: ZGrid, qs: tuple[float, ...]) -> np.ndarray:
    z = grid.values
    out = np.empty((c.shape[0], len(qs)))
    rows = np.arange(c.shape[0])
    for j, q in enumerate(qs):
        hi = np.clip((c < q).sum(axis=1), 1, grid.n - 1)  # first index with cdf >= q
        c_lo, c_hi = c[rows, hi - 1], c[rows, hi]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(c_hi > c_lo, (q - c_lo) / (c_hi - c_lo), 0.0)
        out[:, j] = z[hi - 1] + np.clip(frac, 0.0, 1.0) * grid.dz
    return out


POINT_ESTIMATES: tuple[str, ...] = ("mode", "median", "mean")
"""Point estimates :func:`point_estimate` can take from a PDF."""


def point_estimate(pdf: np.ndarray, grid: ZGrid, kind: str = "mode") -> np.ndarray:
    """One redshift per row of the PDFs (N, G): their ``kind`` (see :data:`POINT_ESTIMATES`).

    The mode is DESIGN 8's z_phot. The median is robust where the mode is not: in a mixture
    (an ensemble mean) whose members split between two redshift solutions, a narrow peak of
    little mass can be the highest, and the mode follows it (``docs/catalog_results.md``).
    """
    if kind == "mode":
        return grid.values[np.argmax(pdf, axis=1)] if len(pdf) else np.empty(0)
    if kind == "median":
        return quantiles(pdf, grid, (0.5,))[:, 0]
    if kind == "mean":
        w = _trapezoid_weights(grid.n, grid.dz)
        mass, first = (np.asarray(pdf, dtype=np.float64) @ np.stack([w, grid.values * w], 1)).T
        with np.errstate(invalid="ignore", divide="ignore"):
            return first / mass
    raise ValueError(f"unknown point estimate {kind!r}; choose one of {POINT_ESTIMATES}")


SUMMARY_COLUMNS: tuple[str, ...] = (
    "z_mode",
    "z_mean",
    "z_median",
    "z_std",
    "z_lo68",
    "z_hi68",
    "z_lo95",
    "z_hi95",
    "odds",
)
"""Point estimates and intervals stored per row in the PDF catalog (DESIGN 3.3)."""


def summarize(pdf: np.ndarray, grid: ZGrid, odds_width: float = 0.06) -> dict[str, np.ndarray]:
    """Point estimates, spreads and BPZ-style odds of normalised PDFs (N, G).

    ``odds`` is the PDF mass within +-odds_width (1 + z_mode) of the mode. Intervals are
    central (16-84% and 2.5-97.5% quantiles). Values are float32 arrays of shape (N,).
    """
    pdf = np.asarray(pdf, dtype=np.float64)
    z = grid.values
    w = _trapezoid_weights(grid.n, grid.dz)
    mode = z[np.argmax(pdf, axis=1)]
    mass, mean, second = (pdf @ np.stack([w, z * w, z * z * w], axis=1)).T  # one pass
    var = second - 2 * mean * mean + mean * mean * mass  # integral of p (z - mean)^2
    c = cdf(pdf, grid)
    q = _quantiles_of_cdf(c, grid, (0.5, 0.16, 0.84, 0.025, 0.975))
    half = odds_width * (1 + mode)
    odds = _interp_rows(c, grid, mode + half) - _interp_rows(c, grid, mode - half)
    cols = (mode, mean, q[:, 0], np.sqrt(np.maximum(var, 0)), *q[:, 1:].T, odds)
    return {name: col.astype(np.float32) for name, col in zip(SUMMARY_COLUMNS, cols, strict=True)}
