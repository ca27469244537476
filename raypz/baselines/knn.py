"""A classical photo-z baseline: k nearest neighbours in colour-magnitude space.

Features are those of the models' :class:`~raypz.features.FeatureTransform` (fitted on the
training fluxes), restricted to the normalised luptitudes and adjacent-band colours, i.e. the
first 2B - 1 features (errors and missing-band indicators are left out of the distance; a
masked band sits at the training mean, 0). The PDF of a test object is a weighted kernel
density of its k neighbours' redshifts on the z grid:

    p(z) = sum_j w_j N(z; z_j, s (1 + z_j)) / sum_j w_j,   w_j = 1 / (d_j + median_j d_j)

with d_j the feature-space distance of neighbour j (the median of the row's k distances keeps
the weights finite and scale free). Each neighbour's redshift is shared linearly between its two
neighbouring grid points, then smoothed by a (G, G) matrix of Gaussians normalised on the grid,
so every PDF integrates to 1. ``k`` and ``s`` are chosen by the lowest mean CRPS on a seeded
held-out part of the training set (:class:`KNNConfig`); the index then holds all training rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.neighbors import NearestNeighbors

from raypz import flags as fl
from raypz.features import FeatureTransform
from raypz.metrics import crps
from raypz.pdf import ZGrid
from raypz.schema.values import usable_redshift


@dataclass(frozen=True)
class KNNConfig:
    """Settings of the kNN baseline and of its validation search.

    Attributes:
        k_values: candidate numbers of neighbours.
        bandwidths: candidate kernel widths s (the kernel of neighbour j has sigma s (1 + z_j)).
        validation_fraction: share of the training rows held out to choose k and s.
        max_validation_rows: cap on the held-out rows (keeps the search to a few seconds).
        grid: z grid on which the search scores PDFs by CRPS.
        chunk_rows: test rows per neighbour query (memory ~ chunk_rows x G floats).
        n_jobs: threads of the neighbour search (scikit-learn ``n_jobs``; -1 = all cores).
        seed: seed of the held-out split.
    """

    k_values: tuple[int, ...] = (10, 20, 40)
    bandwidths: tuple[float, ...] = (0.01, 0.02, 0.04)
    validation_fraction: float = 0.2
    max_validation_rows: int = 5000
    grid: ZGrid = field(default_factory=ZGrid)
    chunk_rows: int = 8192
    n_jobs: int = -1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.k_values or min(self.k_values) < 1:
            raise ValueError(f"KNNConfig.k_values must be positive integers: {self.k_values}")
        if not self.bandwidths or min(self.bandwidths) <= 0:
            raise ValueError(f"KNNConfig.bandwidths must be > 0: {self.bandwidths}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"KNNConfig.validation_fraction must be in (0, 1): {self.validation_fraction}"
            )
        if self.max_validation_rows < 1 or self.chunk_rows < 1:
            raise ValueError("KNNConfig.max_validation_rows and .chunk_rows must be >= 1")


def _features(transform: FeatureTransform, flux: np.ndarray, err: np.ndarray):
    """Luptitudes and colours (N, 2B - 1) float32, and the transform's flags (N,)."""
    x, flags = transform.transform_fluxes(flux, err)
    return np.ascontiguousarray(x[:, : 2 * len(transform.bands) - 1]), flags


def _kernel_matrix(grid: ZGrid, bandwidth: float) -> np.ndarray:
    """(G, G): row s is a Gaussian of sigma bandwidth (1 + z_s) around z_s, integrating to 1."""
    z = grid.values
    sigma = bandwidth * (1.0 + z)[:, None]
    k = np.exp(-0.5 * ((z[None, :] - z[:, None]) / sigma) ** 2)
    return k / (k @ grid.trapezoid_weights)[:, None]


def _kernel_pdf(dist: np.ndarray, z_nb: np.ndarray, grid: ZGrid, kernel: np.ndarray) -> np.ndarray:
    """PDFs (n, G) from neighbour distances and redshifts (n, k) and a kernel matrix (G, G)."""
    n = dist.shape[0]
    w = 1.0 / (dist + np.median(dist, axis=1, keepdims=True) + 1e-12)
    w /= w.sum(axis=1, keepdims=True)
    lo, frac = grid.locate(z_nb)
    flat = (np.arange(n)[:, None] * grid.n + lo).ravel()
    size = n * grid.n
    hist = np.bincount(flat, (w * (1 - frac)).ravel(), minlength=size)
    hist += np.bincount(flat + 1, (w * frac).ravel(), minlength=size)
    return hist.reshape(n, grid.n) @ kernel


