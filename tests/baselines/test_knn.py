"""kNN baseline: recovers redshift where it is a smooth function of colours; PDFs normalise."""

from __future__ import annotations

import numpy as np
import pytest

from raypz import flags as fl
from raypz.baselines import KNNBaseline, KNNConfig
from raypz.metrics import point_metrics
from raypz.pdf import ZGrid

GRID = ZGrid(0.0, 3.0, 301)


def toy_fluxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fluxes (n, 6) in nJy whose colours are linear in z, with 1% noise, and z (n,)."""
    z = rng.uniform(0.1, 2.0, n)
    bright = rng.uniform(2e3, 2e4, n)[:, None]  # AB ~ 20.6-21.4
    flux = bright * np.exp(-np.outer(z, np.arange(6)) / 3.0)
    err = 0.01 * flux
    return flux + err * rng.standard_normal(flux.shape), err, z


@pytest.fixture(scope="module")
def fitted() -> tuple[KNNBaseline, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    flux, err, z = toy_fluxes(rng, 4000)
    config = KNNConfig(k_values=(5, 20), bandwidths=(0.01, 0.03), grid=GRID)
    return (
        KNNBaseline.fit(flux[:3000], err[:3000], z[:3000], config),
        flux[3000:],
        err[3000:],
        z[3000:],
    )


def test_recovers_redshift_of_toy_problem(fitted):
    knn, flux, err, z = fitted
    pdf, flags = knn.predict_pdf(flux, err, GRID)
    assert pdf.shape == (1000, GRID.n) and pdf.dtype == np.float32
    assert not flags.any()
    z_mode = GRID.values[np.argmax(pdf, axis=1)]
    m = point_metrics(z_mode, z)
    assert m["sigma_mad"] < 0.02
    assert m["eta_0.15"] < 0.01
    assert abs(m["bias_median"]) < 0.01


def test_pdfs_normalise_and_unusable_rows_get_none(fitted):
    knn, flux, err, _ = fitted
    flux = flux[:20].copy()
    flux[3] = np.nan  # no usable band at all
    pdf, flags = knn.predict_pdf(flux, err[:20], GRID)
    w = np.full(GRID.n, GRID.dz)
    w[[0, -1]] /= 2
    integral = pdf.astype(np.float64) @ w
    assert flags[3] & fl.NO_PDF and not pdf[3].any()
    np.testing.assert_allclose(np.delete(integral, 3), 1.0, rtol=1e-5)


def test_validation_search_picks_lowest_crps(fitted):
    knn = fitted[0]
    assert len(knn.validation) == 4
    best = min(knn.validation, key=lambda r: r["crps_mean"])
    assert (knn.k, knn.bandwidth) == (best["k"], best["bandwidth"])


def test_placeholder_redshifts_do_not_train():
    """A -99 (or an 11, beyond the redshift range) is no label: clipped to the grid, it put a
    spike at the grid's end into the PDF of every object it neighboured."""
    rng = np.random.default_rng(3)
    flux, err, z = toy_fluxes(rng, 2000)  # true z in 0.1-2
    labels = z[:1500].copy()
    labels[::5] = -99.0
    labels[1::50] = 11.0
    config = KNNConfig(k_values=(20,), bandwidths=(0.02,), grid=GRID)
    knn = KNNBaseline.fit(flux[:1500], err[:1500], labels, config)
    pdf, _ = knn.predict_pdf(flux[1500:], err[1500:], GRID)
    mass = pdf.astype(np.float64) * GRID.dz
    assert mass[:, GRID.values < 0.03].sum(axis=1).max() < 1e-3
    assert mass[:, GRID.values > 2.6].sum(axis=1).max() < 1e-3


def test_config_is_validated():
    with pytest.raises(ValueError, match="KNNConfig"):
        KNNConfig(k_values=(0,))
    with pytest.raises(ValueError, match="KNNConfig"):
        KNNConfig(validation_fraction=1.5)
