"""Single exposures: visit counts, and coadds equal to their inverse-variance mean."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from raypz.columns import BANDS, DEFAULT_COLUMNS
from raypz.sim import SurveyConfig, simulate_shard
from raypz.sim.photometry import noise_model
from raypz.sim.shard import CUTOUT_BATCH_ROWS

C = DEFAULT_COLUMNS


@pytest.fixture(scope="module")
def epoch_table():
    return simulate_shard(SurveyConfig(n_objects=400, seed=8, depth="y3", epochs=True), 0)


def test_epoch_counts_scale_with_years_and_are_capped(epoch_table):
    visits = noise_model(3, "wide").visits
    assert np.all(visits < 2 * noise_model(10, "wide").visits / 3 + 1)
    for b, band in enumerate(BANDS):
        lengths = np.array(
            [len(x) for x in epoch_table[C.epoch_flux.format(band=band)].to_pylist()]
        )
        assert np.all(lengths == min(visits[b], 20)), band


def test_coadd_is_the_inverse_variance_mean_of_the_epochs(epoch_table):
    for band in BANDS:
        flux = np.array(epoch_table[C.epoch_flux.format(band=band)].to_pylist())
        err = np.array(epoch_table[C.epoch_flux_err.format(band=band)].to_pylist())
        assert (err > 0).all()
        weight = 1.0 / err.astype(np.float64) ** 2
        mean = (flux * weight).sum(axis=1) / weight.sum(axis=1)
        coadd = epoch_table[C.flux.format(band=band)].to_numpy()
        coadd_err = epoch_table[C.flux_err.format(band=band)].to_numpy()
        np.testing.assert_allclose(mean, coadd, atol=1e-3 * np.max(coadd_err))
        np.testing.assert_allclose(1.0 / np.sqrt(weight.sum(axis=1)), coadd_err, rtol=1e-5)


def test_epoch_scatter_matches_the_epoch_errors(epoch_table):
    flux = np.array(epoch_table[C.epoch_flux.format(band="r")].to_pylist())
    err = np.array(epoch_table[C.epoch_flux_err.format(band="r")].to_pylist())
    coadd = epoch_table[C.flux.format(band="r")].to_numpy()[:, None]
    pulls = (flux - coadd) / err
    assert 0.9 < np.std(pulls) < 1.1


def test_cutouts_leave_the_epochs_unchanged():
    """With cutouts the rows are made in batches of CUTOUT_BATCH_ROWS; the epochs were drawn
    per batch then, band by band, so the epoch stream gave other values to the same rows."""
    config = SurveyConfig(n_objects=CUTOUT_BATCH_ROWS + 60, seed=8, epochs=True, cutout_size=8)
    plain = simulate_shard(config, 0)
    with_cutouts = simulate_shard(dataclasses.replace(config, cutouts=True), 0)
    assert with_cutouts.drop_columns(["cutout"]).equals(plain)
