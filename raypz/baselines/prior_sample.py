"""Bayesian photo-z from a sample of the galaxy population and the survey's flux-error model.

Given draws (z_s, f_s) of true redshifts and noiseless fluxes (nJy) from a population model and
the error model sigma_b(f) of the photometry (Gaussian noise in flux, as LSST's forced
photometry), the posterior of an object with observed fluxes f is the likelihood-weighted
sample:

    p(z | f) = sum_s L_s delta(z - z_s) / sum_s L_s,
    L_s = prod_b N(f_b; f_s,b, sigma_b(f_s,b)^2 + (h f_s,b)^2)

over the bands the object has. ``h`` (``smoothing``, a fraction of the flux: h ~ 0.92 x a
magnitude scatter) widens each draw into a small kernel, so that where the sample is sparse
compared with the errors (bright objects, whose errors are ~0.005 mag) several draws still carry
weight. Each draw's weight is shared linearly between its two neighbouring grid points.

With the population that made the data and its exact error model, this is the Bayes posterior:
no estimator trained on labels can do better on average. With a population model fitted to
more galaxies than a spec-z set holds, it measures how much of a learned model's error the
photometry itself sets (docs/buzzard_results.md, "The photometry's limit").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from raypz import flags as fl
from raypz.features import usable_bands
from raypz.pdf import ZGrid, normalize


@dataclass(frozen=True)
class FluxErrorModel:
    """Per-band flux errors as a function of flux: sigma_b(f)^2 = a_b + b_b max(f, 0) + c_b f^2.

    Sky noise (a), source Poisson noise (b) and a calibration floor (c), all in nJy^2 units: the
    form of LSST's error model (and photerr's), fitted to a table's own fluxes and errors.

    Attributes:
        coefficients: (B, 3) array of (a, b, c) per band.
        max_relative_residual: (B,) largest |sigma_fit / sigma_table - 1| over the fitted rows;
            near 0 when the table's errors follow this form.
    """

    coefficients: np.ndarray
    max_relative_residual: np.ndarray

    @classmethod
    def fit(cls, flux: np.ndarray, flux_err: np.ndarray) -> FluxErrorModel:
        """Least-squares fit of sigma^2 in relative terms, per band, on the usable measurements
        (:func:`raypz.features.usable_bands`) of fluxes and errors in nJy, shape (N, B)."""
        flux = np.asarray(flux, dtype=np.float64)
        flux_err = np.asarray(flux_err, dtype=np.float64)
        usable, _ = usable_bands(flux, flux_err)
        coefs, residuals = [], []
        for b in range(flux.shape[1]):
            ok = usable[:, b]
            if ok.sum() < 3:
                raise ValueError(
                    f"FluxErrorModel.fit: band {b} has {int(ok.sum())} rows with a usable flux "
                    "and error (finite, error > 0, not absurd); at least 3 are needed"
                )
            design = _design(flux[ok, b])
            var = flux_err[ok, b] ** 2
            c, *_ = np.linalg.lstsq(design / var[:, None], np.ones(len(var)), rcond=None)
            fitted = np.sqrt(np.maximum(design @ c, 0.0))
            coefs.append(c)
            residuals.append(float(np.max(np.abs(fitted / flux_err[ok, b] - 1.0))))
        return cls(np.array(coefs), np.array(residuals))

    def variance(self, flux: np.ndarray) -> np.ndarray:
        """sigma^2 (nJy^2) of fluxes (..., B) in nJy, floored at 1e-6 nJy^2."""
        flux = np.asarray(flux, dtype=np.float64)
        a, b, c = (self.coefficients[:, k] for k in range(3))
        return np.maximum(a + b * np.maximum(flux, 0.0) + c * flux * flux, 1e-6)


def _design(flux: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(flux), np.maximum(flux, 0.0), flux * flux], axis=1)


@dataclass(frozen=True)
class PriorSamplePosterior:
    """Posterior PDFs of observed objects under a population sample and a flux-error model.

    Attributes:
        z: (S,) redshifts of the population draws.
        flux: (S, B) their noiseless fluxes in nJy.
        errors: error model of the observed photometry.
        smoothing: h, the fractional flux kernel of each draw (0: none).
        max_elements: cap on rows x draws per chunk (float64: peak ~3 x 8 bytes each).
    """

    z: np.ndarray
    flux: np.ndarray
    errors: FluxErrorModel
    smoothing: float = 0.02
    max_elements: int = 100_000_000

    def __post_init__(self) -> None:
        if self.flux.ndim != 2 or len(self.z) != len(self.flux):
            raise ValueError(
                f"PriorSamplePosterior: z {self.z.shape} and flux {self.flux.shape} must be "
                "(S,) and (S, B)"
            )
        if self.flux.shape[1] != len(self.errors.coefficients):
            raise ValueError(
                f"PriorSamplePosterior: the sample has {self.flux.shape[1]} bands, the error "
                f"model {len(self.errors.coefficients)}"
            )
        if not np.all(np.isfinite(self.flux)) or not np.all(np.isfinite(self.z)):
            raise ValueError("PriorSamplePosterior: draws must have finite z and fluxes")
        if self.smoothing < 0:
            raise ValueError(f"PriorSamplePosterior.smoothing must be >= 0: {self.smoothing}")

    def predict_pdf(
        self, flux: np.ndarray, flux_err: np.ndarray, grid: ZGrid
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """PDFs (N, G) on ``grid`` of objects with observed fluxes and errors (N, B) in nJy.

        The likelihood takes its widths from the error model; ``flux_err`` only decides, with
        the fluxes, which measurements are usable, by the catalog models' rules and flags
        (:func:`raypz.features.usable_bands`). Unusable bands are left out of the likelihood;
        a row with none left gets an all-zero PDF (NO_PDF).
        Draws outside the grid are not used. Also returns the flags (N,) and each row's
        effective number of draws, 1 / sum_s w_s^2 (small: the sample is too sparse there).
        """
        flux = np.asarray(flux, dtype=np.float64)
        inside = (self.z >= grid.z_min) & (self.z <= grid.z_max)
        if not inside.any():
            raise ValueError(
                f"PriorSamplePosterior: no draw has z in the grid's [{grid.z_min}, {grid.z_max}]"
            )
        z_s, f_s = self.z[inside], self.flux[inside]
        var = self.errors.variance(f_s) + (self.smoothing * f_s) ** 2
        # -2 log L_s = sum_b m_b [f_b^2 / v - 2 f_b f_s / v + f_s^2 / v + log v]: one matmul
        draw_terms = torch.from_numpy(
            np.concatenate([1.0 / var, -2.0 * f_s / var, f_s * f_s / var + np.log(var)], axis=1)
        )
        low, frac = grid.locate(z_s)  # each draw's mass shared by its two grid points
        frac = torch.from_numpy(frac)
        low_t, high_t = torch.from_numpy(low), torch.from_numpy(low + 1)

        present, flags = usable_bands(flux, np.asarray(flux_err, dtype=np.float64))
        obs = np.where(present, flux, 0.0)  # 0 in unusable bands: their terms drop out
        mask = present.astype(np.float64)
        pdf = np.zeros((len(flux), grid.n))
        n_eff = np.zeros(len(flux))
        chunk = max(1, self.max_elements // max(len(z_s), 1))
        for start in range(0, len(flux), chunk):
            rows = slice(start, start + chunk)
            x = torch.from_numpy(np.concatenate([obs[rows] ** 2, obs[rows], mask[rows]], 1))
            log_w = x @ draw_terms.T
            log_w.mul_(-0.5)
            log_w.sub_(log_w.max(dim=1, keepdim=True).values)
            w = log_w.exp_()
            w.div_(w.sum(dim=1, keepdim=True))
            n_eff[rows] = (1.0 / (w * w).sum(dim=1)).numpy()
            p = torch.zeros(w.shape[0], grid.n, dtype=torch.float64)
            p.index_add_(1, low_t, w * (1.0 - frac))
            p.index_add_(1, high_t, w * frac)
            pdf[rows] = p.numpy()
        empty = (flags & fl.NO_PDF) != 0
        pdf[empty] = 0.0
        n_eff[empty] = 0.0
        return normalize(pdf, grid), flags, n_eff
