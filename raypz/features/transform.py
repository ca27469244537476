"""Object-table fluxes (nJy) -> normalised network inputs, with masks and quality flags.

Per row and band the inputs are: the luptitude, the colours of adjacent bands, log10 of the
luptitude error, and a "band missing" indicator. A band without a usable measurement (NaN or
null flux, non-finite or non-positive error, |flux| > 1e12 nJy) is masked: its normalised values
are set to 0 (the training mean), its indicator to 1, and the row gets a flag bit. Nothing is
imputed silently and no row is dropped. Normalisation statistics and softenings are fitted on
training data and stored in the model artifact (``to_dict``/``from_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from raypz import flags as fl
from raypz.columns import BANDS, DEFAULT_COLUMNS, ColumnTemplate
from raypz.features.luptitudes import luptitude, luptitude_error

ABSURD_FLUX_NJY = 1e12
"""Fluxes beyond +-1e12 nJy (AB mag 1.4) are not galaxies: such a band is masked and flagged."""
COLOR_MARGIN_MAG = 0.5
"""A colour more than this beyond the training sample's 0.1-99.9% range flags the row."""
_LOG_ERR_RANGE = (-3.0, 1.0)

Batch = Mapping[str, np.ndarray] | pa.Table


def flux_arrays(
    batch: Batch, columns: ColumnTemplate = DEFAULT_COLUMNS, bands: tuple[str, ...] = BANDS
) -> tuple[np.ndarray, np.ndarray]:
    """Fluxes and flux errors (nJy) of a batch as float64 arrays of shape (N, B); nulls -> NaN."""

    def col(name: str) -> np.ndarray:
        values = batch[name]
        if isinstance(values, pa.ChunkedArray | pa.Array):
            values = values.to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=np.float64)

    flux = np.stack([col(c) for c in columns.flux_columns(bands)], axis=1)
    err = np.stack([col(c) for c in columns.flux_err_columns(bands)], axis=1)
    return flux, err


