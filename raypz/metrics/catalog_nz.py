"""n(z) of a whole PDF catalog: its PDFs stacked per tomographic bin, partition by partition.

The definitions are :mod:`raypz.metrics.nz`'s (DESIGN 8): a row belongs to the bin
``edges[b] <= z_phot < edges[b+1]`` of its point estimate (``z_mode`` by default); a bin's
n(z) is the mean of its rows' PDFs (each normalised on the catalog's z grid), i.e. their sum
normalised, as :func:`raypz.metrics.nz.nz_stacks` computes it. Rows without a PDF (flagged
``NO_PDF``, or a null ``pdf``) are left out and counted, as are rows whose point estimate lies
outside the edges or is missing.

How it runs: ``lsdb.open_catalog(columns=[z_phot, flags, pdf_start, pdf])`` and
``Catalog.to_delayed()``: one dask task per HATS partition file reads its rows, and
:func:`partition_sums`, delayed on each, decodes the compact PDFs (:mod:`raypz.compact`,
``DECODE_ROWS`` rows at a time) and reduces them to :class:`NZSums`: (B, G) float64 sums and
counts, a few kB. A tree of :func:`merge_sums` tasks (``split_every`` inputs each) brings these
to one on the driver. At no point does one process hold more than the partitions its workers
are reducing, so memory does not grow with the catalog. ``to_delayed`` rather than
``Catalog.map_partitions``: the per-partition result is a pair of arrays, not a data frame with
a declared ``meta`` that dask would concatenate; lsdb keeps ``pdf`` as Arrow binary, so the
bytes reach :mod:`raypz.compact` without a per-row copy.

The graph runs on a local dask scheduler (threads by default) or on a Ray cluster through
Dask-on-Ray (``ray.util.dask.ray_dask_get``), where each partition is a Ray task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raypz import flags as fl
from raypz import io
from raypz.metrics.binning import bin_index
from raypz.metrics.nz import TOMO_EDGES
from raypz.pdf import ZGrid, normalize, require_point_estimate
from raypz.predictions import (
    Z_GRID_KEY,
    decode_pdfs,
    grid_from_metadata,
    open_catalog,
    require_finished,
)
from raypz.schema import RefusedError

if TYPE_CHECKING:
    import pandas as pd

DECODE_ROWS = 65_536
"""Rows decoded at once inside a partition: (DECODE_ROWS, G) float32, 92 MB at G = 351, so a
1e6-row partition never holds its PDFs decoded all at once."""

Scheduler = Literal["threads", "processes", "synchronous", "ray"]


@dataclass(frozen=True)
class NZConfig:
    """How to stack a PDF catalog's n(z).

    Attributes:
        edges: tomographic bin edges in the point estimate (redshift), increasing; B + 1 of
            them make B bins.
        point_estimate: the point estimate rows are binned on: the catalog column
            ``z_<point_estimate>`` ("mode" is DESIGN 8's z_phot; "median", "mean" or "best").
        scheduler: where the dask graph runs: "threads" (a local thread pool), "processes"
            (a local process pool), "synchronous" (one thread, for debugging) or "ray" (Dask-on-Ray
            on the cluster named by RAY_ADDRESS, else a local Ray).
        workers: threads or processes of a local scheduler; None: one per core.
        split_every: partial sums merged by one task of the tree reduction.
    """

    edges: tuple[float, ...] = TOMO_EDGES
    point_estimate: str = "mode"
    scheduler: Scheduler = "threads"
    workers: int | None = None
    split_every: int = 16

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges, dtype=np.float64)
        if edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.isfinite(edges).all():
            raise ValueError(f"edges must be >= 2 finite increasing values, got {self.edges}")
        if self.split_every < 2:
            raise ValueError(f"split_every must be >= 2, got {self.split_every}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.workers is not None and self.scheduler in ("ray", "synchronous"):
            raise ValueError(
                f"workers sets the threads or processes scheduler's pool; the {self.scheduler} "
                "scheduler has none (Ray's CPUs: --num-cpus)"
            )
        require_point_estimate(self.point_estimate, "NZConfig.point_estimate")

    @property
    def column(self) -> str:
        """The catalog column of the point estimate."""
        return f"z_{self.point_estimate}"


@dataclass(frozen=True)
class NZSums:
    """Per-bin sums of PDFs over some rows; sums of disjoint rows add up (:func:`merge_sums`).

    Attributes:
        sums: (B, G) float64 sum of the normalised PDFs of each bin's rows (per unit z).
        counts: (B,) int64 rows in each bin.
        rows: rows read.
        no_pdf: rows without a PDF (flag NO_PDF or null ``pdf``), left out.
        outside: rows with a PDF whose point estimate is outside the edges or missing, left out.
    """

    sums: np.ndarray
    counts: np.ndarray
    rows: int = 0
    no_pdf: int = 0
    outside: int = 0

    @classmethod
    def zeros(cls, n_bins: int, n_grid: int) -> NZSums:
        """Sums over no rows."""
        return cls(np.zeros((n_bins, n_grid)), np.zeros(n_bins, dtype=np.int64))


def merge_sums(*parts: NZSums) -> NZSums:
    """The sums over the rows of all ``parts`` (one step of the tree reduction)."""
    return NZSums(
        sums=np.sum([p.sums for p in parts], axis=0),
        counts=np.sum([p.counts for p in parts], axis=0),
        rows=sum(p.rows for p in parts),
        no_pdf=sum(p.no_pdf for p in parts),
        outside=sum(p.outside for p in parts),
    )


def partition_sums(
    frame: pd.DataFrame, column: str, edges: tuple[float, ...], grid: ZGrid
) -> NZSums:
    """:class:`NZSums` of one partition's rows (a data frame from lsdb with ``column``,
    ``flags``, ``pdf`` and, for compact PDFs, ``pdf_start``; Arrow-backed or not)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    n_bins = len(edges) - 1
    has_pdf = table["pdf"].is_valid().to_numpy(zero_copy_only=False)
    has_pdf &= (table["flags"].to_numpy() & fl.NO_PDF) == 0
    z_phot = pc.fill_null(table[column].cast(pa.float64()), np.nan).to_numpy()
    idx = np.where(has_pdf, bin_index(z_phot, edges), -1)
    keep = idx >= 0
    out = NZSums.zeros(n_bins, grid.n)
    rows = table.filter(pa.array(keep))
    idx = idx[keep]
    for lo in range(0, rows.num_rows, DECODE_ROWS):
        chunk = rows.slice(lo, DECODE_ROWS)
        start = chunk["pdf_start"] if "pdf_start" in chunk.column_names else None
        pdf = normalize(decode_pdfs(chunk["pdf"], start, grid), grid)  # one object, weight 1
        chunk_idx = idx[lo : lo + DECODE_ROWS]
        for b in np.unique(chunk_idx):
            out.sums[b] += pdf[chunk_idx == b].sum(axis=0)
    counts = np.bincount(idx, minlength=n_bins).astype(np.int64)
    no_pdf = int((~has_pdf).sum())
    outside = table.num_rows - no_pdf - int(keep.sum())
    return NZSums(out.sums, counts, table.num_rows, no_pdf, outside)