class KNNBaseline:
    """k-nearest-neighbour photo-z PDFs (see the module docstring for the estimator).

    Build it with :meth:`fit`. Attributes: ``transform`` (the fitted feature transform), ``k``,
    ``bandwidth`` (the chosen s), ``validation`` (mean held-out CRPS of every (k, s) tried).
    """

    def __init__(
        self,
        transform: FeatureTransform,
        x: np.ndarray,
        z: np.ndarray,
        k: int,
        bandwidth: float,
        validation: list[dict],
        config: KNNConfig,
    ) -> None:
        self.transform = transform
        self.k = k
        self.bandwidth = bandwidth
        self.validation = validation
        self.config = config
        self._z = z
        self._index = NearestNeighbors(n_neighbors=k, n_jobs=config.n_jobs).fit(x)

    @classmethod
    def fit(
        cls, flux: np.ndarray, err: np.ndarray, z: np.ndarray, config: KNNConfig | None = None
    ) -> KNNBaseline:
        """Fit on training fluxes and errors (N, B) in nJy and redshifts (N,).

        Rows without any usable band or without a usable redshift (non-finite, or outside
        :data:`raypz.schema.values.REDSHIFT_RANGE`, e.g. a -99 placeholder) are not used. Raises
        ValueError when fewer than two usable rows remain.
        """
        config = config or KNNConfig()
        z = np.asarray(z, dtype=np.float64)
        transform = FeatureTransform.fit(flux, err)
        x, flags = _features(transform, flux, err)
        good = ((flags & fl.NO_PDF) == 0) & usable_redshift(z)
        x, z = x[good], z[good]
        if z.size < 2:
            raise ValueError(f"kNN baseline needs >= 2 usable training rows, got {z.size}")
        order = np.random.default_rng(config.seed).permutation(z.size)
        n_val = int(min(config.max_validation_rows, max(1, config.validation_fraction * z.size)))
        val, train = order[:n_val], order[n_val:]
        k_values = sorted({min(k, train.size) for k in config.k_values})
        search = NearestNeighbors(n_neighbors=k_values[-1], n_jobs=config.n_jobs).fit(x[train])
        dist, ind = search.kneighbors(x[val])  # (n_val, k_max), sorted by distance
        z_nb = z[train][ind]
        validation = []
        for s in config.bandwidths:
            kernel = _kernel_matrix(config.grid, s)
            for k in k_values:
                pdf = _kernel_pdf(dist[:, :k], z_nb[:, :k], config.grid, kernel)
                score = float(crps(pdf, config.grid, z[val]).mean())
                validation.append({"k": k, "bandwidth": s, "crps_mean": score})
        best = min(validation, key=lambda r: r["crps_mean"])
        k_final = min(best["k"], z.size)
        return cls(transform, x, z, k_final, best["bandwidth"], validation, config)

    def predict_pdf(
        self, flux: np.ndarray, err: np.ndarray, grid: ZGrid
    ) -> tuple[np.ndarray, np.ndarray]:
        """PDFs (N, G) float32 on ``grid`` and flags (N,) int32 from fluxes and errors (nJy).

        Rows flagged ``NO_PDF`` (no usable band) get an all-zero PDF; other flags come from the
        feature transform (missing bands, outside the training colour space, ...).
        """
        x, flags = _features(self.transform, flux, err)
        pdf = np.zeros((x.shape[0], grid.n), dtype=np.float32)
        rows = np.flatnonzero((flags & fl.NO_PDF) == 0)
        kernel = _kernel_matrix(grid, self.bandwidth)
        for start in range(0, rows.size, self.config.chunk_rows):
            chunk = rows[start : start + self.config.chunk_rows]
            dist, ind = self._index.kneighbors(x[chunk])
            pdf[chunk] = _kernel_pdf(dist, self._z[ind], grid, kernel)
        return pdf, flags
