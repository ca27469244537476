"""evaluate(): exclusions, overall and binned metrics against the metric functions."""

from __future__ import annotations

import numpy as np
import pytest

from raypz import flags as fl
from raypz.metrics import (
    EvalConfig,
    coverage,
    crps,
    evaluate,
    nz_metrics,
    pit,
    pit_metrics,
    point_metrics,
)
from raypz.pdf import POINT_ESTIMATES, ZGrid, normalize, point_estimate, quantiles

GRID = ZGrid(0.0, 3.0, 301)


def gaussian_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated Gaussian PDFs (n, G) and their true redshifts (n,)."""
    z_true = rng.uniform(0.1, 2.5, n)
    sigma = 0.05 * (1 + z_true)
    mu = z_true + sigma * rng.standard_normal(n)
    pdf = normalize(np.exp(-0.5 * ((GRID.values - mu[:, None]) / sigma[:, None]) ** 2), GRID)
    return pdf, z_true


def test_overall_metrics_equal_the_metric_functions(rng):
    pdf, z = gaussian_sample(rng, 600)
    result = evaluate(GRID, pdf, z)
    z_mode = GRID.values[np.argmax(pdf, axis=1)]
    p = pit(pdf, GRID, z)
    expected = {
        "n": 600,
        **point_metrics(z_mode, z),
        "crps_mean": crps(pdf, GRID, z).mean(),
        **pit_metrics(p),
        **coverage(p),
    }
    assert result["overall"] == pytest.approx(expected)
    assert result["nz"] == nz_metrics(pdf, GRID, z_mode, z)


def test_point_metrics_use_the_stated_point_estimate(rng):
    pdf, z = gaussian_sample(rng, 300)
    pdf = normalize(pdf + 0.5 * np.roll(pdf, 40, axis=1), GRID)  # skewed: mode != median
    result = evaluate(GRID, pdf, z, config=EvalConfig(point_estimate="median", chunk_rows=64))
    z_median = quantiles(pdf, GRID, (0.5,))[:, 0]
    assert result["point_estimate"] == "median"
    assert result["overall"]["sigma_mad"] == pytest.approx(point_metrics(z_median, z)["sigma_mad"])
    assert result["overall"]["sigma_mad"] != evaluate(GRID, pdf, z)["overall"]["sigma_mad"]
    assert result["nz"] == nz_metrics(pdf, GRID, z_median, z)


def test_point_metrics_of_every_point_estimate_are_listed(rng):
    pdf, z = gaussian_sample(rng, 300)
    pdf = normalize(pdf + 0.5 * np.roll(pdf, 40, axis=1), GRID)  # skewed: estimates differ
    result = evaluate(GRID, pdf, z, config=EvalConfig(point_estimate="best", chunk_rows=64))
    table = result["by_point_estimate"]
    assert list(table) == list(POINT_ESTIMATES)
    for kind in POINT_ESTIMATES:
        assert table[kind] == pytest.approx(point_metrics(point_estimate(pdf, GRID, kind), z))
    assert table["best"]["sigma_mad"] == pytest.approx(result["overall"]["sigma_mad"])
    assert table["mode"]["sigma_mad"] != table["best"]["sigma_mad"]


def test_unscorable_rows_are_excluded_and_counted(rng):
    pdf, z = gaussian_sample(rng, 100)
    pdf[:3] = 0.0  # no PDF made
    flags = np.zeros(100, np.int32)
    flags[:3] = fl.NO_PDF
    flags[3] = fl.NO_PDF  # flagged although a PDF is there: still not scored
    pdf[4, 5] = np.nan
    pdf[7, 10] = -0.1  # no density: its CDF would fall
    z[5:7] = np.nan
    result = evaluate(GRID, pdf, z, flags=flags)
    assert result["n_rows"] == 100
    assert result["n_no_pdf"] == 6
    assert result["n_bad_z_spec"] == 2
    assert result["n_scored"] == result["overall"]["n"] == 92
    assert result["flag_counts"]["no_pdf"] == 4
    good = np.arange(100) >= 8
    assert result["overall"]["crps_mean"] == pytest.approx(crps(pdf[good], GRID, z[good]).mean())


def test_binned_counts_add_up(rng):
    pdf, z = gaussian_sample(rng, 500)
    mag = rng.uniform(20.0, 26.0, 500)
    mag[:10] = np.nan
    config = EvalConfig(mag_edges=(20.0, 22.0, 24.0, 25.0))
    result = evaluate(GRID, pdf, z, mag=mag, config=config)
    for name in ("mag", "z_spec", "z_phot"):
        b = result["binned"][name]
        assert sum(x["n"] for x in b["bins"]) + b["n_outside"] == 500
    mags = result["binned"]["mag"]
    assert mags["n_outside"] == 10 + int(np.sum(mag[10:] >= 25.0))
    first = mags["bins"][0]
    in_bin = (mag >= 20.0) & (mag < 22.0)
    assert first["n"] == in_bin.sum()
    z_mode = GRID.values[np.argmax(pdf[in_bin], axis=1)]
    assert first["sigma_mad"] == pytest.approx(point_metrics(z_mode, z[in_bin])["sigma_mad"])
    empty = result["binned"]["z_spec"]["bins"][-1]  # 3.0-3.5: no true redshift there
    assert empty["n"] == 0 and np.isnan(empty["crps_mean"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"z_edges": (0.0,)},
        {"mag_edges": (20.0, 19.0)},
        {"coverage_levels": (1.2,)},
        {"pit_extreme": 0.7},
        {"point_estimate": "z_best"},
    ],
)
def test_config_is_validated(kwargs):
    with pytest.raises(ValueError, match="EvalConfig"):
        EvalConfig(**kwargs)


def test_nothing_scorable_gives_nan_metrics_without_warnings():
    pdf = np.zeros((4, GRID.n))
    result = evaluate(GRID, pdf, np.ones(4), mag=np.full(4, 22.0))
    assert result["n_scored"] == 0 and result["n_no_pdf"] == 4
    assert np.isnan(result["overall"]["sigma_mad"]) and np.isnan(result["nz"]["wasserstein1_mean"])
    assert result["binned"]["mag"]["n_outside"] == 0
