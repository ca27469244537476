"""Training-time augmentation and row weighting, on numpy batches.

- Flux noise: each row gets extra Gaussian noise of ``s`` x its catalog error, ``s`` drawn
  uniformly in [0, flux_noise], and its error is inflated to ``err sqrt(1 + s^2)`` so inputs
  and errors stay consistent (the network sees the same object at lower S/N).
- Randomised coadds: with single-exposure fluxes, each row's coadd is rebuilt from a random
  subset of its epochs (inverse-variance mean), as a shallower survey would have measured it.
- Flips and rotations: each cutout is turned by a random element of the square's symmetry
  group (4 rotations x optional flip); a galaxy's redshift does not depend on its orientation.
- Balanced weights: rows are weighted inversely to the training density in (z, r mag) so
  rare regions (high z, faint) count more (Lin et al.); capped at ``max_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raypz.columns import flux_to_mag
from raypz.schema import usable_redshift


def add_flux_noise(
    flux: np.ndarray, err: np.ndarray, max_scale: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Noisier copies of fluxes and errors (nJy), shapes (N, B); NaNs stay NaN."""
    if max_scale <= 0:
        return flux, err
    s = rng.uniform(0.0, max_scale, size=(flux.shape[0], 1))
    noisy = flux + s * err * rng.standard_normal(flux.shape)
    return noisy, err * np.sqrt(1.0 + s * s)


def _ragged(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattened values and per-row lengths of a list column as Ray Data gives it to numpy."""
    if values.dtype != object:
        return values.reshape(-1).astype(np.float64), np.full(values.shape[0], values.shape[1])
    lengths = np.array([0 if v is None else len(v) for v in values])
    parts = [np.asarray(v, dtype=np.float64) for v in values if v is not None and len(v)]
    return (np.concatenate(parts) if parts else np.zeros(0)), lengths


def randomised_coadd(
    epoch_flux: np.ndarray,
    epoch_err: np.ndarray,
    fraction: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Coadd (inverse-variance mean) of a random subset of each row's epochs for one band.

    Args:
        epoch_flux: per row, the single-exposure fluxes (nJy) (list column as numpy).
        epoch_err: per row, their errors (nJy).
        fraction: (min, max) share of epochs kept; each row draws its own share.
        rng: random generator.

    Returns:
        flux and error (nJy), shape (N,); NaN for rows without epochs.
    """
    f, lengths = _ragged(epoch_flux)
    e, _ = _ragged(epoch_err)
    n = lengths.shape[0]
    rows = np.repeat(np.arange(n), lengths)
    keep = rng.random(f.shape[0]) < rng.uniform(*fraction, size=n)[rows]
    starts = np.cumsum(lengths) - lengths
    none_kept = (np.bincount(rows, weights=keep, minlength=n) == 0) & (lengths > 0)
    keep[starts[none_kept]] = True  # every row keeps at least one epoch
    usable = keep & np.isfinite(f) & np.isfinite(e) & (e > 0)
    w = np.where(usable, 1.0 / np.where(usable, e * e, 1.0), 0.0)
    sw = np.bincount(rows, weights=w, minlength=n)
    swf = np.bincount(rows, weights=w * np.where(usable, f, 0.0), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sw > 0, swf / sw, np.nan), np.where(sw > 0, 1.0 / np.sqrt(sw), np.nan)


@dataclass(frozen=True)
class BalanceWeights:
    """Inverse-density weights on a (z, magnitude) histogram of the training rows.

    Attributes:
        z_edges: redshift bin edges.
        mag_edges: AB magnitude bin edges.
        weights: (len(z_edges)-1, len(mag_edges)-1) weight per cell, mean 1 over rows.
        z_bin_means: mean weight of each z bin's rows (for rows without a magnitude).
    """

    z_edges: tuple[float, ...]
    mag_edges: tuple[float, ...]
    weights: tuple[tuple[float, ...], ...]
    z_bin_means: tuple[float, ...]

    @classmethod
    def fit(
        cls,
        z: np.ndarray,
        mag: np.ndarray,
        max_weight: float = 10.0,
        bins: tuple[int, int] = (20, 10),
    ) -> BalanceWeights:
        """Weights ~ 1 / count per cell of equal width in z and in magnitude (AB), spanning
        the 0.5-99.5% range of each (rows beyond it count in the end cells).

        Equal-width cells, not quantiles: quantile edges put as many rows in every z bin and
        every magnitude bin, so 1 / count only undid the z-magnitude correlation and left the
        rare high-z and faint rows where they were (with faint going with high z, it weighted
        them down)."""
        ok = usable_redshift(z) & np.isfinite(mag)
        if not ok.any():
            raise ValueError(
                "balanced training needs rows with a usable redshift and a positive r-band flux;"
                " none has both"
            )
        edges = []
        for values, n in ((z[ok], bins[0]), (mag[ok], bins[1])):
            lo, hi = np.quantile(values, [0.005, 0.995])
            hi = hi if hi > lo else lo + 1e-6  # one value: a single cell
            edges.append(np.linspace(lo, hi, n + 1))
        z_edges, m_edges = edges
        zc = np.clip(z[ok], z_edges[0], z_edges[-1])
        mc = np.clip(mag[ok], m_edges[0], m_edges[-1])
        counts, _, _ = np.histogram2d(zc, mc, bins=(z_edges, m_edges))
        w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
        w = np.minimum(w / (w[counts > 0].min()), max_weight)
        w /= (w * counts).sum() / counts.sum()  # mean weight over rows = 1
        means = tuple(_row_means(w, counts))
        return cls(tuple(z_edges), tuple(m_edges), tuple(map(tuple, w)), means)

    def __call__(self, z: np.ndarray, mag: np.ndarray) -> np.ndarray:
        """Weight per row (N,); rows with NaN magnitude (r flux <= 0: the faintest) get the
        mean weight of their z bin's training rows."""
        w = np.asarray(self.weights)
        zi = np.clip(np.searchsorted(self.z_edges, z, side="right") - 1, 0, w.shape[0] - 1)
        mi = np.searchsorted(self.mag_edges, np.nan_to_num(mag, nan=np.inf), side="right") - 1
        mi = np.clip(mi, 0, w.shape[1] - 1)
        out = w[zi, mi]
        return np.where(np.isfinite(mag), out, np.asarray(self.z_bin_means)[zi])


def _row_means(w: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean weight of each z bin's rows (1 for a bin without rows)."""
    rows = counts.sum(axis=1)
    return np.where(rows > 0, (w * counts).sum(axis=1) / np.maximum(rows, 1), 1.0)


def r_magnitude(flux_r_njy: np.ndarray) -> np.ndarray:
    """AB magnitude of r-band fluxes (NaN where not positive), for balance weights."""
    return flux_to_mag(flux_r_njy)


def random_dihedral(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image (N, C, H, W), H == W, turned by k x 90 degrees and maybe mirrored, at random."""
    out = np.empty_like(images)
    k = rng.integers(0, 4, len(images))
    flip = rng.integers(0, 2, len(images)).astype(bool)
    for turns in range(4):
        for mirrored in (False, True):
            rows = np.flatnonzero((k == turns) & (flip == mirrored))
            if len(rows):
                sub = np.rot90(images[rows], turns, axes=(2, 3))
                out[rows] = sub[..., ::-1] if mirrored else sub
    return out
