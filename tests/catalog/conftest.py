"""Rows on a small sky patch, and the staged parallel write run in-process (tests/catalog)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from raypz import io
from raypz.catalog import (
    CatalogSummary,
    PartitionPlan,
    PixelHistogram,
    finalize_catalog,
    healpix29,
    merge_partition,
    plan_partitions,
    split_by_partition,
    with_healpix29,
    write_fragment,
)

N_ROWS = 3000
PDF_BINS = 5
METADATA = {"raypz.z_grid": "0.0 0.5 1.0 1.5 2.0", "raypz.model": "test-model"}


@pytest.fixture(scope="module")
def catalog_metadata() -> dict[str, str]:
    """The Parquet key-value metadata the test catalogs carry (z grid, model id)."""
    return dict(METADATA)


@pytest.fixture(scope="module")
def patch_rows() -> pa.Table:
    """Rows across RA = 0 (the wrap) with a dense clump, so partitions come at several orders.

    Columns: objectId (int64), coord_ra/coord_dec (degrees), z_mode (float32) and pdf
    (fixed-size list of float32).
    """
    rng = np.random.default_rng(2024)
    n_clump = N_ROWS // 3
    ra = np.concatenate([rng.uniform(-3.0, 3.0, N_ROWS - n_clump), rng.normal(1.0, 0.05, n_clump)])
    dec = np.concatenate([rng.uniform(-2.0, 2.0, N_ROWS - n_clump), rng.normal(0.5, 0.05, n_clump)])
    pdf = rng.dirichlet(np.ones(PDF_BINS), N_ROWS).astype(np.float32)
    return pa.table(
        {
            "objectId": rng.permutation(N_ROWS).astype(np.int64) + 10_000,
            "coord_ra": np.mod(ra, 360.0),
            "coord_dec": dec,
            "z_mode": rng.uniform(0, 2, N_ROWS).astype(np.float32),
            "pdf": pa.FixedSizeListArray.from_arrays(pa.array(pdf.ravel()), PDF_BINS),
        }
    )


WriteCatalog = Callable[[pa.Table, str], tuple[PartitionPlan, CatalogSummary]]


@pytest.fixture(scope="module")
def write_catalog() -> WriteCatalog:
    """Run the four steps of raypz.catalog's docstring in-process, as Ray tasks would.

    The rows arrive in three blocks; the middle block is staged twice, as a retried task
    would, under another fragment id: the merge must write its rows once.
    """

    def run(rows: pa.Table, root: str) -> tuple[PartitionPlan, CatalogSummary]:
        third = rows.num_rows // 3
        blocks = [rows.slice(0, third), rows.slice(third, third), rows.slice(2 * third)]
        histograms = [
            PixelHistogram.from_healpix29(healpix29(b["coord_ra"], b["coord_dec"]), order=10)
            for b in blocks
        ]
        plan = plan_partitions(PixelHistogram.merge(histograms), max_rows_per_partition=400)
        staging = io.join(root, "_staging")
        attempts = [("block-0", blocks[0]), ("block-1", blocks[1]), ("block-1-retry", blocks[1])]
        for fragment_id, block in [*attempts, ("block-2", blocks[2])]:
            tagged = with_healpix29(block, "coord_ra", "coord_dec")
            for norder, npix, piece in split_by_partition(tagged, plan):
                write_fragment(staging, norder, npix, fragment_id, piece)
        for norder, npix in plan.pixels():
            merge_partition(staging, root, norder, npix, METADATA, unique_column="objectId")
        summary = finalize_catalog(
            root, "photoz_test", "coord_ra", "coord_dec", {"obs_description": "test"}, plan=plan
        )
        return plan, summary

    return run
