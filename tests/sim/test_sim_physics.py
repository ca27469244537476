"""Physical sanity of the simulated population: colours, dropouts, n(z), selection."""

from __future__ import annotations

import numpy as np

from raypz.columns import DEFAULT_COLUMNS, flux_to_mag
from raypz.sim import SurveyConfig, simulate_shard
from raypz.sim.cosmology import planck18

C = DEFAULT_COLUMNS


def test_red_galaxy_g_minus_r_reddens_from_z_01_to_05(wide_table, band_index, flux_matrix):
    flux = flux_matrix(wide_table)
    z = wide_table[C.redshift].to_numpy()
    red = wide_table["sed_type"].to_numpy() < 0.5
    g_r = flux_to_mag(flux[:, band_index["g"]]) - flux_to_mag(flux[:, band_index["r"]])
    low = np.nanmedian(g_r[red & (np.abs(z - 0.1) < 0.05)])
    mid = np.nanmedian(g_r[red & (np.abs(z - 0.5) < 0.05)])
    assert 0.6 < low < 1.1
    assert mid > low + 0.4


def test_u_band_dropouts_appear_above_z_27(wide_table, band_index, flux_matrix):
    flux, err = flux_matrix(wide_table), flux_matrix(wide_table, err=True)
    u, g = flux[:, band_index["u"]], flux[:, band_index["g"]]
    undetected = u < 2.0 * err[:, band_index["u"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        red_u_g = 2.5 * np.log10(g / u) > 1.2
    dropout = undetected | red_u_g
    z = wide_table[C.redshift].to_numpy()
    high, mid = z > 2.9, (z > 1.0) & (z < 2.0)
    assert high.sum() > 100
    assert dropout[high].mean() > 0.6
    assert dropout[mid].mean() < 0.25


def test_redshift_distribution_of_an_i_lt_253_sample(wide_table):
    z = wide_table[C.redshift].to_numpy()
    assert 0.5 < np.median(z) < 1.3
    assert 0.5 < np.mean((z > 0.3) & (z < 1.5)) < 0.9
    assert 0.01 < np.mean(z > 2.0) < 0.2


def test_spectroscopic_selection_is_brighter_and_lower_redshift(wide_table):
    spec = simulate_shard(SurveyConfig(n_objects=3000, seed=11, spec_selection=True), 0)
    i_spec = flux_to_mag(spec["i_cModelFlux"].to_numpy())
    i_parent = flux_to_mag(wide_table["i_cModelFlux"].to_numpy())
    assert np.median(i_spec) < np.median(i_parent) - 1.5
    assert np.median(spec[C.redshift].to_numpy()) < np.median(wide_table[C.redshift].to_numpy())
    faint = i_spec > 24.0
    assert 0 < faint.mean() < 0.2
    ew = spec["ew_halpha_rest"].to_numpy()
    assert np.median(ew[faint]) > np.median(wide_table["ew_halpha_rest"].to_numpy())


def test_sizes_shrink_with_redshift_and_magnitude(wide_table):
    z = wide_table[C.redshift].to_numpy()
    size = wide_table["half_light_radius_arcsec"].to_numpy()
    kpc = size * planck18().kpc_per_arcsec(z)
    abs_mag = wide_table["abs_mag_b"].to_numpy()
    fixed_luminosity = (abs_mag > -21.0) & (abs_mag < -20.0)
    assert np.median(kpc[fixed_luminosity & (z > 1.5)]) < 0.75 * np.median(
        kpc[fixed_luminosity & (z < 0.5)]
    )
    mag_i = wide_table["mag_i_true"].to_numpy()
    assert np.median(size[mag_i < 22]) > 1.5 * np.median(size[mag_i > 24])


def test_distances_follow_planck18_up_to_the_highest_z_max():
    """SurveyConfig.z_max reaches 6: a table ending at 4 held z = 4's distance beyond it
    (galaxies at z = 6 came out 1 mag too bright)."""
    from astropy.cosmology import Planck18

    z = np.array([0.3, 3.9, 4.6, 5.5, SurveyConfig(z_max=6.0).z_max])
    table = planck18()
    np.testing.assert_allclose(table.modulus(z), Planck18.distmod(z).value, atol=1e-4)
    kpc = Planck18.kpc_proper_per_arcmin(z).value / 60
    np.testing.assert_allclose(table.kpc_per_arcsec(z), kpc, rtol=1e-4)
