"""Bayes posteriors from a population sample: the error model fit, the posterior's mass where
the likelihood puts it, missing bands, calibration when the sample is the data's population,
and the script that writes a predictions table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypz import flags as fl
from raypz.baselines.prior_sample import FluxErrorModel, PriorSamplePosterior
from raypz.columns import BANDS, flux_to_mag
from raypz.metrics import coverage, pit, pit_metrics
from raypz.pdf import ZGrid
from raypz.predictions import read_predictions
from raypz.schema import ContractError

GRID = ZGrid(0.0, 3.0, 301)
TRUE_COEFS = np.array([[400.0, 0.5, 1e-4], [100.0, 0.2, 4e-5], [900.0, 1.0, 0.0]])


def constant_errors(sigma: float, bands: int) -> FluxErrorModel:
    """sigma (nJy) whatever the flux."""
    coefs = np.zeros((bands, 3))
    coefs[:, 0] = sigma**2
    return FluxErrorModel(coefs, np.zeros(bands))


def population(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """z ~ U(0.1, 2) and noiseless fluxes (n, 3) in nJy: an SED whose slope changes with z,
    10% intrinsic scatter per band (so several redshifts share a colour at low S/N)."""
    z = rng.uniform(0.1, 2.0, n)
    norm = rng.uniform(300.0, 3000.0, n)[:, None]
    flux = norm * np.exp(-np.outer(z, [0.0, 0.6, 1.2])) * rng.lognormal(0.0, 0.1, (n, 3))
    return z, flux


def observe(rng: np.random.Generator, flux: np.ndarray, errors: FluxErrorModel) -> np.ndarray:
    """Fluxes with Gaussian noise of the error model at the true flux."""
    return flux + np.sqrt(errors.variance(flux)) * rng.standard_normal(flux.shape)


def test_error_model_recovers_coefficients():
    rng = np.random.default_rng(0)
    flux = rng.uniform(-200.0, 2e5, (5000, 3))
    err = np.sqrt(
        np.maximum(TRUE_COEFS[:, 0] + TRUE_COEFS[:, 1] * np.maximum(flux, 0), 0)
        + TRUE_COEFS[:, 2] * flux**2
    )
    flux[:10, 1] = np.nan  # unusable rows are left out of the fit, not fatal
    model = FluxErrorModel.fit(flux, err)
    np.testing.assert_allclose(model.coefficients, TRUE_COEFS, rtol=1e-6, atol=1e-9)
    assert model.max_relative_residual.max() < 1e-6
    np.testing.assert_allclose(np.sqrt(model.variance(flux[10:])), err[10:], rtol=1e-6)


def test_error_model_names_the_band_without_rows():
    flux = np.ones((10, 2))
    err = np.ones((10, 2))
    err[:, 1] = 0.0
    with pytest.raises(ValueError, match="band 1 has 0 rows"):
        FluxErrorModel.fit(flux, err)


def test_posterior_follows_the_likelihood():
    z = np.repeat([0.5, 1.5], 1000)
    flux = np.repeat([[100.0] * 3, [200.0] * 3], 1000, axis=0)
    posterior = PriorSamplePosterior(z, flux, constant_errors(20.0, 3), smoothing=0.0)
    obs = np.array([[100.0] * 3, [150.0] * 3, [190.0, 210.0, 200.0]])
    pdf, flags, n_eff = posterior.predict_pdf(obs, np.ones_like(obs), GRID)
    mass = pdf * GRID.dz
    low = mass[:, np.isclose(GRID.values, 0.5)].ravel()
    high = mass[:, np.isclose(GRID.values, 1.5)].ravel()
    np.testing.assert_allclose(low + high, 1.0, atol=1e-9)
    assert low[0] > 0.999 and high[2] > 0.999
    np.testing.assert_allclose(low[1], 0.5, atol=1e-9)  # equidistant: the sample's two halves
    np.testing.assert_allclose(n_eff, [1000, 2000, 1000], rtol=1e-3)
    assert not flags.any()


def test_likelihood_normalisation_favours_the_draw_with_smaller_errors():
    """Poisson errors (sigma^2 = f): draws at 100 and 400 nJy are equally many sigma from an
    observed 200 nJy, so the odds are the ratio of the Gaussians' normalisations, 20 / 10."""
    errors = FluxErrorModel(np.array([[0.0, 1.0, 0.0]]), np.zeros(1))
    posterior = PriorSamplePosterior(
        np.array([0.5, 1.5]), np.array([[100.0], [400.0]]), errors, 0.0
    )
    pdf, _, _ = posterior.predict_pdf(np.array([[200.0]]), np.ones((1, 1)), GRID)
    np.testing.assert_allclose(pdf[0, np.isclose(GRID.values, 0.5)] * GRID.dz, 2 / 3, rtol=1e-9)


