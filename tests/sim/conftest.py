"""Simulated tables shared by the simulator's tests (small, seeded, built once per module)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from raypz.columns import BANDS, DEFAULT_COLUMNS
from raypz.sim import SurveyConfig, simulate_shard


def _flux_matrix(table: pa.Table, err: bool = False) -> np.ndarray:
    """(n, 6) float64 fluxes (or errors) in nJy, ugrizy order."""
    names = DEFAULT_COLUMNS.flux_err_columns() if err else DEFAULT_COLUMNS.flux_columns()
    return np.stack([table[n].to_numpy().astype(np.float64) for n in names], axis=1)


@pytest.fixture(scope="session")
def flux_matrix() -> Callable[..., np.ndarray]:
    """``flux_matrix(table, err=False)``: (n, 6) fluxes or errors in nJy, ugrizy order."""
    return _flux_matrix


@pytest.fixture(scope="module")
def wide_table() -> pa.Table:
    """20,000 wide-field y10 rows with i < 25.3 (seed 11)."""
    return simulate_shard(SurveyConfig(n_objects=20_000, seed=11), 0)


@pytest.fixture(scope="module")
def band_index() -> dict[str, int]:
    """Band letter -> column index in :func:`flux_matrix`."""
    return {b: i for i, b in enumerate(BANDS)}
