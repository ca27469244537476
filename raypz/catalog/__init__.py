"""HEALPix indexing and the HATS layout of the PDF catalog (DESIGN 3.3).

The pieces are plain functions on numpy arrays and Arrow tables, free of Ray, so each runs
in-process on one file in the tests. The inference pipeline composes them into a parallel,
streaming write in four steps; memory stays bounded by one block (steps 1-2) or by one
partition of at most ``max_rows_per_partition`` rows (step 3), never by the catalog:

1. **Histogram** (cheap first pass over ``coord_ra``/``coord_dec`` only): per input file,
   ``PixelHistogram.from_healpix29(healpix29(ra, dec), order=10)``; on the driver
   ``PixelHistogram.merge(...)`` sums the small sparse per-file histograms.
2. **Plan** on the driver: ``plan = plan_partitions(histogram, max_rows_per_partition)``,
   deterministic from the histogram, so a restarted job plans the same partitions.
3. **Stage** (the inference pass): each output block goes through
   ``with_healpix29(block, ra_col, dec_col)`` and ``split_by_partition(block, plan)``, and
   each piece is written with ``write_fragment(staging_root, norder, npix, fragment_id,
   piece)`` (``staging_root`` outside ``root/dataset``, e.g. ``root/_staging``). Tasks write
   concurrently and never share a file; no shuffle moves rows between workers.
4. **Merge and commit**: one task per planned partition runs ``merge_partition(staging_root,
   root, norder, npix, metadata, unique_column="objectId")``, which sorts by ``_healpix_29``,
   drops rows staged twice by a retried block, and writes ``Npix=N.parquet`` atomically.
   Then the driver calls ``finalize_catalog(root, name, "coord_ra", "coord_dec",
   plan=plan)``, which checks every planned partition holds its planned rows and writes
   ``partition_info.csv``, ``dataset/_metadata``, ``dataset/_common_metadata``,
   ``skymap.fits`` and, last, ``properties``; the staging directory can then be deleted.

A killed step-3 task only leaves whole fragments (each is published atomically), and its
retry's rows are deduplicated in step 4; step 4 rewrites the same files when re-run; a catalog
without ``properties`` is not openable. So a failed run leaves complete partitions or none.

Example (in-process, on seeded synthetic rows)::

    >>> import numpy as np, pyarrow as pa
    >>> rng = np.random.default_rng(0)
    >>> rows = pa.table({"objectId": np.arange(1000), "coord_ra": rng.uniform(10, 12, 1000),
    ...                  "coord_dec": rng.uniform(-1, 1, 1000)})
    >>> rows = with_healpix29(rows, "coord_ra", "coord_dec")
    >>> hist = PixelHistogram.from_healpix29(rows["_healpix_29"].to_numpy(), order=10)
    >>> plan = plan_partitions(hist, max_rows_per_partition=300)
    >>> int(plan.nrows.max()) <= 300, int(plan.nrows.sum())
    (True, 1000)
"""

from raypz.catalog.assign import assign_partitions, partition_index, split_by_partition
from raypz.catalog.finalize import CatalogSummary, finalize_catalog
from raypz.catalog.healpix import (
    HEALPIX29_COLUMN,
    HEALPIX29_ORDER,
    PixelHistogram,
    healpix29,
    pixel_at_order,
    with_healpix29,
)
from raypz.catalog.layout import parse_partition_path, partition_path
from raypz.catalog.plan import PartitionPlan, plan_partitions
from raypz.catalog.write import (
    fragment_directory,
    merge_partition,
    write_fragment,
    write_partition,
)

__all__ = [
    "HEALPIX29_COLUMN",
    "HEALPIX29_ORDER",
    "CatalogSummary",
    "PartitionPlan",
    "PixelHistogram",
    "assign_partitions",
    "finalize_catalog",
    "fragment_directory",
    "healpix29",
    "merge_partition",
    "parse_partition_path",
    "partition_index",
    "partition_path",
    "pixel_at_order",
    "plan_partitions",
    "split_by_partition",
    "with_healpix29",
    "write_fragment",
    "write_partition",
]
