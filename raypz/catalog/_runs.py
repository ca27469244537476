"""Runs of equal keys in arrays that are already grouped by key."""

from __future__ import annotations

import numpy as np


def run_starts(*keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal key tuples starts, in non-empty arrays grouped by key."""
    changed = np.zeros(len(keys[0]) - 1, dtype=bool)
    for key in keys:
        changed |= key[1:] != key[:-1]
    return np.flatnonzero(np.concatenate(([True], changed)))
