"""n(z) stacks, Wasserstein-1 distance and mean-z shift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raypz.metrics import bin_index, mean_z, nz_metrics, nz_stacks, truth_density, wasserstein1
from raypz.pdf import ZGrid, cdf, normalize

GRID = ZGrid(0.0, 3.0, 301)  # dz = 0.01


def deltas(grid: ZGrid, z: np.ndarray) -> np.ndarray:
    """Delta-like PDFs (N, G) with all mass at the interior grid point nearest to each z."""
    idx = np.rint((z - grid.z_min) / grid.dz).astype(int)
    pdf = np.zeros((z.size, grid.n))
    pdf[np.arange(z.size), idx] = 1.0 / grid.dz
    return pdf


def test_truth_density_integrates_to_one_and_keeps_the_mean(rng):
    z = rng.uniform(0.1, 2.9, 1000)
    dens = truth_density(GRID, z)
    w = np.full(GRID.n, GRID.dz)
    w[[0, -1]] /= 2
    assert dens @ w == pytest.approx(1.0)
    assert mean_z(GRID, dens)[0] == pytest.approx(z.mean())


def test_identical_distributions_have_zero_distance():
    z = np.array([0.4, 0.41, 0.5, 0.77, 1.0])  # on grid points
    m = nz_metrics(deltas(GRID, z), GRID, z, z, edges=(0.0, 3.0))
    assert m["bins"][0]["wasserstein1"] == pytest.approx(0.0, abs=1e-12)
    assert m["bins"][0]["mean_z_shift"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shift", [0.1, 0.123])
def test_shifted_delta_has_distance_equal_to_the_shift(shift):
    z_phot = np.full(3, 1.0)
    m = nz_metrics(deltas(GRID, z_phot), GRID, z_phot, z_phot + shift, edges=(0.0, 3.0))
    assert m["bins"][0]["wasserstein1"] == pytest.approx(shift)
    assert m["bins"][0]["mean_z_shift"] == pytest.approx(-shift)
    assert m["wasserstein1_mean"] == pytest.approx(shift)


def test_wasserstein_matches_brute_force_with_crossing_cdfs(rng):
    a = normalize(rng.random((3, GRID.n)) ** 3, GRID)
    b = normalize(rng.random((3, GRID.n)) ** 3, GRID)
    fine = np.linspace(GRID.z_min, GRID.z_max, 300_001)
    fa, fb = cdf(a, GRID), cdf(b, GRID)
    brute = []
    for i in range(3):
        d = np.abs(np.interp(fine, GRID.values, fa[i]) - np.interp(fine, GRID.values, fb[i]))
        brute.append(np.sum(0.5 * (d[1:] + d[:-1]) * np.diff(fine)))
    np.testing.assert_allclose(wasserstein1(GRID, a, b), brute, rtol=1e-6)


def test_bins_by_photometric_redshift_and_empty_bins():
    z_phot = np.array([0.1, 0.2, 0.7, 0.75, 2.95, 3.2])  # 3.2 is outside the edges
    z_true = z_phot + 0.01
    st = nz_stacks(deltas(GRID, np.clip(z_phot, 0, 2.99)), GRID, z_phot, z_true)
    assert st.counts.tolist() == [2, 0, 2, 0, 0, 0, 1]
    assert st.stack.shape == (7, GRID.n) and not st.stack[1].any()
    m = nz_metrics(deltas(GRID, np.clip(z_phot, 0, 2.99)), GRID, z_phot, z_true)
    assert math.isnan(m["bins"][1]["wasserstein1"])
    assert m["bins"][0]["n"] == 2
    assert m["mean_z_shift_max_abs"] == pytest.approx(0.01)


def test_stacks_summed_in_chunks_equal_one_sum():
    """The float64 sums run a chunk of rows at a time (a whole copy was the evaluation's largest
    array); any chunking gives the stacks of one float64 sum over all rows."""
    rng = np.random.default_rng(4)
    z_phot = rng.uniform(0.0, 3.2, 1000)
    pdf = rng.random((1000, GRID.n)).astype(np.float32)
    whole = nz_stacks(pdf, GRID, z_phot, z_phot, chunk_rows=10**6)
    onehot = bin_index(z_phot, np.asarray(whole.edges))[None, :] == np.arange(7)[:, None]
    expected = onehot.astype(np.float64) @ normalize(pdf, GRID)
    np.testing.assert_allclose(whole.stack, normalize(expected, GRID), rtol=1e-12)
    for chunk in (1, 7, 999):
        got = nz_stacks(pdf, GRID, z_phot, z_phot, chunk_rows=chunk)
        np.testing.assert_allclose(got.stack, whole.stack, rtol=1e-12)
        assert got.counts.tolist() == whole.counts.tolist()


def test_every_object_weighs_one_whatever_its_stored_mass():
    """Float-list PDFs from elsewhere need not integrate to 1: a row stored nine times too
    heavy once pulled its bin's n(z) (and mean redshift) toward itself."""
    z_phot = np.array([0.4, 0.5])
    pdf = deltas(GRID, z_phot)
    heavy = pdf.copy()
    heavy[1] *= 9.0
    edges = (0.0, 1.0)
    np.testing.assert_allclose(
        nz_stacks(heavy, GRID, z_phot, z_phot, edges).stack,
        nz_stacks(pdf, GRID, z_phot, z_phot, edges).stack,
    )
