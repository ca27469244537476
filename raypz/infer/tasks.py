"""The light stages of an inference run, executed in Ray workers: no torch imported here.

Ray workers import the module of every function they run; keeping these apart from the
predictor (torch) and from the job's driver code keeps each worker's start-up to pyarrow,
numpy and the HATS helpers. :mod:`raypz.infer.pipeline` composes them.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raypz import flags as fl
from raypz import io
from raypz.catalog import (
    PixelHistogram,
    healpix29,
    merge_partition,
    partition_path,
    split_by_partition,
    write_fragment,
)
from raypz.catalog.write import fragment_directory
from raypz.infer import staging

PATH_COLUMN = "path"
"""Column Ray Data adds with ``include_paths=True``: the input file of each row."""

SOURCE_COLUMN = "_src"
"""Column carrying each row's input-file number from the predict stage to the stage task."""


def stage_block(batch: pa.Table, root: str, plan) -> pa.Table:
    """Write a block's rows as fragments, one per (source, partition); return row counts."""
    norders, npixs, rows = [], [], []
    sources = batch[SOURCE_COLUMN].to_numpy()
    for src in np.unique(sources):
        part = batch.filter(pa.array(sources == src)).drop_columns([SOURCE_COLUMN])
        unique = uuid.uuid4().hex[:12]
        for norder, npix, piece in split_by_partition(part, plan):
            write_fragment(root, norder, npix, staging.fragment_id(int(src), unique), piece)
            norders.append(norder)
            npixs.append(npix)
            rows.append(piece.num_rows)
    return pa.table(
        {
            "norder": pa.array(norders, pa.int64()),
            "npix": pa.array(npixs, pa.int64()),
            "rows": pa.array(rows, pa.int64()),
        }
    )


NO_POSITION = -1
"""Pixel value under which :func:`histogram_block` reports rows without a valid sky position."""


def histogram_block(batch: pa.Table, ra: str, dec: str, order: int) -> pa.Table:
    """Sparse HEALPix histogram of a block's positions as a table (pixel, count, file).

    Rows without a valid sky position (non-finite RA or Dec, or |Dec| > 90 deg) cannot be
    placed in a partition; they are counted per input file under pixel :data:`NO_POSITION`
    (``file`` names it) so the driver can stop the job before any prediction.
    """
    ra_deg = batch[ra].to_numpy(zero_copy_only=False).astype(np.float64)
    dec_deg = batch[dec].to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(ra_deg) & np.isfinite(dec_deg) & (np.abs(dec_deg) <= 90.0)
    h = PixelHistogram.from_healpix29(healpix29(ra_deg[ok], dec_deg[ok]), order)
    pixels, counts, files = list(h.pixels), list(h.counts), [None] * len(h.pixels)
    if not ok.all():
        bad_files = pc.value_counts(batch[PATH_COLUMN].filter(pa.array(~ok))).to_pylist()
        for entry in bad_files:
            pixels.append(NO_POSITION)
            counts.append(entry["counts"])
            files.append(entry["values"])
    return pa.table(
        {
            "pixel": pa.array(pixels, pa.int64()),
            "count": pa.array(counts, pa.int64()),
            "file": pa.array(files, pa.string()),
        }
    )


def merge_and_mark(
    root: str,
    output: str,
    norder: int,
    npix: int,
    metadata: dict,
    id_column: str,
    zstd_level: int,
) -> int:
    """Merge one partition's fragments into its catalog file and record which were merged."""
    fragments = io.list_parquet_files(fragment_directory(root, norder, npix))
    rows = merge_partition(root, output, norder, npix, metadata, id_column, zstd_level)
    io.write_bytes_atomic(
        staging.merged_marker(root, norder, npix), json.dumps(sorted(fragments)).encode()
    )
    return rows


def partition_stats(output: str, norder: int, npix: int) -> tuple[dict[str, int], int, int]:
    """Rows per named flag, encoded PDF bytes and file bytes of one partition file."""
    path = partition_path(output, norder, npix)
    fs, inner = io.resolve(path)
    table = pq.read_table(inner, filesystem=fs, columns=["flags", "pdf"])
    flagged = fl.count_flags(table["flags"].to_numpy())
    pdf_bytes = int(pc.sum(pc.binary_length(table["pdf"])).as_py() or 0) + 2 * table.num_rows
    return flagged, pdf_bytes, fs.get_file_info(inner).size
