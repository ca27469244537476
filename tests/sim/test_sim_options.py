"""The simulator's realism options (issue 16): each does what it says, defaults change nothing.

sed_set (an independent galaxy model), errors_from (errors from the observed flux),
missing_band_fraction, z_max and depth_scatter_mag. Statistics on a few thousand rows with
tolerances of several standard errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypz.cli import attribute_docs
from raypz.columns import BANDS, DEFAULT_COLUMNS, mag_to_flux
from raypz.schema import validate_dataset
from raypz.sim import SurveyConfig, simulate_shard
from raypz.sim.attenuation import calzetti_k, modified_calzetti_k
from raypz.sim.config import OPTION_DEFAULTS
from raypz.sim.photometry import noise_model
from raypz.sim.templates import sed_grid

C = DEFAULT_COLUMNS
N = 4000
DEFAULT_TABLE_SHA256 = "0467ec45610bf51708c3098e607fa00d13cceafe50a9763066d906ed591045b8"
"""Hash of ``SurveyConfig(n_objects=2000, seed=11)``'s shard 0 (every column's values and the
config metadata), computed with the simulator before the realism options existed."""


def _table_hash(table: pa.Table) -> str:
    h = hashlib.sha256()
    for name in table.column_names:
        values = table[name].to_numpy(zero_copy_only=False)
        h.update(name.encode())
        if pa.types.is_string(table.schema.field(name).type):
            h.update("|".join(values).encode())
        elif values.dtype == object:
            h.update(repr(table[name].to_pylist()).encode())
        else:
            h.update(np.ascontiguousarray(values).tobytes())
    h.update(table.schema.metadata[b"raypz.sim.config"])
    return h.hexdigest()


def _fluxes(table: pa.Table, err: bool = False) -> np.ndarray:
    names = C.flux_err_columns() if err else C.flux_columns()
    return np.stack([table[n].to_numpy().astype(np.float64) for n in names], axis=1)


@pytest.fixture(scope="module")
def default_table() -> pa.Table:
    return simulate_shard(SurveyConfig(n_objects=N, seed=21), 0)


@pytest.fixture(scope="module")
def alt_table() -> pa.Table:
    return simulate_shard(SurveyConfig(n_objects=N, seed=21, sed_set="alt"), 0)


# --- defaults ---------------------------------------------------------------------------------


def test_default_config_writes_the_rows_it_wrote_before_the_options():
    table = simulate_shard(SurveyConfig(n_objects=2000, seed=11), 0)
    assert _table_hash(table) == DEFAULT_TABLE_SHA256


def test_passing_the_defaults_explicitly_changes_nothing():
    implicit = SurveyConfig(n_objects=800, seed=5, field="deep", epochs=True)
    explicit = SurveyConfig(n_objects=800, seed=5, field="deep", epochs=True, **OPTION_DEFAULTS)
    assert implicit == explicit
    assert simulate_shard(implicit, 0).equals(simulate_shard(explicit, 0), check_metadata=True)
    assert not set(OPTION_DEFAULTS) & set(json.loads(implicit.to_json()))
    changed = dataclasses.replace(implicit, z_max=4.0, sed_set="alt")
    assert json.loads(changed.to_json())["z_max"] == 4.0
    assert json.loads(changed.to_json())["sed_set"] == "alt"


def test_every_option_is_documented_for_the_cli():
    docs = attribute_docs(SurveyConfig)
    for name in OPTION_DEFAULTS:
        assert len(docs.get(name, "")) > 40, name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sed_set": "cosmos"}, "sed_set"),
        ({"errors_from": "model"}, "errors_from"),
        ({"missing_band_fraction": 0.95}, "missing_band_fraction"),
        ({"missing_band_fraction": -0.1}, "missing_band_fraction"),
        ({"z_max": 7.0}, "z_max"),
        ({"z_max": 0.2}, "z_max"),
        ({"depth_scatter_mag": -0.1}, "depth_scatter_mag"),
        ({"depth_scatter_mag": 2.0}, "depth_scatter_mag"),
    ],
)
def test_invalid_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SurveyConfig(**kwargs)


def test_all_options_together_are_deterministic_and_meet_the_contract(tmp_path):
    config = SurveyConfig(
        n_objects=1200,
        seed=9,
        rows_per_shard=600,
        sed_set="alt",
        errors_from="observed",
        missing_band_fraction=0.2,
        z_max=4.0,
        depth_scatter_mag=0.2,
        epochs=True,
    )
    first = simulate_shard(config, 1)
    assert _table_hash(first) == _table_hash(simulate_shard(config, 1))  # NaN-safe equality
    other = simulate_shard(dataclasses.replace(config, seed=10), 1)
    assert not np.array_equal(first[C.redshift].to_numpy(), other[C.redshift].to_numpy())
    for i in range(config.n_shards):
        pq.write_table(simulate_shard(config, i), tmp_path / f"shard-{i}.parquet")
    report = validate_dataset(str(tmp_path), require_labels=True)
    assert report.rows == 1200
    assert report.problems.missing_redshift == 0
    assert report.problems.redshift_out_of_range == 0


# --- sed_set ----------------------------------------------------------------------------------


def test_alt_dust_law_keeps_ebv_and_has_a_bump():
    wave = np.array([2175.0, 1500.0, 2800.0, 4400.0, 5500.0])
    k = modified_calzetti_k(wave)
    assert k[3] - k[4] == pytest.approx(1.0)
    ratio = k / modified_calzetti_k(wave, bump=0.0)
    assert ratio[0] > 1.1 * max(ratio[1], ratio[2])  # the bump at 2175 A
    # Steeper than Calzetti in the UV relative to the optical.
    assert k[1] / k[4] > calzetti_k(1500.0) / calzetti_k(5500.0)


def test_alt_templates_give_other_colours_at_fixed_type_dust_and_redshift():
    default, alt = sed_grid("default").continuum_mag, sed_grid("alt").continuum_mag
    z = slice(20, 500)  # 0.1 < z < 2.5
    colours = [np.diff(g[:, :, z], axis=-1) for g in (default, alt)]  # adjacent-band colours
    diff = np.abs(colours[1] - colours[0])  # (type, dust, z, 5)
    # Star-forming types differ by a tenth of a magnitude or more in a typical colour.
    assert np.median(diff[1:]) > 0.1
    assert np.isfinite(alt).all()


def test_alt_population_has_other_priors(default_table, alt_table):
    z_d, z_a = default_table[C.redshift].to_numpy(), alt_table[C.redshift].to_numpy()
    # n(z): a heavier tail (sigma of a fraction ~0.13 with 4000 rows: 0.005).
    assert np.mean(z_a > 2.0) > np.mean(z_d > 2.0) + 0.03
    t_d, t_a = default_table["sed_type"].to_numpy(), alt_table["sed_type"].to_numpy()
    blue_d, blue_a = t_d[t_d >= 1], t_a[t_a >= 1]
    assert abs(np.std(blue_a) - np.std(blue_d)) > 0.05  # broader type distribution
    # Dust: luminosity-dependent for star-forming galaxies (brighter is dustier) in alt only.
    for table, lo in ((default_table, 0.0), (alt_table, 0.04)):
        t, ebv = table["sed_type"].to_numpy(), table["dust_ebv"].to_numpy()
        mag = table["abs_mag_b"].to_numpy()
        gap = np.mean(ebv[(t > 1) & (mag < -21)]) - np.mean(ebv[(t > 1) & (mag > -19)])
        assert (gap > lo) if lo else abs(gap) < 0.035, gap
    ew_d = default_table["ew_halpha_rest"].to_numpy()
    ew_a = alt_table["ew_halpha_rest"].to_numpy()
    assert np.median(ew_a[t_a > 4]) > 1.3 * np.median(ew_d[t_d > 4])
    # Still a plausible survey: i < 25.3 rows, median z within 0.7-1.2.
    assert 0.7 < np.median(z_a) < 1.2


def test_alt_colour_redshift_relation_differs(default_table, alt_table):
    """The median observed g-r of bright blue galaxies in redshift bins moves by > 0.05 mag."""

    def medians(table):
        f = _fluxes(table)
        z, t = table[C.redshift].to_numpy(), table["sed_type"].to_numpy()
        bright = (f[:, BANDS.index("r")] > mag_to_flux(24.0)) & (t > 1.5)
        gr = -2.5 * np.log10(np.clip(f[:, 1] / f[:, 2], 1e-3, None))
        edges = np.arange(0.2, 1.41, 0.3)
        return np.array(
            [np.median(gr[bright & (z >= lo) & (z < hi)]) for lo, hi in itertools.pairwise(edges)]
        )

    assert np.max(np.abs(medians(alt_table) - medians(default_table))) > 0.05


# --- errors_from ------------------------------------------------------------------------------


def test_errors_from_observed_flux_follow_the_noisy_flux(default_table):
    observed = simulate_shard(SurveyConfig(n_objects=N, seed=21, errors_from="observed"), 0)
    # The noise is still drawn from the true flux: the same rows and fluxes.
    np.testing.assert_array_equal(_fluxes(observed), _fluxes(default_table))
    err_true, err_obs = _fluxes(default_table, err=True), _fluxes(observed, err=True)
    assert not np.allclose(err_true, err_obs)
    # i band: err_obs^2 = err_true^2 + S (max(F_obs, 0) - max(F_true, 0)) / F_c.
    noise = noise_model(10, "wide")
    i = BANDS.index("i")
    f_obs = _fluxes(observed)[:, i]
    f_true = mag_to_flux(observed["mag_i_true"].to_numpy().astype(np.float64))
    expected = np.sqrt(
        err_true[:, i] ** 2
        + noise.sky_var[i] * (np.maximum(f_obs, 0) - np.maximum(f_true, 0)) / noise.poisson_flux[i]
    )
    np.testing.assert_allclose(err_obs[:, i], expected, rtol=2e-3)
    # Upward fluctuations get larger errors, downward ones smaller (bright objects).
    bright = f_true > mag_to_flux(22.0)
    up = f_obs > f_true
    assert np.all(err_obs[bright & up, i] >= err_true[bright & up, i])
    assert np.all(err_obs[bright & ~up, i] <= err_true[bright & ~up, i])


# --- missing_band_fraction --------------------------------------------------------------------


def test_missing_bands_at_the_requested_rate(default_table):
    config = SurveyConfig(n_objects=N, seed=21, missing_band_fraction=0.2)
    table = simulate_shard(config, 0)
    flux, err = _fluxes(table), _fluxes(table, err=True)
    missing = np.isnan(flux)
    np.testing.assert_array_equal(missing, np.isnan(err))
    rate = missing.mean(axis=0)  # per band; sigma 0.0063
    assert np.all(np.abs(rate - 0.2) < 0.025), rate
    assert np.all((~missing).any(axis=1))
    # The other values are the default table's: missing bands draw from a stream of their own.
    np.testing.assert_array_equal(flux[~missing], _fluxes(default_table)[~missing])
    np.testing.assert_array_equal(
        table[C.redshift].to_numpy(), default_table[C.redshift].to_numpy()
    )


def test_rows_keep_at_least_one_band_at_high_missing_fractions():
    table = simulate_shard(SurveyConfig(n_objects=2000, seed=4, missing_band_fraction=0.9), 0)
    missing = np.isnan(_fluxes(table))
    assert np.all((~missing).any(axis=1))
    # Realised rate 0.9 - 0.9**6 / 6 = 0.811 (sigma 0.004 over 12,000 cells).
    assert missing.mean() == pytest.approx(0.9 - 0.9**6 / 6, abs=0.015)


# --- z_max ------------------------------------------------------------------------------------


def test_z_max_extends_the_redshift_tail(default_table):
    table = simulate_shard(SurveyConfig(n_objects=N, seed=21, z_max=4.0), 0)
    z = table[C.redshift].to_numpy()
    assert z.max() <= 4.0
    assert default_table[C.redshift].to_numpy().max() <= 3.5
    high = z > 3.5
    assert 0.001 < high.mean() < 0.03  # the tail the luminosity functions imply (~0.5 %)
    # Those galaxies are u-band dropouts: Lyman break redward of u.
    flux, err = _fluxes(table), _fluxes(table, err=True)
    u = BANDS.index("u")
    assert np.median(flux[high, u] / err[high, u]) < 2.0
    assert np.median(flux[high, BANDS.index("i")] / err[high, BANDS.index("i")]) > 5.0


def test_low_z_max_cuts_the_population():
    z = simulate_shard(SurveyConfig(n_objects=1000, seed=2, z_max=1.5), 0)[C.redshift].to_numpy()
    assert z.max() <= 1.5
    assert z.max() > 1.3


# --- depth_scatter_mag ------------------------------------------------------------------------


def _implied_depth_shift(table: pa.Table) -> np.ndarray:
    """-2.5 log10(err / model err of the observed flux): the object's depth offset, mag."""
    noise = noise_model(10, "wide")
    ext = noise.extension(table["half_light_radius_arcsec"].to_numpy().astype(np.float64))
    model = noise.flux_err(_fluxes(table), ext)
    return -2.5 * np.log10(_fluxes(table, err=True) / model)


