"""The output of ``jobs/nz.py``: ``nz.parquet`` (n(z) per tomographic bin), ``nz.png`` and the
printed summary.

``nz.parquet`` holds one row per bin:

========  ===============================  ==================================================
column    type                             meaning
========  ===============================  ==================================================
bin       int32                            bin number, 0 .. B-1
z_lo      float64                          lower edge, in the point estimate (inclusive)
z_hi      float64                          upper edge (exclusive)
count     int64                            catalog rows with a PDF in the bin
mean_z    float64                          mean redshift of the bin's n(z) (NaN if empty)
nz        fixed_size_list<float64>[G]      n(z) on the z grid, per unit z, integrating to 1
                                           (trapezoid rule; all zero if the bin is empty)
========  ===============================  ==================================================

Schema metadata: ``raypz.z_grid`` (the grid as JSON, as in the PDF catalog) and ``raypz.nz``
(JSON: catalog, point_estimate, edges, rows, no_pdf, outside, partitions, raypz version).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import raypz
from raypz import io
from raypz.metrics.catalog_nz import CatalogNZ
from raypz.metrics.nz import mean_z
from raypz.pdf import ZGrid
from raypz.plots import plot_nz_stacks
from raypz.predictions import grid_from_metadata, grid_metadata

NZ_KEY = b"raypz.nz"
"""Schema-metadata key of the run's description (JSON) in ``nz.parquet``."""


def nz_table(result: CatalogNZ) -> pa.Table:
    """The ``nz.parquet`` table of a result (schema in the module docstring)."""
    totals, grid = result.totals, result.grid
    n_bins = totals.counts.size
    table = pa.table(
        {
            "bin": pa.array(np.arange(n_bins, dtype=np.int32)),
            "z_lo": pa.array(result.edges[:-1]),
            "z_hi": pa.array(result.edges[1:]),
            "count": pa.array(totals.counts.astype(np.int64)),
            "mean_z": pa.array(mean_z(grid, result.stack)),
            "nz": pa.FixedSizeListArray.from_arrays(pa.array(result.stack.ravel()), grid.n),
        }
    )
    run = {
        "catalog": result.catalog,
        "point_estimate": result.point_estimate,
        "edges": result.edges.tolist(),
        "rows": totals.rows,
        "no_pdf": totals.no_pdf,
        "outside": totals.outside,
        "partitions": result.partitions,
        "raypz_version": raypz.__version__,
    }
    return table.replace_schema_metadata({**grid_metadata(grid), NZ_KEY: json.dumps(run)})


def write_nz(result: CatalogNZ, output: str) -> tuple[str, str]:
    """Write ``output/nz.parquet`` and ``output/nz.png`` (local or s3://); their paths."""
    table_path, plot_path = io.join(output, "nz.parquet"), io.join(output, "nz.png")
    io.write_parquet(nz_table(result), table_path)
    title = f"n(z) per bin of z_{result.point_estimate} ({result.totals.counts.sum():,} objects)"
    plot_nz_stacks(result.grid, result.stack, result.edges, result.totals.counts, plot_path, title)
    return table_path, plot_path


def read_nz(path: str) -> tuple[ZGrid, pa.Table, dict]:
    """An ``nz.parquet`` read back: its z grid, its table and the run's description."""
    fs, inner = io.resolve(path)
    table = pq.read_table(inner, filesystem=fs)
    meta = table.schema.metadata
    return grid_from_metadata(meta, path), table, json.loads(meta[NZ_KEY])


def summary_rows(result: CatalogNZ) -> list[tuple[str, object]]:
    """Name/value rows of the job's closing table: the tallies, then each bin's count and
    mean redshift."""
    t = result.totals
    rows: list[tuple[str, object]] = [
        ("rows", f"{t.rows:,} in {result.partitions} partitions"),
        ("no PDF (left out)", f"{t.no_pdf:,}"),
        (f"z_{result.point_estimate} outside the bins", f"{t.outside:,}"),
    ]
    means = mean_z(result.grid, result.stack)
    for b, n in enumerate(t.counts):
        name = f"bin {result.edges[b]:g}-{result.edges[b + 1]:g}"
        rows.append((name, f"{n:,} objects, mean z {means[b]:.3f}" if n else "empty"))
    rows.append(("time", f"{result.seconds:.1f} s"))
    return rows
