"""Column names, bands and photometric units of the object-table contract (DESIGN 3.1).

Fluxes are in nJy; the AB magnitude of a flux ``f`` in nJy is ``31.4 - 2.5 log10(f)``.
Column names follow the Rubin Object table by default and can be changed with a
:class:`ColumnTemplate`, so any table that meets the contract under other names can be read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
"""The six LSST bands, blue to red."""

AB_ZEROPOINT_NJY: float = 31.4
"""AB magnitude of a 1 nJy source: m_AB = 31.4 - 2.5 log10(flux / nJy)."""

POGSON: float = 2.5 / math.log(10.0)
"""dm / d ln(flux) in magnitudes (2.5 / ln 10): a relative flux error e gives e * POGSON mag."""


@dataclass(frozen=True)
class ColumnTemplate:
    """Names of the object-table columns; ``{band}`` is replaced by each band letter.

    Attributes:
        object_id: unique int64 identifier.
        ra: right ascension, float64 degrees (ICRS).
        dec: declination, float64 degrees (ICRS).
        flux: per-band flux in nJy.
        flux_err: per-band 1-sigma flux error in nJy (must be > 0 where the flux is finite).
        redshift: spectroscopic (or simulated true) redshift; training labels only.
        redshift_quality: optional spec-z quality flag.
        field: optional field name (the simulator writes it); not read by training or
            inference (domain adaptation takes its domains from ``--target``).
        epoch_flux: optional per-band list of single-exposure fluxes in nJy.
        epoch_flux_err: optional per-band list of single-exposure flux errors in nJy.
        cutout: optional (bands, H, W) float32 image in nJy/pixel.
    """

    object_id: str = "objectId"
    ra: str = "coord_ra"
    dec: str = "coord_dec"
    flux: str = "{band}_cModelFlux"
    flux_err: str = "{band}_cModelFluxErr"
    redshift: str = "redshift"
    redshift_quality: str = "redshift_quality"
    field: str = "field"
    epoch_flux: str = "{band}_epochFlux"
    epoch_flux_err: str = "{band}_epochFluxErr"
    cutout: str = "cutout"

    def __post_init__(self) -> None:
        for name in ("flux", "flux_err", "epoch_flux", "epoch_flux_err"):
            if "{band}" not in getattr(self, name):
                value = getattr(self, name)
                raise ValueError(f"ColumnTemplate.{name} must contain '{{band}}', got {value!r}")

    def flux_columns(self, bands: tuple[str, ...] = BANDS) -> list[str]:
        """Flux column names, one per band, in band order."""
        return [self.flux.format(band=b) for b in bands]

    def flux_err_columns(self, bands: tuple[str, ...] = BANDS) -> list[str]:
        """Flux-error column names, one per band, in band order."""
        return [self.flux_err.format(band=b) for b in bands]

    def epoch_columns(self, bands: tuple[str, ...] = BANDS) -> tuple[list[str], list[str]]:
        """Single-exposure flux and flux-error column names, one list each, in band order."""
        return (
            [self.epoch_flux.format(band=b) for b in bands],
            [self.epoch_flux_err.format(band=b) for b in bands],
        )


DEFAULT_COLUMNS = ColumnTemplate()


def flux_to_mag(flux_njy: np.ndarray) -> np.ndarray:
    """AB magnitude of a flux in nJy; NaN where the flux is not positive."""
    flux = np.asarray(flux_njy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, AB_ZEROPOINT_NJY - 2.5 * np.log10(flux), np.nan)


def mag_to_flux(mag_ab: np.ndarray) -> np.ndarray:
    """Flux in nJy of an AB magnitude."""
    return 10.0 ** (-0.4 * (np.asarray(mag_ab, dtype=np.float64) - AB_ZEROPOINT_NJY))