def test_depth_scatter_varies_errors_at_fixed_flux():
    base = simulate_shard(SurveyConfig(n_objects=N, seed=21, errors_from="observed"), 0)
    assert np.abs(_implied_depth_shift(base)).max() < 2e-3
    config = SurveyConfig(n_objects=N, seed=21, errors_from="observed", depth_scatter_mag=0.3)
    shift = _implied_depth_shift(simulate_shard(config, 0))  # (n, bands)
    # Gaussian with sigma 0.3 mag per object and band (sigma of the std over 4000: 0.0034).
    assert np.allclose(shift.std(axis=0), 0.3, atol=0.02), shift.std(axis=0)
    assert np.all(np.abs(np.mean(shift, axis=0)) < 0.03)
    # Independent between bands.
    assert abs(np.corrcoef(shift[:, 1], shift[:, 2])[0, 1]) < 0.1


def test_depth_scatter_errors_are_the_noise_actually_drawn():
    """With true-flux errors, (flux - true) / err is N(0, 1) in i whatever the depth."""
    config = SurveyConfig(n_objects=N, seed=8, depth_scatter_mag=0.4)
    table = simulate_shard(config, 0)
    i = BANDS.index("i")
    f_true = mag_to_flux(table["mag_i_true"].to_numpy().astype(np.float64))
    pull = (_fluxes(table)[:, i] - f_true) / _fluxes(table, err=True)[:, i]
    faint = f_true < mag_to_flux(24.0)  # the magnitude cut biases pulls only near the limit
    bright = ~faint
    assert np.std(pull[bright]) == pytest.approx(1.0, abs=0.06)
