"""Cutouts: shape, storage type, flux and noise consistent with the catalogue."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypz.columns import BANDS, DEFAULT_COLUMNS
from raypz.sim import SurveyConfig, simulate_shard
from raypz.sim.cutouts import cutout_renderer

C = DEFAULT_COLUMNS
CONFIG = SurveyConfig(n_objects=400, seed=9, cutouts=True, cutout_size=32)


@pytest.fixture(scope="module")
def cutout_table():
    return simulate_shard(CONFIG, 0)


def test_cutouts_are_fixed_shape_tensors_that_round_trip_through_parquet(cutout_table, tmp_path):
    field_type = cutout_table.schema.field(C.cutout).type
    assert field_type == pa.fixed_shape_tensor(pa.float32(), (6, 32, 32))
    pq.write_table(cutout_table, tmp_path / "c.parquet")
    back = pq.read_table(tmp_path / "c.parquet")
    images = back[C.cutout].combine_chunks().to_numpy_ndarray()
    assert images.shape == (400, 6, 32, 32) and images.dtype == np.float32
    assert np.array_equal(images, cutout_table[C.cutout].combine_chunks().to_numpy_ndarray())


def test_cutout_flux_matches_the_catalogue_flux(cutout_table, flux_matrix):
    images = cutout_table[C.cutout].combine_chunks().to_numpy_ndarray().astype(np.float64)
    flux, err = flux_matrix(cutout_table), flux_matrix(cutout_table, err=True)
    renderer = cutout_renderer(CONFIG.years, CONFIG.field, CONFIG.cutout_size)
    total = images.sum(axis=(2, 3))
    pixel_noise = renderer.sky_sigma.astype(np.float64) * CONFIG.cutout_size
    small = cutout_table["half_light_radius_arcsec"].to_numpy() < 1.0
    for b, band in enumerate(BANDS):
        bright = small & (flux[:, b] > 30 * err[:, b])
        ratio = np.median(total[bright, b] / flux[bright, b])
        assert 0.93 < ratio < 1.01, band  # a few per cent of the light falls outside
        sigma = np.sqrt(err[:, b] ** 2 + pixel_noise[b] ** 2 + (0.05 * np.abs(flux[:, b])) ** 2)
        pulls = (total[small, b] - flux[small, b]) / sigma[small]
        assert abs(np.median(pulls)) < 0.5, band
        assert np.mean(np.abs(pulls) < 4) > 0.97, band


def test_pixel_noise_away_from_the_galaxy_is_the_sky_noise(cutout_table):
    images = cutout_table[C.cutout].combine_chunks().to_numpy_ndarray()
    compact = cutout_table["half_light_radius_arcsec"].to_numpy() < 0.4
    corners = np.concatenate([images[compact, :, :4, :4], images[compact, :, -4:, -4:]], axis=2)
    measured = corners.std(axis=(0, 2, 3))
    expected = cutout_renderer(CONFIG.years, CONFIG.field, CONFIG.cutout_size).sky_sigma
    np.testing.assert_allclose(measured, expected, rtol=0.1)
