"""Bin assignment (magnitude, redshift and tomographic bins)."""

from __future__ import annotations

import numpy as np

from raypz.metrics import bin_index
from raypz.metrics.scoring import EvalConfig
from raypz.pdf import ZGrid, normalize, point_estimate, summarize


def test_edges_are_half_open_and_outside_values_are_minus_one():
    edges = (0.0, 0.5, 1.0)
    x = np.array([-0.1, 0.0, 0.49, 0.5, 0.99, 1.0, 2.0])
    np.testing.assert_array_equal(bin_index(x, edges), [-1, 0, 0, 1, 1, -1, -1])


def test_a_stored_float32_mode_on_an_edge_falls_in_the_same_bin_as_in_float64():
    """Modes are grid points, and 0.9 is one: stored as float32 (0.89999998) it fell in the
    bin below the edge 0.9 while the in-memory float64 mode fell above it."""
    grid = ZGrid(0.0, 3.5, 351)
    mu = np.array([0.3, 0.6, 0.9, 1.2, 1.5])
    pdf = normalize(np.exp(-0.5 * ((grid.values[None] - mu[:, None]) / 0.05) ** 2), grid)
    edges = EvalConfig().tomo_edges
    stored = summarize(pdf, grid)["z_mode"]
    assert stored.dtype == np.float32 and 0.9 in edges
    in_memory = point_estimate(pdf, grid, "mode")
    np.testing.assert_array_equal(bin_index(stored, edges), bin_index(in_memory, edges))
    assert bin_index(np.float32([0.9]), edges)[0] == edges.index(0.9)


def test_nan_and_infinite_values_stay_out_of_open_ended_bins():
    edges = (-np.inf, 20.0, 22.0, np.inf)
    x = np.array([np.nan, -np.inf, np.inf, 19.0, 30.0, 1e40])
    np.testing.assert_array_equal(bin_index(x, edges), [-1, -1, -1, 0, 2, 2])