def test_missing_bands_leave_the_likelihood_and_set_flags():
    z = np.repeat([0.5, 1.5], 100)
    flux = np.repeat([[100.0, 100.0, 100.0], [200.0, 100.0, 100.0]], 100, axis=0)
    posterior = PriorSamplePosterior(z, flux, constant_errors(10.0, 3), smoothing=0.0)
    obs = np.array([[np.nan, 100.0, 100.0], [np.nan, np.inf, np.nan], [200.0, np.nan, 100.0]])
    pdf, flags, n_eff = posterior.predict_pdf(obs, np.ones_like(obs), GRID)
    at_half = np.isclose(GRID.values, 0.5)
    # without u the two halves are indistinguishable; with u the second row is z = 1.5
    np.testing.assert_allclose(pdf[0, at_half] * GRID.dz, 0.5, atol=1e-9)
    assert flags[0] == fl.BAND_MISSING | fl.band_missing_bit(0)
    assert flags[1] & fl.NO_PDF and flags[1] & fl.NONFINITE_INPUT
    assert not pdf[1].any() and n_eff[1] == 0
    assert flags[2] == fl.BAND_MISSING | fl.band_missing_bit(1)
    assert pdf[2, np.isclose(GRID.values, 1.5)] * GRID.dz > 0.999


def test_posterior_is_calibrated_when_the_sample_is_the_population():
    """The Bayes posterior of objects drawn from the sampled population: PIT uniform (a
    sample too sparse for the errors is not: 40k draws give coverage_68 0.63)."""
    rng = np.random.default_rng(3)
    errors = FluxErrorModel(np.array([[400.0, 0.5, 0.0]] * 3), np.zeros(3))
    z_prior, flux_prior = population(rng, 200_000)  # dense enough: ~180 effective draws
    z_true, flux_true = population(rng, 1500)
    obs = observe(rng, flux_true, errors)
    posterior = PriorSamplePosterior(z_prior, flux_prior, errors, smoothing=0.0)
    pdf, _, n_eff = posterior.predict_pdf(obs, np.ones_like(obs), GRID)
    values = pit(pdf, GRID, z_true)
    assert pit_metrics(values)["pit_ks"] < 0.04
    assert abs(coverage(values)["coverage_68"] - 0.68) < 0.04
    assert np.median(n_eff) > 100
    assert abs(coverage(values)["coverage_95"] - 0.95) < 0.02
    # and it is informative: the 68% width is far below the prior's
    median = GRID.values[np.argmax(np.cumsum(pdf, axis=1) * GRID.dz >= 0.5, axis=1)]
    assert np.median(np.abs(median - z_true)) < 0.15


def test_posterior_rejects_draws_outside_the_grid():
    posterior = PriorSamplePosterior(np.array([3.5, 4.0]), np.ones((2, 3)), constant_errors(1.0, 3))
    with pytest.raises(ValueError, match="no draw has z in the grid"):
        posterior.predict_pdf(np.ones((1, 3)), np.ones((1, 3)), GRID)


def load_script():
    path = Path(__file__).resolve().parents[2] / "scripts" / "bayes_limit.py"
    spec = importlib.util.spec_from_file_location("bayes_limit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_writes_a_predictions_table(tmp_path):
    rng = np.random.default_rng(5)
    errors = FluxErrorModel(np.array([[400.0, 0.5, 1e-4]] * 6), np.zeros(6))
    z, flux3 = population(rng, 3000)
    flux = np.concatenate([flux3, flux3], axis=1)  # six bands
    draws = {"redshift": z[:2500], **{b: flux_to_mag(flux[:2500, i]) for i, b in enumerate(BANDS)}}
    draws["redshift"][0] = np.nan  # unusable draws are left out
    pq.write_table(pa.table(draws), tmp_path / "draws.parquet")
    obs = observe(rng, flux[2500:], errors)
    obs_err = np.sqrt(errors.variance(obs))
    objects = {"objectId": np.arange(500, dtype=np.int64), "redshift": z[2500:]}
    for i, b in enumerate(BANDS):
        objects[f"{b}_cModelFlux"] = obs[:, i].astype(np.float32)
        objects[f"{b}_cModelFluxErr"] = obs_err[:, i].astype(np.float32)
    pq.write_table(pa.table(objects), tmp_path / "objects.parquet")
    out = tmp_path / "bayes" / "pred.parquet"
    code = load_script().main(
        [
            "--prior",
            str(tmp_path / "draws.parquet"),
            "--objects",
            str(tmp_path / "objects.parquet"),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    predictions = read_predictions(str(out))
    assert predictions.pdf.shape == (500, 701)
    np.testing.assert_array_equal(predictions.object_id, objects["objectId"])
    assert (predictions.table["n_eff"].to_numpy() > 0).all()


def test_script_names_the_file_and_column_a_draws_table_lacks(tmp_path):
    path = tmp_path / "draws.parquet"
    pq.write_table(pa.table({"redshift": [0.3, 0.5], "u": [24.0, 25.0]}), path)
    with pytest.raises(ContractError, match="column 'g': missing") as info:
        load_script().read_draws(str(path), None)
    assert str(path) in str(info.value)
