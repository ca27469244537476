"""Numpy batches of an object table -> (features, redshift, weight) for one optimiser step."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from raypz import flags as fl
from raypz.features import FeatureTransform, flux_arrays
from raypz.train.augment import add_flux_noise, randomised_coadd
from raypz.train.config import TrainConfig

WEIGHT_COLUMN = "_weight"
"""Optional per-row training weight added by the data preparation (balanced weighting)."""


class BatchPreparer:
    """Applies augmentation (training only) and the feature transform to a batch.

    Rows that cannot be used (no usable band, non-finite redshift) get weight 0, so every
    worker still takes the same number of steps (needed by DDP).
    """

    def __init__(self, transform: FeatureTransform, config: TrainConfig, seed: int) -> None:
        self.transform = transform
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.epoch_columns = config.columns.epoch_columns(transform.bands)

    def __call__(
        self, batch: Mapping[str, np.ndarray], augment: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features (N, D) float32, redshifts (N,) float32, weights (N,) float32."""
        flux, err = flux_arrays(batch, self.config.columns, self.transform.bands)
        if augment:
            flux, err = self._maybe_coadd(batch, flux, err)
            flux, err = add_flux_noise(flux, err, self.config.flux_noise, self.rng)
        x, flags = self.transform.transform_fluxes(flux, err)
        z = np.asarray(batch[self.config.columns.redshift], dtype=np.float32)
        w = np.asarray(batch.get(WEIGHT_COLUMN, np.ones(len(z))), dtype=np.float32)
        w = np.where(np.isfinite(z) & ((flags & fl.NO_PDF) == 0), w, 0.0).astype(np.float32)
        return x, np.nan_to_num(z), w

    def _maybe_coadd(
        self, batch: Mapping[str, np.ndarray], flux: np.ndarray, err: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        epoch_flux, epoch_err = self.epoch_columns
        if not all(c in batch for c in epoch_flux + epoch_err):
            return flux, err
        flux, err = flux.copy(), err.copy()
        for j, (cf, ce) in enumerate(zip(epoch_flux, epoch_err, strict=True)):
            f, e = randomised_coadd(batch[cf], batch[ce], self.config.coadd_fraction, self.rng)
            has = np.isfinite(f)
            flux[has, j], err[has, j] = f[has], e[has]
        return flux, err