def usable_bands(flux: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which measurements of fluxes and errors (N, B) in nJy can be used, (N, B) bool, and the
    per-row flags (N,) int32 they imply: finite, error > 0, |flux| <= ABSURD_FLUX_NJY."""
    finite = np.isfinite(flux) & np.isfinite(err) & (err > 0)
    with np.errstate(invalid="ignore"):
        absurd = np.isfinite(flux) & (np.abs(flux) > ABSURD_FLUX_NJY)
    usable = finite & ~absurd
    nan_missing = np.isnan(flux) | np.isnan(err)
    bad_value = ~usable & ~nan_missing & ~absurd  # inf, or err <= 0 with a finite flux
    flags = np.zeros(flux.shape[0], dtype=np.int32)
    flags[(~usable).any(axis=1)] |= fl.BAND_MISSING
    flags[bad_value.any(axis=1)] |= fl.NONFINITE_INPUT
    flags[absurd.any(axis=1)] |= fl.ABSURD_FLUX
    flags[~usable.any(axis=1)] |= fl.NO_PDF
    for j in range(flux.shape[1]):
        flags[~usable[:, j]] |= fl.band_missing_bit(j)
    return usable, flags


def _raw_features(
    flux: np.ndarray, err: np.ndarray, usable: np.ndarray, softening: np.ndarray
) -> np.ndarray:
    """Un-normalised features (N, 4B - 1): luptitudes, colours, log10 errors, missing indicators.

    Masked entries are NaN (indicators are 0/1).
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        lupt = np.where(usable, luptitude(flux, softening), np.nan)
        lerr = np.where(
            usable,
            np.clip(np.log10(luptitude_error(flux, err, softening)), *_LOG_ERR_RANGE),
            np.nan,
        )
    colors = lupt[:, :-1] - lupt[:, 1:]
    return np.concatenate([lupt, colors, lerr, (~usable).astype(np.float64)], axis=1)


@dataclass(frozen=True)
class FeatureTransform:
    """A fitted flux -> feature map; everything needed to reproduce it at inference.

    Attributes:
        bands: band letters, in input order.
        softening_njy: luptitude softening per band (nJy), ~ the typical flux error.
        mean: per-feature mean over usable training values (missing indicators: 0).
        std: per-feature standard deviation (missing indicators: 1).
        color_lo: per colour, the training 0.1% quantile (mag).
        color_hi: per colour, the training 99.9% quantile (mag).
        columns: column names of the input table.
    """

    bands: tuple[str, ...]
    softening_njy: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    color_lo: tuple[float, ...]
    color_hi: tuple[float, ...]
    columns: ColumnTemplate = field(default=DEFAULT_COLUMNS)

    @property
    def n_features(self) -> int:
        """Width D of the feature vector: 4 * n_bands - 1."""
        return 4 * len(self.bands) - 1

    @classmethod
    def fit(
        cls,
        flux: np.ndarray,
        err: np.ndarray,
        bands: tuple[str, ...] = BANDS,
        columns: ColumnTemplate = DEFAULT_COLUMNS,
    ) -> FeatureTransform:
        """Fit softenings and normalisation on training fluxes and errors (nJy), (N, B) each."""
        usable, _ = usable_bands(flux, err)
        nb = len(bands)
        softening = np.array(
            [np.median(err[usable[:, j], j]) if usable[:, j].any() else 1.0 for j in range(nb)]
        )
        raw = _raw_features(flux, err, usable, softening)
        mean = np.nan_to_num(np.nanmean(raw, axis=0), nan=0.0)
        std = np.nan_to_num(np.nanstd(raw, axis=0), nan=1.0)
        std[std < 1e-6] = 1.0
        mean[-nb:], std[-nb:] = 0.0, 1.0  # indicators stay 0/1
        colors = raw[:, nb : 2 * nb - 1]
        lo = np.nan_to_num(np.nanquantile(colors, 0.001, axis=0), nan=-1e9)
        hi = np.nan_to_num(np.nanquantile(colors, 0.999, axis=0), nan=1e9)
        as_tuple = lambda a: tuple(float(v) for v in a)  # noqa: E731
        return cls(
            bands=tuple(bands),
            softening_njy=as_tuple(softening),
            mean=as_tuple(mean),
            std=as_tuple(std),
            color_lo=as_tuple(lo),
            color_hi=as_tuple(hi),
            columns=columns,
        )

    def transform_fluxes(self, flux: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised features (N, D) float32 and flags (N,) int32 from fluxes and errors (nJy)."""
        usable, flags = usable_bands(flux, err)
        raw = _raw_features(flux, err, usable, np.asarray(self.softening_njy))
        nb = len(self.bands)
        colors = raw[:, nb : 2 * nb - 1]
        with np.errstate(invalid="ignore"):
            outside = (colors < np.asarray(self.color_lo) - COLOR_MARGIN_MAG) | (
                colors > np.asarray(self.color_hi) + COLOR_MARGIN_MAG
            )
        flags[outside.any(axis=1)] |= fl.OUT_OF_COLOR_SPACE
        x = (raw - np.asarray(self.mean)) / np.asarray(self.std)
        return np.nan_to_num(x, nan=0.0).astype(np.float32), flags

    def __call__(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Features and flags of a table batch (dict of columns or pyarrow Table)."""
        return self.transform_fluxes(*flux_arrays(batch, self.columns, self.bands))

    def to_dict(self) -> dict:
        """JSON-ready form for model.json."""
        return {
            "bands": list(self.bands),
            "softening_njy": list(self.softening_njy),
            "mean": list(self.mean),
            "std": list(self.std),
            "color_lo": list(self.color_lo),
            "color_hi": list(self.color_hi),
            "columns": {k: getattr(self.columns, k) for k in self.columns.__dataclass_fields__},
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureTransform:
        """Inverse of :meth:`to_dict`."""
        return cls(
            bands=tuple(d["bands"]),
            softening_njy=tuple(d["softening_njy"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            color_lo=tuple(d["color_lo"]),
            color_hi=tuple(d["color_hi"]),
            columns=ColumnTemplate(**d["columns"]),
        )
