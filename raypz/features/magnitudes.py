"""Read tables that give AB magnitudes instead of fluxes, converted to the nJy contract.

Many public training tables (spec-z compilations, simulations such as Buzzard via pzflow) list
``mag_{band}`` and ``mag_err_{band}`` with a sentinel (e.g. 99) for non-detections. This turns
them into ``{band}_cModelFlux`` / ``{band}_cModelFluxErr`` in nJy so every later stage sees one
contract. A non-detection becomes flux 0 with the error of the given 1-sigma limiting magnitude
when one is known, else NaN (masked and flagged downstream, never silently imputed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raypz.columns import BANDS, DEFAULT_COLUMNS, POGSON, ColumnTemplate, mag_to_flux


@dataclass(frozen=True)
class MagnitudeColumns:
    """How a magnitude table names its columns and marks non-detections.

    Attributes:
        mag: AB magnitude column template, ``{band}`` replaced by the band letter.
        mag_err: 1-sigma magnitude error column template.
        sentinel: magnitudes >= this (or non-finite) mean "not detected".
        limit_mag_1sigma: optional per-band 1-sigma limiting AB magnitude, used as the flux
            error of non-detections; None leaves them missing (NaN).
    """

    mag: str = "mag_{band}"
    mag_err: str = "mag_err_{band}"
    sentinel: float = 90.0
    limit_mag_1sigma: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if "{band}" not in self.mag or "{band}" not in self.mag_err:
            raise ValueError("MagnitudeColumns.mag and .mag_err must contain '{band}'")


def magnitudes_to_fluxes(
    table: pa.Table,
    mags: MagnitudeColumns = MagnitudeColumns(),
    columns: ColumnTemplate = DEFAULT_COLUMNS,
    bands: tuple[str, ...] = BANDS,
) -> pa.Table:
    """Return ``table`` with nJy flux and flux-error columns added from its AB magnitudes.

    Flux = 10^(-0.4 (m - 31.4)) nJy; flux error = flux * ln(10)/2.5 * mag_err (first order).
    Raises KeyError naming the column when a magnitude column is absent.
    """
    out = table
    for j, band in enumerate(bands):
        for name in (mags.mag.format(band=band), mags.mag_err.format(band=band)):
            if name not in table.column_names:
                raise KeyError(f"column {name!r}: missing (needed to convert magnitudes to nJy)")
        m = table[mags.mag.format(band=band)].to_numpy(zero_copy_only=False).astype(np.float64)
        me = table[mags.mag_err.format(band=band)].to_numpy(zero_copy_only=False)
        me = me.astype(np.float64)
        detected = np.isfinite(m) & (m < mags.sentinel)
        flux = np.where(detected, mag_to_flux(np.where(detected, m, 0.0)), np.nan)
        err = np.where(detected & np.isfinite(me), flux * me / POGSON, np.nan)
        if mags.limit_mag_1sigma is not None:
            limit_err = float(mag_to_flux(mags.limit_mag_1sigma[j]))
            flux = np.where(detected, flux, 0.0)
            err = np.where(detected, err, limit_err)
        out = out.append_column(columns.flux.format(band=band), pa.array(flux, pa.float64()))
        out = out.append_column(columns.flux_err.format(band=band), pa.array(err, pa.float64()))
    return out
