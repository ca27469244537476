"""Assigning rows to bins given by edges (magnitude, redshift, tomographic bins)."""

from __future__ import annotations

import numpy as np

F32_MAX = float(np.finfo(np.float32).max)
"""Largest float32: finite values beyond it are clipped to it, not cast to an infinity."""


def bin_index(x: np.ndarray, edges: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Bin of each value, shape (N,) int64: b where ``edges[b] <= x < edges[b+1]``, else -1.

    Values outside the edges, NaN and infinities get -1, so they are counted apart, never put
    in a bin (also when an edge is infinite: an open-ended magnitude bin).

    Values and edges are compared at float32 precision, the precision the catalog stores its
    point estimates at. A z_mode is a grid point, and the grid has points on the usual
    tomographic edges: stored as float32, 0.9 is 0.89999998 and fell in the bin below the edge
    0.9 while the same estimate in float64 fell above it, moving ~3% of a bin's objects (its
    mean z by ~0.005) between a catalog and the in-memory PDFs it was written from.
    """
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    edges32 = np.asarray(edges, dtype=np.float64).astype(np.float32)
    x32 = np.clip(np.where(finite, x, 0.0), -F32_MAX, F32_MAX).astype(np.float32)
    idx = np.searchsorted(edges32, x32, side="right") - 1
    return np.where(finite & (idx >= 0) & (idx < edges32.size - 1), idx, -1)
