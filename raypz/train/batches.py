"""Numpy batches of an object table -> network inputs, redshifts and weights for one step."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from raypz import flags as fl
from raypz.features import FeatureTransform, flux_arrays, usable_bands
from raypz.features.cutouts import CutoutStretch
from raypz.schema import usable_redshift
from raypz.train.augment import add_flux_noise, random_dihedral, randomised_coadd
from raypz.train.config import TrainConfig

WEIGHT_COLUMN = "_weight"
"""Optional per-row training weight added by the data preparation (balanced weighting)."""


class BatchPreparer:
    """Applies augmentation (training only), the feature transform and, for image models, the
    cutout stretch to a batch.

    Rows that cannot be used (no usable band, no usable cutout, non-finite or absent redshift)
    get weight 0, so every worker still takes the same number of steps (needed by DDP).

    Args:
        transform: the fitted catalog feature transform.
        config: the training configuration.
        seed: seed of this worker's augmentation stream.
        cutouts: the fitted cutout stretch of an image model; None for a catalog model.
    """

    def __init__(
        self,
        transform: FeatureTransform,
        config: TrainConfig,
        seed: int,
        cutouts: CutoutStretch | None = None,
    ) -> None:
        self.transform = transform
        self.config = config
        self.cutouts = cutouts
        self.rng = np.random.default_rng(seed)
        self.epoch_columns = config.columns.epoch_columns(transform.bands)

    def __call__(
        self, batch: Mapping[str, np.ndarray], augment: bool
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
        """Network inputs: (features (N, D) float32,) plus stretched cutouts (N, C, H, W) for
        an image model; redshifts (N,) float32 (0 where unknown) and weights (N,) float32.

        A batch without the redshift column (unlabelled target rows of domain adaptation)
        gets weight 1 on its usable rows and 0 on the others (no usable band or cutout): only
        the domain loss reads it (:func:`raypz.train.steps.join_target`), so rows whose inputs
        are fill values do not teach the domain classifier.
        """
        flux, err = flux_arrays(batch, self.config.columns, self.transform.bands)
        if augment:
            flux, err = self._maybe_coadd(batch, flux, err)
            flux, err = add_flux_noise(flux, err, self.config.flux_noise, self.rng)
        x, flags = self.transform.transform_fluxes(flux, err)
        inputs: tuple[np.ndarray, ...] = (x,)
        if self.cutouts is not None:
            images, cutout_flags = self.cutouts.from_batch(batch)
            flags |= cutout_flags
            if augment and self.config.flip_rotate:
                images = random_dihedral(images, self.rng)
            inputs = (x, images)
        name = self.config.columns.redshift
        z = np.asarray(batch[name] if name in batch else np.full(len(x), np.nan), np.float32)
        w = np.asarray(batch.get(WEIGHT_COLUMN, np.ones(len(z))), dtype=np.float32)
        labelled = usable_redshift(z)
        usable = (flags & fl.NO_PDF) == 0
        if name in batch:
            w = np.where(labelled & usable, w, 0.0).astype(np.float32)
        else:
            w = usable.astype(np.float32)
        return inputs, np.where(labelled, z, 0.0).astype(np.float32), w

    def _maybe_coadd(
        self, batch: Mapping[str, np.ndarray], flux: np.ndarray, err: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        epoch_flux, epoch_err = self.epoch_columns
        if not all(c in batch for c in epoch_flux + epoch_err):
            return flux, err
        measured, _ = usable_bands(flux, err)  # a band the catalog masks stays masked
        flux, err = flux.copy(), err.copy()
        for j, (cf, ce) in enumerate(zip(epoch_flux, epoch_err, strict=True)):
            f, e = randomised_coadd(batch[cf], batch[ce], self.config.coadd_fraction, self.rng)
            has = np.isfinite(f) & measured[:, j]
            flux[has, j], err[has, j] = f[has], e[has]
        return flux, err