@dataclass(frozen=True)
class CatalogNZ:
    """The n(z) of a catalog's tomographic bins.

    Attributes:
        grid: the catalog's z grid.
        edges: (B+1,) bin edges in the point estimate.
        point_estimate: what rows were binned on ("mode", ...: column ``z_<it>``).
        totals: the sums, counts and row tallies over the whole catalog.
        partitions: HATS partitions read.
        seconds: wall time of the reduction.
        catalog: the catalog's path.
        stack: (B, G) n(z) of each bin, integrating to 1 over the grid (all zero if empty).
    """

    grid: ZGrid
    edges: np.ndarray
    point_estimate: str
    totals: NZSums
    partitions: int
    seconds: float
    catalog: str = ""
    stack: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stack", normalize(self.totals.sums, self.grid))


def catalog_grid(path: str) -> tuple[ZGrid, pa.Schema]:
    """The z grid and Arrow schema of the HATS PDF catalog at ``path`` (from
    ``dataset/_common_metadata``, which :func:`raypz.catalog.finalize_catalog` writes)."""
    if io.is_file(path):
        raise RefusedError(f"{path}: a file; give the root directory of a PDF catalog")
    require_finished(path)  # an unfinished inference run says so
    fs, inner = io.resolve(io.join(path, "dataset", "_common_metadata"))
    try:
        schema = pq.read_schema(inner, filesystem=fs)
    except FileNotFoundError as err:
        raise RefusedError(
            f"{path}: not a HATS catalog written by jobs/infer_lsst.py (no "
            "dataset/_common_metadata); give the catalog root"
        ) from err
    if Z_GRID_KEY not in (schema.metadata or {}) or "pdf" not in schema.names:
        raise RefusedError(f"{path}: not a raypz PDF catalog (no pdf column or z grid)")
    return grid_from_metadata(schema.metadata, path), schema


def catalog_nz(path: str, config: NZConfig | None = None) -> CatalogNZ:
    """Stack the PDFs of the HATS PDF catalog at ``path`` (local or s3://) per tomographic bin
    (``config``: default :class:`NZConfig`). With the "ray" scheduler, Ray must be initialised
    (:func:`raypz.ray_runtime.init_ray`).

    Raises:
        ValueError: if the catalog has no PDFs, z grid or ``z_<point_estimate>`` column.
    """
    import dask

    config = config or NZConfig()
    grid, schema = catalog_grid(path)
    if config.column not in schema.names:
        raise ValueError(f"{path}: no {config.column!r} column to bin on")
    wanted = [config.column, "flags", "pdf", *({"pdf_start"} & set(schema.names))]
    catalog = open_catalog(path, columns=wanted)
    part = dask.delayed(partition_sums, pure=True)
    level = [part(frame, config.column, config.edges, grid) for frame in catalog.to_delayed()]
    partitions = len(level)
    merge = dask.delayed(merge_sums, pure=True)
    while len(level) > 1:
        k = config.split_every
        level = [merge(*level[i : i + k]) for i in range(0, len(level), k)]
    t0 = time.perf_counter()
    (totals,) = dask.compute(level[0], **_scheduler_options(config))
    return CatalogNZ(
        grid=grid,
        edges=np.asarray(config.edges, dtype=np.float64),
        point_estimate=config.point_estimate,
        totals=totals,
        partitions=partitions,
        seconds=time.perf_counter() - t0,
        catalog=path,
    )


def _scheduler_options(config: NZConfig) -> dict:
    """``dask.compute`` keywords of the configured scheduler (Ray must be initialised)."""
    if config.scheduler == "ray":
        from ray.util.dask import ray_dask_get

        return {"scheduler": ray_dask_get}
    options: dict = {"scheduler": config.scheduler}
    if config.workers is not None and config.scheduler != "synchronous":
        options["num_workers"] = config.workers
    return options
