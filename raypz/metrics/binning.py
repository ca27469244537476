"""Assigning rows to bins given by edges (magnitude, redshift, tomographic bins)."""

from __future__ import annotations

import numpy as np


def bin_index(x: np.ndarray, edges: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Bin of each value, shape (N,) int64: b where ``edges[b] <= x < edges[b+1]``, else -1.

    Values outside the edges and NaN get -1, so they are counted apart, never put in a bin.
    """
    x = np.asarray(x, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(edges, np.where(np.isfinite(x), x, edges[0] - 1.0), side="right") - 1
    return np.where(idx < edges.size - 1, idx, -1)
