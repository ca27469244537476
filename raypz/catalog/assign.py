"""Send rows to their planned partition, vectorised over a block of rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raypz.catalog._runs import run_starts
from raypz.catalog.healpix import HEALPIX29_COLUMN
from raypz.catalog.plan import PartitionPlan


def partition_index(healpix29_index: np.ndarray, plan: PartitionPlan) -> np.ndarray:
    """Index into ``plan`` of the partition holding each row, from its ``_healpix_29`` value.

    Partitions are disjoint ``_healpix_29`` ranges sorted by start, so one binary search per
    row finds its partition whatever the partitions' orders.

    Raises:
        ValueError: if a row lies in no partition: the plan was not made from these rows.
    """
    index = np.asarray(healpix29_index, dtype=np.int64)
    starts, ends = plan.healpix29_ranges()
    found = np.searchsorted(starts, index, side="right") - 1
    outside = (found < 0) | (index >= ends[np.maximum(found, 0)])
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} rows (first _healpix_29={int(index[outside][0])}) lie outside "
            "every planned partition: plan from a histogram of the same rows"
        )
    return found


def assign_partitions(
    healpix29_index: np.ndarray, plan: PartitionPlan
) -> tuple[np.ndarray, np.ndarray]:
    """``(norder, npix)`` int64 arrays: the HATS partition of each row."""
    found = partition_index(healpix29_index, plan)
    return plan.norder[found], plan.npix[found]


def split_by_partition(table: pa.Table, plan: PartitionPlan) -> list[tuple[int, int, pa.Table]]:
    """Split a block of rows into ``(norder, npix, rows)``, one entry per partition it touches.

    ``table`` must carry the ``_healpix_29`` column (see :func:`with_healpix29`). Rows keep
    their relative order within each piece.
    """
    if HEALPIX29_COLUMN not in table.column_names:
        raise ValueError(f"table has no {HEALPIX29_COLUMN!r} column; add it with with_healpix29")
    if table.num_rows == 0:
        return []
    found = partition_index(table[HEALPIX29_COLUMN].to_numpy(), plan)
    if np.all(found[1:] >= found[:-1]):  # e.g. all in one partition: no copy of the rows
        grouped = table
    else:
        by_partition = np.argsort(found, kind="stable")
        grouped = table.take(pa.array(by_partition))
        found = found[by_partition]
    starts = run_starts(found)
    stops = np.append(starts[1:], len(found))
    return [
        (int(plan.norder[found[a]]), int(plan.npix[found[a]]), grouped.slice(a, b - a))
        for a, b in zip(starts, stops, strict=True)
    ]
