"""Galaxy and PSF profiles drawn by the cutout renderer: normalisation, radii and FWHM."""

from __future__ import annotations

import numpy as np
import pytest

from raypz.sim import profiles
from raypz.sim.cutouts import PIXEL_SCALE, cutout_renderer
from raypz.sim.photometry import noise_model
from raypz.sim.population import Galaxies


def _round_galaxies(bulge_fraction: float, radius: float) -> Galaxies:
    one = np.ones(1)
    return Galaxies(
        z=one,
        abs_mag_b=-20 * one,
        sed_type=one,
        ebv=0 * one,
        ew_halpha=0 * one,
        bulge_fraction=bulge_fraction * one,
        r_bulge=radius * one,
        r_disk=radius * one,
        q_bulge=one,
        q_disk=one,
        position_angle=0 * one,
    )


def test_transforms_are_unit_flux_and_decay():
    u = np.array([0.0, 1.0, 10.0, 100.0])
    for ft in (profiles.devaucouleurs_ft, profiles.exponential_ft):
        values = ft(u)
        assert values[0] == pytest.approx(1.0, abs=1e-5)
        assert np.all(np.diff(values) < 0)


@pytest.mark.parametrize("bulge_fraction", [0.0, 1.0])
def test_half_the_light_lies_inside_the_half_light_radius(bulge_fraction):
    renderer = cutout_renderer(10, "deep", 128)
    radius = 2.0  # arcsec, much wider than the PSF
    image = renderer.noiseless(
        _round_galaxies(bulge_fraction, radius), np.ones((1, 6)), np.random.default_rng(0)
    )[0, 3]
    y, x = np.indices(image.shape)
    r = np.hypot(x - 64, y - 64) * PIXEL_SCALE
    inside = image[r < radius].sum()  # of a total flux of 1 nJy
    assert 0.45 < inside < 0.52


def test_point_sources_have_the_field_psf_fwhm():
    for field in ("deep", "wide"):
        renderer = cutout_renderer(10, field, 64)
        image = renderer.noiseless(
            _round_galaxies(0.0, 1e-4), np.ones((1, 6)), np.random.default_rng(1)
        )[0]
        for b, fwhm in enumerate(noise_model(10, field).psf_fwhm):
            area_above_half = np.sum(image[b] > 0.5 * image[b].max()) * PIXEL_SCALE**2
            measured = 2.0 * np.sqrt(area_above_half / np.pi)
            assert measured == pytest.approx(fwhm, rel=0.15), (field, b)
