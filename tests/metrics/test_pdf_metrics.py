"""PIT, CRPS and coverage on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from raypz.metrics import coverage, coverage_curve, crps, pit, pit_metrics
from raypz.pdf import ZGrid, cdf, normalize, quantiles

GRID = ZGrid(0.0, 2.0, 201)  # dz = 0.01


def gaussians(grid: ZGrid, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    z = grid.values
    return normalize(np.exp(-0.5 * ((z - mu[:, None]) / sigma[:, None]) ** 2), grid)


def delta(grid: ZGrid, index: int) -> np.ndarray:
    """A one-row PDF with all its mass at one interior grid point."""
    pdf = np.zeros((1, grid.n))
    pdf[0, index] = 1.0 / grid.dz
    return pdf


def test_pit_of_gaussian_at_its_mean_is_half():
    mu = np.array([0.5, 1.0, 1.5])
    p = pit(gaussians(GRID, mu, np.full(3, 0.05)), GRID, mu)
    np.testing.assert_allclose(p, 0.5, atol=1e-12)


def test_pit_outside_the_grid_and_nan():
    pdf = gaussians(GRID, np.full(3, 1.0), np.full(3, 0.1))
    p = pit(pdf, GRID, np.array([-0.5, 2.5, np.nan]))
    assert p[0] == 0.0 and p[1] == 1.0 and np.isnan(p[2])


def test_ks_and_cvm_of_perfectly_uniform_pits():
    n = 1000
    u = (np.arange(1, n + 1) - 0.5) / n
    m = pit_metrics(np.random.default_rng(0).permutation(u))
    assert m["pit_ks"] == pytest.approx(0.5 / n)
    assert m["pit_cvm"] == pytest.approx(1.0 / (12 * n * n))
    assert m["pit_extreme_frac"] == 0.0


def test_ks_and_cvm_of_one_value():
    m = pit_metrics(np.array([0.3]))
    assert m["pit_ks"] == pytest.approx(0.7)
    # integral_0^0.3 u^2 du + integral_0.3^1 (1-u)^2 du
    assert m["pit_cvm"] == pytest.approx(0.3**3 / 3 + 0.7**3 / 3)


def test_extreme_pit_fraction():
    m = pit_metrics(np.array([0.0, 0.5, 1 - 1e-5, 0.2]))
    assert m["pit_extreme_frac"] == 0.5


def test_crps_of_delta_pdf():
    m, h = 100, GRID.dz  # z_m = 1.0; the piecewise-linear CDF is uniform on [z_m - h, z_m + h]
    pdf = np.repeat(delta(GRID, m), 4, axis=0)
    z = np.array([1.37, 0.2, 1.0, 1.005])
    got = crps(pdf, GRID, z)
    assert got[0] == pytest.approx(0.37 - h / 3)  # |dz| - h/3 away from the delta
    assert got[1] == pytest.approx(0.8 - h / 3)
    assert got[2] == pytest.approx(h / 6)
    # inside the support: integral of F^2 left of z plus (1 - F)^2 right of it
    f_mid = 0.75  # F rises from 0.5 at z_m to 1 at z_m + h
    expected = (
        h / 12 + 0.5 * h * (0.25 + 0.5 * f_mid + f_mid**2) / 3 + 0.5 * h * (1 - f_mid) ** 2 / 3
    )
    assert got[3] == pytest.approx(expected)


def test_crps_of_a_non_finite_redshift_is_nan_as_its_pit():
    pdf = gaussians(GRID, np.full(3, 1.0), np.full(3, 0.1))
    z = np.array([1.0, np.nan, np.inf])
    got = crps(pdf, GRID, z)
    assert np.isnan(got[1:]).all() and np.isnan(pit(pdf, GRID, z)[1])
    assert got[0] == pytest.approx(crps(pdf[:1], GRID, z[:1])[0])


def test_crps_of_uniform_pdf_closed_form():
    a, b = GRID.z_min, GRID.z_max
    z = np.array([0.0, 0.3, 1.0, 1.234, 2.0, 2.5, -0.5])
    pdf = np.ones((z.size, GRID.n))
    length = b - a
    inside = np.clip(z, a, b)
    expected = ((inside - a) ** 3 + (b - inside) ** 3) / (3 * length**2)
    expected += np.maximum(z - b, 0) + np.maximum(a - z, 0)
    np.testing.assert_allclose(crps(pdf, GRID, z), expected, rtol=1e-12)


def test_crps_matches_brute_force_integration_and_ignores_chunking(rng):
    n = 7
    pdf = normalize(rng.random((n, GRID.n)) ** 4, GRID)
    z = rng.uniform(-0.1, 2.1, n)
    fine = np.linspace(-0.2, 2.2, 480_001)
    c = cdf(pdf, GRID)
    brute = []
    for i in range(n):
        f = np.interp(fine, GRID.values, c[i], left=0.0, right=1.0)
        integrand = (f - (fine >= z[i])) ** 2
        brute.append(np.sum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(fine)))
    np.testing.assert_allclose(crps(pdf, GRID, z), brute, atol=2e-5)
    np.testing.assert_allclose(crps(pdf, GRID, z, chunk_rows=3), crps(pdf, GRID, z))


def test_coverage_of_calibrated_gaussians(rng):
    n = 4000
    mu = rng.uniform(0.5, 1.5, n)
    sigma = rng.uniform(0.03, 0.1, n)
    z_true = mu + sigma * rng.standard_normal(n)
    pdf = gaussians(GRID, mu, sigma)
    p = pit(pdf, GRID, z_true)
    cov = coverage(p)
    for level in (0.68, 0.95):
        tolerance = 3 * np.sqrt(level * (1 - level) / n)
        assert abs(cov[f"coverage_{round(100 * level)}"] - level) < tolerance
    # same answer as asking whether z_true lies between the quantiles of raypz.pdf
    q = quantiles(pdf, GRID, (0.16, 0.84))
    inside = np.mean((z_true >= q[:, 0]) & (z_true <= q[:, 1]))
    assert cov["coverage_68"] == pytest.approx(inside, abs=2 / n)
    curve = coverage_curve(p, np.linspace(0.05, 0.95, 19))
    np.testing.assert_allclose(curve, np.linspace(0.05, 0.95, 19), atol=0.04)


def test_coverage_of_empty_input_is_nan():
    assert np.isnan(coverage(np.empty(0))["coverage_68"])
