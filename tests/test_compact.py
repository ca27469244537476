"""Compact PDF encoding: round trip accuracy, nulls for missing PDFs, size, metric changes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from raypz import compact
from raypz.metrics import crps, pit
from raypz.pdf import ZGrid, normalize

GRID = ZGrid()


def _pdfs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-component Gaussian mixtures (N, G) and true redshifts drawn from them."""
    z = GRID.values
    mu = rng.uniform(0.1, 3.0, (n, 2))
    sigma = rng.uniform(0.02, 0.2, (n, 2)) * (1 + mu)
    w = rng.uniform(0.1, 1.0, (n, 2))
    dens = (
        w[:, :, None]
        * np.exp(-0.5 * ((z - mu[:, :, None]) / sigma[:, :, None]) ** 2)
        / sigma[:, :, None]
    )
    pick = rng.random(n) < w[:, 1] / w.sum(axis=1)
    z_true = np.where(pick, rng.normal(mu[:, 1], sigma[:, 1]), rng.normal(mu[:, 0], sigma[:, 0]))
    return normalize(dens.sum(axis=1), GRID).astype(np.float32), np.clip(z_true, 0.0, 3.5)


def test_round_trip_is_close_and_normalised(rng):
    pdf, _ = _pdfs(rng, 500)
    start, values = compact.encode(pdf)
    back = compact.decode(start, values, GRID.n, GRID.dz)
    assert back.shape == pdf.shape and back.dtype == np.float32
    err = np.abs(np.cumsum(back, axis=1) - np.cumsum(pdf, axis=1)).max() * GRID.dz
    assert err < 0.01  # CDFs agree to 1%
    mass = (back.sum(axis=1) - 0.5 * (back[:, 0] + back[:, -1])) * GRID.dz
    np.testing.assert_allclose(mass, 1.0, atol=1e-5)


def test_rows_without_pdf_are_null_and_decode_to_zero(rng):
    pdf, _ = _pdfs(rng, 5)
    pdf[1] = 0.0
    pdf[2, 7], pdf[3, 9] = np.inf, np.nan  # not finite: no PDF either (an inf stored b"")
    start, values = compact.encode(pdf)
    assert values.null_count == 3 and [values[i].is_valid for i in range(5)] == [
        True, False, False, False, True
    ]  # fmt: skip
    back = compact.decode(start, pa.chunked_array([values]), GRID.n, GRID.dz)
    assert np.all(back[1:4] == 0) and back[0].max() > 0


def test_encoded_size_is_a_fraction_of_float32(rng):
    pdf, _ = _pdfs(rng, 1000)
    start, values = compact.encode(pdf)
    per_object = (values.nbytes + start.nbytes) / len(pdf)
    assert per_object < 0.25 * GRID.n * 4


def test_crps_and_pit_change_below_one_percent(rng):
    pdf, z_true = _pdfs(rng, 4000)
    back = compact.decode(*compact.encode(pdf), GRID.n, GRID.dz)
    c_full, c_back = crps(pdf, GRID, z_true).mean(), crps(back, GRID, z_true).mean()
    assert abs(c_back - c_full) / c_full < 0.01
    assert np.abs(pit(back, GRID, z_true) - pit(pdf, GRID, z_true)).max() < 0.01


@pytest.mark.parametrize("shape", [(0, GRID.n), (2, GRID.n)])
def test_empty_and_all_missing_batches(shape):
    start, values = compact.encode(np.zeros(shape, np.float32))
    assert len(values) == shape[0]
    assert compact.decode(start, values, GRID.n, GRID.dz).shape == shape


def test_the_largest_grid_keeps_a_peak_at_its_end():
    """Window starts are uint16: on a grid of more than 65,536 points (allowed before) a peak
    at index 68,000 was stored at 2,464."""
    grid = ZGrid(0.0, 3.5, 65_536)
    pdf = np.zeros((1, grid.n))
    pdf[0, -3:] = [0.5, 1.0, 0.5]
    start, values = compact.encode(pdf)
    back = compact.decode(start, values, grid.n, grid.dz)
    assert start[0] == grid.n - 3 and int(np.argmax(back[0])) == grid.n - 2


def test_a_chunked_pdf_column_decodes_chunk_by_chunk_as_one_array():
    """Joined into one array, a column of more than 2 GB of PDF bytes (~2.5e7 catalog rows)
    overflowed Arrow's 32-bit offsets; chunks are decoded one by one, slices included."""
    from raypz.predictions import decode_pdfs

    grid = ZGrid(0.0, 3.5, 351)
    rng = np.random.default_rng(3)
    mu = rng.uniform(0.2, 3.0, 40)
    pdf = normalize(np.exp(-0.5 * ((grid.values[None] - mu[:, None]) / 0.05) ** 2), grid)
    start, values = compact.encode(pdf)
    rows = values.to_pylist()
    values = pa.array([*rows[:5], None, *rows[6:]], pa.binary())
    whole = decode_pdfs(values, start, grid)
    chunked = pa.chunked_array([values.slice(0, 7), values.slice(7, 20), values.slice(27)])
    np.testing.assert_array_equal(decode_pdfs(chunked, start, grid), whole)
    assert not whole[5].any() and whole[6].any()
    lists = pa.chunked_array([pa.array(pdf[:10].tolist()), pa.array(pdf[10:].tolist())])
    np.testing.assert_allclose(decode_pdfs(lists, None, grid), pdf.astype(np.float32))


@pytest.mark.parametrize("layout", [pa.large_binary(), pa.binary_view()])
def test_other_binary_layouts_decode_as_the_catalog_s_own(rng, layout):
    """Other writers (polars, casts) store the compact bytes as large or view binary; they were
    read as float lists and failed with "could not convert string to float"."""
    from raypz.predictions import decode_pdfs

    pdf, _ = _pdfs(rng, 30)
    pdf[4] = 0.0  # a null row
    start, values = compact.encode(pdf)
    own = decode_pdfs(values, start, GRID)
    other = pa.chunked_array([values.slice(0, 11).cast(layout), values.slice(11).cast(layout)])
    assert compact.is_compact(layout) and not compact.is_compact(pa.list_(pa.float32()))
    np.testing.assert_array_equal(decode_pdfs(other, start, GRID), own)
