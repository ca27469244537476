"""Flux -> feature transform: luptitudes, masking of missing bands, flags, serialisation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from raypz import flags as fl
from raypz.columns import AB_ZEROPOINT_NJY, BANDS, DEFAULT_COLUMNS, mag_to_flux
from raypz.features import FeatureTransform, flux_arrays, luptitude
from raypz.features.magnitudes import MagnitudeColumns, magnitudes_to_fluxes


def _fluxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    mag = rng.uniform(20.0, 25.0, (n, len(BANDS)))
    flux = 10 ** (-0.4 * (mag - AB_ZEROPOINT_NJY))
    err = np.full_like(flux, 30.0)  # ~24.7 mag 5 sigma
    return flux + rng.normal(0, 30.0, flux.shape), err


def test_luptitude_equals_ab_magnitude_for_bright_sources_and_is_finite_for_negative_flux():
    b = np.array([10.0])
    flux = np.array([[1e6], [-50.0], [0.0]])
    mu = luptitude(flux, b)
    assert mu[0, 0] == pytest.approx(AB_ZEROPOINT_NJY - 2.5 * np.log10(1e6), abs=1e-6)
    assert np.all(np.isfinite(mu))
    assert mu[1, 0] > mu[2, 0]  # fainter (negative) flux -> larger asinh magnitude


def test_fit_then_transform_is_normalised(rng):
    flux, err = _fluxes(rng, 5000)
    t = FeatureTransform.fit(flux, err)
    x, flags = t.transform_fluxes(flux, err)
    assert x.shape == (5000, 4 * len(BANDS) - 1) and x.dtype == np.float32
    n = len(BANDS)
    np.testing.assert_allclose(x[:, : 3 * n - 1].mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(x[:, : 3 * n - 1].std(axis=0), 1.0, atol=1e-2)
    assert not (flags & fl.NO_PDF).any()


def test_missing_and_bad_bands_are_masked_and_flagged(rng):
    flux, err = _fluxes(rng, 1000)
    t = FeatureTransform.fit(flux, err)
    flux, err = flux[:5].copy(), err[:5].copy()
    flux[0, 0] = np.nan  # u missing
    err[1, 2] = 0.0  # r: non-positive error
    flux[2, :] = np.nan  # nothing usable
    flux[3, 4] = 1e15  # absurd z flux
    x, flags = t.transform_fluxes(flux, err)
    n = len(BANDS)
    indicators = x[:, 3 * n - 1 :]
    assert indicators[0, 0] == 1 and indicators[1, 2] == 1 and indicators[3, 4] == 1
    assert flags[0] & fl.BAND_MISSING and flags[0] & fl.band_missing_bit(0)
    assert flags[1] & fl.NONFINITE_INPUT and flags[1] & fl.band_missing_bit(2)
    assert flags[2] & fl.NO_PDF
    assert flags[3] & fl.ABSURD_FLUX
    assert flags[4] == 0
    assert np.all(np.isfinite(x))  # masked values become 0 (the training mean), never NaN


def test_colours_far_outside_training_are_flagged(rng):
    flux, err = _fluxes(rng, 2000)
    t = FeatureTransform.fit(flux, err)
    odd = flux[:1].copy()
    odd[0, 0] *= 1e3  # u-g 7.5 mag bluer than anything seen
    _, flags = t.transform_fluxes(odd, err[:1])
    assert flags[0] & fl.OUT_OF_COLOR_SPACE


def test_round_trip_through_dict_gives_identical_features(rng):
    flux, err = _fluxes(rng, 500)
    t = FeatureTransform.fit(flux, err)
    t2 = FeatureTransform.from_dict(t.to_dict())
    assert t2 == t
    np.testing.assert_array_equal(
        t2.transform_fluxes(flux, err)[0], t.transform_fluxes(flux, err)[0]
    )


def test_table_batches_with_nulls_become_nan(rng):
    flux, err = _fluxes(rng, 3)
    cols = {}
    for j, b in enumerate(BANDS):
        cols[DEFAULT_COLUMNS.flux.format(band=b)] = pa.array([flux[0, j], None, flux[2, j]])
        cols[DEFAULT_COLUMNS.flux_err.format(band=b)] = pa.array(err[:, j])
    f, e = flux_arrays(pa.table(cols))
    assert np.isnan(f[1]).all() and np.isfinite(f[[0, 2]]).all() and e.shape == (3, 6)


def test_magnitude_tables_convert_to_njy_with_sentinels():
    table = pa.table(
        {
            **{f"mag_{b}": [22.5, 99.0] for b in BANDS},
            **{f"mag_err_{b}": [0.1, 99.0] for b in BANDS},
        }
    )
    out = magnitudes_to_fluxes(table, MagnitudeColumns(sentinel=90.0))
    f = out["i_cModelFlux"].to_numpy(zero_copy_only=False)
    e = out["i_cModelFluxErr"].to_numpy(zero_copy_only=False)
    assert f[0] == pytest.approx(mag_to_flux(22.5))
    assert e[0] == pytest.approx(mag_to_flux(22.5) * 0.1 * np.log(10) / 2.5)
    assert np.isnan(f[1])  # not detected and no limit given: missing, flagged downstream
    with_limit = magnitudes_to_fluxes(
        table, MagnitudeColumns(limit_mag_1sigma=(26.0,) * len(BANDS))
    )
    assert with_limit["i_cModelFlux"][1].as_py() == 0.0
    assert with_limit["i_cModelFluxErr"][1].as_py() == pytest.approx(mag_to_flux(26.0))
