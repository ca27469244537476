"""Redshift distributions n(z) of tomographic bins: stacked PDFs against the truth (DESIGN 8).

Rows are put in tomographic bins by their point estimate (the PDF mode unless an evaluation
chooses another). Per bin, the stacked n(z)
is the mean of the rows' PDFs; the true n(z) is the histogram of their true redshifts on the same
grid, each redshift shared linearly between its two neighbouring grid points (cloud-in-cell, so
the mean is kept). Both are treated like PDFs: CDF from :func:`raypz.pdf.cdf`, linear between
grid points, so a stack of delta-like PDFs at the true redshifts matches the truth exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raypz.metrics.binning import bin_index
from raypz.metrics.pdf_metrics import CHUNK_ROWS
from raypz.pdf import ZGrid, cdf, normalize

TOMO_EDGES: tuple[float, ...] = (0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 2.0, 3.0)
"""Default tomographic bin edges in photometric redshift."""


@dataclass(frozen=True)
class NZStacks:
    """Stacked and true n(z) per tomographic bin.

    Attributes:
        edges: (B+1,) bin edges in z_phot.
        counts: (B,) rows per bin.
        stack: (B, G) mean PDF of the bin's rows, integrating to 1 (all zero if empty).
        truth: (B, G) density of the bin's true redshifts on the grid (all zero if empty).
    """

    edges: np.ndarray
    counts: np.ndarray
    stack: np.ndarray
    truth: np.ndarray


def truth_density(grid: ZGrid, z_true: np.ndarray) -> np.ndarray:
    """Histogram (G,) of redshifts on the grid, as a density integrating to 1 (trapezoid rule).

    Each z (clipped to the grid) gives weight 1-f to the grid point below it and f to the one
    above, f being its fractional position; weights are then divided by the trapezoid weights.
    """
    z = np.asarray(z_true, dtype=np.float64)
    if z.size == 0:
        return np.zeros(grid.n)
    lo, frac = grid.locate(z)
    mass = np.bincount(lo, 1.0 - frac, minlength=grid.n) + np.bincount(
        lo + 1, frac, minlength=grid.n
    )
    return mass / grid.trapezoid_weights / z.size


def nz_stacks(
    pdf: np.ndarray,
    grid: ZGrid,
    z_phot: np.ndarray,
    z_true: np.ndarray,
    edges: tuple[float, ...] = TOMO_EDGES,
    chunk_rows: int = CHUNK_ROWS,
) -> NZStacks:
    """Stack PDFs (N, G) and histogram true redshifts (N,) in bins of ``z_phot`` (N,).

    Each row is normalised before it is stacked, so every object weighs one whatever its
    PDF's stored mass (float-list PDFs from elsewhere need not integrate to 1).

    The sums run in float64 over ``chunk_rows`` rows at a time: one float64 copy of all the
    PDFs was twice the size of the float32 input, the largest array of an evaluation."""
    edges_arr = np.asarray(edges, dtype=np.float64)
    n_bins = edges_arr.size - 1
    idx = bin_index(z_phot, edges_arr)
    onehot = (idx[None, :] == np.arange(n_bins)[:, None]).astype(np.float64)  # (B, N)
    pdf = np.asarray(pdf)  # no copy of an array
    sums = np.zeros((n_bins, grid.n))
    for start in range(0, idx.size, chunk_rows):
        rows = slice(start, start + chunk_rows)
        sums += onehot[:, rows] @ normalize(pdf[rows], grid)
    stack = normalize(sums, grid)
    z_true = np.asarray(z_true, dtype=np.float64)
    truth = np.stack([truth_density(grid, z_true[idx == b]) for b in range(n_bins)])
    return NZStacks(edges_arr, onehot.sum(axis=1).astype(np.int64), stack, truth)


def wasserstein1(grid: ZGrid, pdf_a: np.ndarray, pdf_b: np.ndarray) -> np.ndarray:
    """Earth mover's distance ``W1 = integral |F_a(z) - F_b(z)| dz`` between rows, shape (B,).

    Exact for CDFs linear between grid points: on an interval of width h where the difference
    goes from d0 to d1, the integral is h (|d0| + |d1|) / 2, or h (d0^2 + d1^2) / (2 (|d0|+|d1|))
    when it changes sign. NaN where either row has no mass.
    """
    fa, fb = cdf(np.atleast_2d(pdf_a), grid), cdf(np.atleast_2d(pdf_b), grid)
    d = fa - fb
    d0, d1 = np.abs(d[:, :-1]), np.abs(d[:, 1:])
    crossing = d[:, :-1] * d[:, 1:] < 0
    with np.errstate(invalid="ignore", divide="ignore"):
        split = (d0 * d0 + d1 * d1) / (2.0 * (d0 + d1))
    area = grid.dz * np.where(crossing, split, (d0 + d1) / 2.0).sum(axis=1)
    return np.where((fa[:, -1] > 0) & (fb[:, -1] > 0), area, np.nan)


def mean_z(grid: ZGrid, pdf: np.ndarray) -> np.ndarray:
    """Mean redshift of each row, shape (B,); NaN for a row without mass.

    ``mean = z_max - integral F dz`` over the grid, exact for a CDF linear between grid points
    (trapezoid rule), so it is the mean of the same distribution that :func:`wasserstein1` uses.
    """
    f = cdf(np.atleast_2d(pdf), grid)
    integral = grid.dz * (f.sum(axis=1) - 0.5 * (f[:, 0] + f[:, -1]))
    return np.where(f[:, -1] > 0, grid.z_max - integral, np.nan)


def nz_metrics(
    pdf: np.ndarray,
    grid: ZGrid,
    z_phot: np.ndarray,
    z_true: np.ndarray,
    edges: tuple[float, ...] = TOMO_EDGES,
) -> dict:
    """n(z) quality per tomographic bin, JSON-ready.

    Returns ``{"edges": [...], "bins": [{"lo", "hi", "n", "wasserstein1", "mean_z_stack",
    "mean_z_true", "mean_z_shift"}, ...], "wasserstein1_mean", "mean_z_shift_max_abs"}`` where
    ``mean_z_shift = mean_z_stack - mean_z_true`` (redshift units, |shift| <= W1) and the two
    summaries run over non-empty bins (NaN if all are empty). Empty bins have NaN metrics.
    """
    st = nz_stacks(pdf, grid, z_phot, z_true, edges)
    w1 = wasserstein1(grid, st.stack, st.truth)
    m_stack, m_true = mean_z(grid, st.stack), mean_z(grid, st.truth)
    shift = m_stack - m_true
    bins = [
        {
            "lo": float(st.edges[b]),
            "hi": float(st.edges[b + 1]),
            "n": int(st.counts[b]),
            "wasserstein1": float(w1[b]),
            "mean_z_stack": float(m_stack[b]),
            "mean_z_true": float(m_true[b]),
            "mean_z_shift": float(shift[b]),
        }
        for b in range(st.counts.size)
    ]
    filled = st.counts > 0
    any_filled = bool(filled.any())
    return {
        "edges": [float(e) for e in st.edges],
        "bins": bins,
        "wasserstein1_mean": float(w1[filled].mean()) if any_filled else float("nan"),
        "mean_z_shift_max_abs": float(np.abs(shift[filled]).max()) if any_filled else float("nan"),
    }
