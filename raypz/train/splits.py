"""Validation splits and folds fixed by a hash of objectId.

The same object lands in the same split on every run and machine, however the data are
sharded or ordered, so validation metrics are comparable across runs.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def hash_unit(object_id: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per objectId (splitmix64 finaliser), shape (N,)."""
    x = np.asarray(object_id).astype(np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def fold_of(object_id: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold index in [0, n_folds) per objectId."""
    return np.minimum((hash_unit(object_id) * n_folds).astype(np.int64), n_folds - 1)


def is_validation(object_id: np.ndarray, val_fraction: float) -> np.ndarray:
    """True for the rows of the fixed validation split."""
    return hash_unit(object_id) < val_fraction


def kfold_of(object_id: np.ndarray, n_folds: int, val_fraction: float) -> np.ndarray:
    """k-fold index in [0, n_folds) per objectId outside the validation split, -1 inside it.

    The folds divide the rows that :func:`is_validation` leaves evenly (the hash is rescaled
    over ``[val_fraction, 1)``), so no fold holds more of the split than another.
    """
    u = hash_unit(object_id)
    kept = (u - val_fraction) / (1.0 - val_fraction)
    folds = np.minimum((kept * n_folds).astype(np.int64), n_folds - 1)
    return np.where(u < val_fraction, -1, folds)
