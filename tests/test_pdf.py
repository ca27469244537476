"""PDF grid, normalisation, CDF, quantiles and summaries on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from raypz.pdf import (
    RISK_WIDTH,
    ZGrid,
    best_redshift,
    cdf,
    cdf_at,
    normalize,
    point_estimate,
    quantiles,
    summarize,
)

GRID = ZGrid(0.0, 3.5, 351)


def gaussian(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    z = GRID.values
    return normalize(np.exp(-0.5 * ((z[None, :] - mu[:, None]) / sigma[:, None]) ** 2), GRID)


def test_grid_spacing_and_round_trip():
    assert GRID.dz == pytest.approx(0.01)
    assert GRID.values[0] == 0.0 and GRID.values[-1] == pytest.approx(3.5)
    assert ZGrid.from_dict(GRID.to_dict()) == GRID


def test_normalized_rows_integrate_to_one_and_cdf_ends_at_one():
    pdf = normalize(np.random.default_rng(0).random((4, GRID.n)), GRID)
    c = cdf(pdf, GRID)
    np.testing.assert_allclose(c[:, -1], 1.0, atol=1e-9)
    assert np.all(np.diff(c, axis=1) >= 0)


def test_uniform_pdf_cdf_is_linear():
    pdf = normalize(np.ones((1, GRID.n)), GRID)
    z = np.array([1.75])
    assert cdf_at(pdf, GRID, z)[0] == pytest.approx(0.5, abs=1e-9)


def test_cdf_at_nonfinite_redshift_is_nan():
    pdf = gaussian(np.array([1.0]), np.array([0.1]))
    assert np.isnan(cdf_at(pdf, GRID, np.array([np.nan]))[0])


def test_gaussian_summaries_match_the_analytic_values():
    mu, sigma = np.array([0.8, 1.6]), np.array([0.05, 0.1])
    s = summarize(gaussian(mu, sigma), GRID)
    np.testing.assert_allclose(s["z_mean"], mu, atol=1e-3)
    np.testing.assert_allclose(s["z_median"], mu, atol=2e-3)
    np.testing.assert_allclose(s["z_mode"], mu, atol=GRID.dz / 2 + 1e-9)
    # the loss divides by (1 + z), so a miss towards higher z costs less: z_best lies a
    # little below the peak of a symmetric PDF, by less than the 2 sigma^2 / (1 + mu) of a
    # quadratic loss (the loss flattens away from the truth)
    assert np.all(s["z_best"] < mu)
    assert np.all(s["z_best"] > mu - 2 * sigma**2 / (1 + mu))
    np.testing.assert_allclose(s["z_std"], sigma, rtol=0.02)
    np.testing.assert_allclose(s["z_lo68"], mu - 0.994 * sigma, atol=3e-3)
    np.testing.assert_allclose(s["z_hi95"], mu + 1.96 * sigma, atol=4e-3)
    # odds: mass within +-0.06 (1 + mode) of the mode
    from scipy.stats import norm

    half = 0.06 * (1 + mu)
    np.testing.assert_allclose(
        s["odds"], norm.cdf(half / sigma) - norm.cdf(-half / sigma), atol=0.01
    )


def test_quantiles_of_a_bimodal_pdf():
    pdf = normalize(
        gaussian(np.array([0.5]), np.array([0.05])) + gaussian(np.array([2.0]), np.array([0.05])),
        GRID,
    )
    q = quantiles(pdf, GRID, (0.25, 0.75))[0]
    assert q[0] == pytest.approx(0.5, abs=0.005)  # each mode holds half the mass
    assert q[1] == pytest.approx(2.0, abs=0.005)


def test_point_estimates_of_a_narrow_minor_and_a_broad_major_peak():
    # 30% of the mass in a narrow peak at 0.2, 70% in a broad one at 2.5 (an ensemble whose
    # members split between two solutions): the mode follows the narrow peak's height, the
    # median, mean and best follow the mass.
    narrow = gaussian(np.array([0.2]), np.array([0.01]))
    broad = gaussian(np.array([2.5]), np.array([0.15]))
    pdf = 0.3 * narrow + 0.7 * broad
    assert point_estimate(pdf, GRID, "mode")[0] == pytest.approx(0.2, abs=1e-9)
    # the median is the 0.5/0.7 quantile of the broad peak: 2.5 + 0.15 * Phi^-1(2/7)
    assert point_estimate(pdf, GRID, "median")[0] == pytest.approx(2.5 - 0.15 * 0.566, abs=4e-3)
    assert point_estimate(pdf, GRID, "mean")[0] == pytest.approx(0.3 * 0.2 + 0.7 * 2.5, abs=1e-3)
    # best: the minimum of the expected loss lies on the broad peak, pulled a little towards
    # the narrow one by the loss's tail
    assert point_estimate(pdf, GRID, "best")[0] == pytest.approx(2.5, abs=0.02)
    s = summarize(pdf, GRID)
    for kind in ("mode", "median", "mean", "best"):
        assert point_estimate(pdf, GRID, kind)[0] == pytest.approx(s[f"z_{kind}"][0], abs=1e-5)


def test_point_estimate_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match=r"point_estimate's kind must be one of .*'peak'"):
        point_estimate(gaussian(np.array([1.0]), np.array([0.1])), GRID, "peak")


def test_every_config_with_a_point_estimate_refuses_an_unknown_one_when_made():
    """Not after the work: cross_validate trained every fold before its report's evaluation
    found the name unknown."""
    from raypz.evaluation import EvaluationRequest
    from raypz.metrics import EvalConfig
    from raypz.metrics.catalog_nz import NZConfig
    from raypz.train import TrainConfig
    from raypz.train.crossval import check_settings

    made = [
        lambda: EvalConfig(point_estimate="peak"),
        lambda: NZConfig(point_estimate="peak"),
        lambda: EvaluationRequest("p", "t", "r", point_estimate="peak"),
        lambda: check_settings(TrainConfig(), 4, "peak"),
    ]
    for make in made:
        with pytest.raises(ValueError, match=r"point_estimate must be one of .*'peak'"):
            make()
    check_settings(TrainConfig(), 4, "median")


def expected_loss(pdf: np.ndarray, grid: ZGrid, z_guess: np.ndarray) -> np.ndarray:
    """Expected loss 1 - 1/(1 + (dz/gamma)^2) of guesses (N, C) under PDFs (N, G), by brute
    force in float64 (trapezoid rule)."""
    z = grid.values
    w = np.full(grid.n, grid.dz)
    w[0] = w[-1] = grid.dz / 2
    dz = (z_guess[:, :, None] - z[None, None, :]) / (1 + z[None, None, :])  # (N, C, G)
    loss = 1 - 1 / (1 + (dz / RISK_WIDTH) ** 2)
    return np.einsum("ncg,ng,g->nc", loss, pdf, w)


@pytest.mark.parametrize("grid", [GRID, ZGrid(0.0, 3.5, 701), ZGrid(0.0, 6.0, 301)])
def test_best_redshift_has_the_least_expected_loss_of_any_grid_point(grid):
    # mixtures of 1-3 Gaussians of random weights, means and widths 0.005-0.3
    rng = np.random.default_rng(3)
    n, z = 60, grid.values
    pdf = np.zeros((n, grid.n))
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            mu, sigma = rng.uniform(0, grid.z_max), rng.uniform(0.005, 0.3)
            pdf[i] += rng.random() * np.exp(-0.5 * ((z - mu) / sigma) ** 2)
    pdf = normalize(pdf, grid)
    best = best_redshift(pdf, grid)
    on_grid = expected_loss(pdf, grid, np.broadcast_to(z, (n, grid.n)))
    at_best = expected_loss(pdf, grid, best[:, None])[:, 0]
    # never worse than the best grid point by more than float32 rounding of the product
    assert np.all(at_best <= on_grid.min(axis=1) + 1e-5)


def test_best_redshift_of_rows_without_mass_is_nan():
    pdf = gaussian(np.array([1.0, 1.0, 1.0]), np.array([0.02, 0.02, 0.02]))
    pdf[1] = 0.0
    pdf[2, 5] = np.nan
    best = best_redshift(pdf, GRID)
    assert best[0] == pytest.approx(1.0, abs=1e-3)
    assert np.isnan(best[1:]).all()
    assert best_redshift(np.zeros((0, GRID.n)), GRID).shape == (0,)


def test_pdfs_of_another_grid_are_refused_not_scored(rng):
    """ZGrid() has 351 points and the training grid 701: PDFs read on the wrong one gave
    plausible PIT values and medians (or a torch shape error deep inside) with no word."""
    from raypz.metrics import crps, evaluate, pit
    from raypz.predictions import predictions_table

    fine = ZGrid(0.0, 3.5, 701)
    pdf = normalize(rng.random((5, fine.n)), fine)
    z = rng.uniform(0.1, 2.0, 5)
    rule = r"PDFs of shape \(5, 701\) are not rows on a z grid of 351 points"
    for call in (
        lambda: pit(pdf, ZGrid(), z),
        lambda: crps(pdf, ZGrid(), z),
        lambda: point_estimate(pdf, ZGrid(), "median"),
        lambda: point_estimate(pdf, ZGrid(), "mode"),
        lambda: summarize(pdf, ZGrid()),
        lambda: evaluate(ZGrid(), pdf, z),
        lambda: predictions_table(np.arange(5), pdf, ZGrid()),
    ):
        with pytest.raises(ValueError, match=rule):
            call()
    with pytest.raises(ValueError, match="5 PDF rows for 4 redshifts"):
        pit(pdf, fine, z[:4])
    with pytest.raises(TypeError, match="grid must be a ZGrid, got ndarray"):
        evaluate(pdf, fine, z)  # the arguments swapped
    assert np.isfinite(pit(pdf, fine, z)).all()


def test_a_grid_of_absurd_size_is_refused():
    """A z grid read from a file sizes N x n arrays: n = 4e8 in a crafted model.json asked
    160 GB of memory for 100 rows."""
    for n in (2, 65_537, 400_000_000):
        with pytest.raises(ValueError, match="ZGrid needs 3 <= n <= 65536 points"):
            ZGrid.from_dict({"z_min": 0.0, "z_max": 3.5, "n": n})
    assert ZGrid(0.0, 3.5, 65_536).n == 65_536


def test_grid_locates_redshifts_and_integrates_by_the_trapezoid_rule():
    grid = ZGrid(0.0, 2.0, 5)  # points 0, 0.5, 1, 1.5, 2
    lo, frac = grid.locate(np.array([-1.0, 0.0, 0.25, 1.0, 1.9, 2.0, 7.0]))
    assert lo.tolist() == [0, 0, 0, 2, 3, 3, 3]  # the top point belongs to the last step
    np.testing.assert_allclose(frac, [0.0, 0.0, 0.5, 0.0, 0.8, 1.0, 1.0])
    z = np.array([0.3, 1.2, 1.75])
    lo, frac = grid.locate(z)
    np.testing.assert_allclose(grid.values[lo] + frac * grid.dz, z)
    np.testing.assert_allclose(grid.trapezoid_weights, [0.25, 0.5, 0.5, 0.5, 0.25])
    assert np.ones(grid.n) @ grid.trapezoid_weights == pytest.approx(2.0)
