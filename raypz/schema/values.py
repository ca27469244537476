"""Checks on values, one batch at a time: units (raise) and per-row problems (counted)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raypz.columns import ColumnTemplate
from raypz.features.transform import ABSURD_FLUX_NJY
from raypz.schema.errors import ContractError
from raypz.schema.files import floats
from raypz.schema.report import RowProblems

REDSHIFT_RANGE: tuple[float, float] = (0.0, 10.0)
"""Finite labels outside this range are counted as implausible."""

_MAGNITUDE_P10_P90 = (10.0, 40.0)
_MAGNITUDE_MEDIAN = (15.0, 35.0)
_MIN_VALUES_FOR_SMELL = 20


def usable_redshift(z: np.ndarray) -> np.ndarray:
    """(N,) bool: labels that may train or calibrate a model, finite and within
    :data:`REDSHIFT_RANGE` (the validation report counts the others as missing or out of
    range; a -99 placeholder or an inf must not train at full weight, nor poison the loss)."""
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(z) & (z >= REDSHIFT_RANGE[0]) & (z <= REDSHIFT_RANGE[1])


def check_units(
    path: str, batch: pa.RecordBatch, columns: ColumnTemplate, bands: tuple[str, ...]
) -> None:
    """Raise if coordinates are not degrees or fluxes look like AB magnitudes.

    Magnitudes smell: at least 20 finite values whose median lies in [15, 35] and whose 10th
    and 90th percentiles lie in [10, 40]. Fluxes in nJy of a real sample span decades and
    include negative (noise) values, so they do not; sentinels such as 99 for a non-detection
    in a minority of rows do not hide magnitudes either.
    """
    for name, low, high in ((columns.ra, 0.0, 360.0), (columns.dec, -90.0, 90.0)):
        finite = _finite(floats(batch, name))
        if finite.size and (finite.min() < low or finite.max() > high):
            rule = (
                f"values outside [{low:g}, {high:g}] (min {finite.min():g}, max {finite.max():g}):"
                " coordinates must be ICRS degrees"
            )
            raise ContractError(path, name, rule)
    for name in columns.flux_columns(bands):
        finite = _finite(floats(batch, name))
        if finite.size < _MIN_VALUES_FOR_SMELL:
            continue
        p10, p50, p90 = np.percentile(finite, [10, 50, 90])
        if (
            _MAGNITUDE_P10_P90[0] <= p10
            and p90 <= _MAGNITUDE_P10_P90[1]
            and _MAGNITUDE_MEDIAN[0] <= p50 <= _MAGNITUDE_MEDIAN[1]
        ):
            rule = (
                f"values look like AB magnitudes (10/50/90th percentiles {p10:.1f}/{p50:.1f}/"
                f"{p90:.1f}), not fluxes in nJy; convert with raypz.columns.mag_to_flux"
            )
            raise ContractError(path, name, rule)


def count_row_problems(
    batch: pa.RecordBatch, columns: ColumnTemplate, bands: tuple[str, ...], labels: bool
) -> RowProblems:
    """Count the per-row problems of one batch (see :class:`RowProblems`); never raises."""
    coords_ok = np.isfinite(floats(batch, columns.ra)) & np.isfinite(floats(batch, columns.dec))
    flagged = ~coords_ok
    all_missing = np.ones(batch.num_rows, dtype=bool)
    nonfinite, bad_err, absurd = {}, {}, {}
    for band, flux_name, err_name in zip(
        bands, columns.flux_columns(bands), columns.flux_err_columns(bands), strict=True
    ):
        flux, err = floats(batch, flux_name), floats(batch, err_name)
        finite = np.isfinite(flux)
        with np.errstate(invalid="ignore"):
            err_bad = finite & ~(np.isfinite(err) & (err > 0))
            too_bright = finite & (np.abs(flux) > ABSURD_FLUX_NJY)
        nonfinite[band] = int(np.count_nonzero(~finite))
        bad_err[band] = int(np.count_nonzero(err_bad))
        absurd[band] = int(np.count_nonzero(too_bright))
        all_missing &= ~finite
        flagged |= ~finite | err_bad | too_bright
    missing_z = outside_z = None
    if labels:
        z = floats(batch, columns.redshift)
        z_missing = ~np.isfinite(z)
        z_outside = ~z_missing & ~usable_redshift(z)
        missing_z = int(np.count_nonzero(z_missing))
        outside_z = int(np.count_nonzero(z_outside))
        flagged |= z_missing | z_outside
    return RowProblems(
        flagged_rows=int(np.count_nonzero(flagged)),
        nonfinite_coords=int(np.count_nonzero(~coords_ok)),
        all_bands_missing=int(np.count_nonzero(all_missing)),
        nonfinite_flux=nonfinite,
        bad_flux_err=bad_err,
        absurd_flux=absurd,
        missing_redshift=missing_z,
        redshift_out_of_range=outside_z,
    )


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]
