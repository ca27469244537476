"""The light stages of an inference run, executed in Ray workers: no torch imported here.

Ray workers import the module of every function they run; keeping these apart from the
predictor (torch) and from the job's driver code keeps each worker's start-up to pyarrow,
numpy and the HATS helpers. :mod:`raypz.infer.pipeline` composes them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz import flags as fl
from raypz import io
from raypz.catalog import (
    PartitionPlan,
    PixelHistogram,
    healpix29,
    merge_partition,
    partition_path,
    split_by_partition,
    write_fragment,
)
from raypz.catalog.write import fragment_directory
from raypz.infer import staging
from raypz.schema import ContractError
from raypz.schema.ids import MAX_IDS_PER_PASS, check_unique_ids, raise_on_repeat
from raypz.tables import open_table

ORIGIN_COLUMNS = ("node_id", "node_ip", "device")
"""Where a staged block was predicted: columns of :func:`stage_block`'s row counts, which the
driver sums per node and per device for the run summary."""


def stage_block(
    batch: pa.Table,
    sources: np.ndarray,
    root: str,
    plan: PartitionPlan,
    origin: dict[str, str],
) -> pa.Table:
    """Write a block's rows as fragments, one per (source, partition); return row counts.

    ``sources`` (N,) is each row's input-file number, which names its fragments. ``origin``
    (a value for each of :data:`ORIGIN_COLUMNS`) is repeated on every row of the counts.
    """
    norders, npixs, rows = [], [], []
    unique_sources = np.unique(sources)
    for src in unique_sources:
        # a block usually comes from one input file: no copy of its rows then
        part = batch if len(unique_sources) == 1 else batch.filter(pa.array(sources == src))
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
            **{k: pa.array([origin[k]] * len(rows), pa.string()) for k in ORIGIN_COLUMNS},
        }
    )


HISTOGRAM_READ_ROWS = 1_000_000
"""Rows of RA/Dec read at a time by :func:`histogram_file` (16 MB of float64)."""


@dataclass(frozen=True)
class FileScan:
    """What the first pass learns from one input file.

    Attributes:
        histogram: sparse HEALPix histogram of the file's valid positions.
        no_position: rows without a valid sky position (non-finite RA or Dec, or
            |Dec| > 90 deg), which cannot be placed in a partition.
        id_problem: what breaks the id rule within the file (a null objectId, or one repeated
            in the file), in words; None when nothing does or ids were not checked.
    """

    histogram: PixelHistogram
    no_position: int
    id_problem: str | None = None


def histogram_file(
    path: str,
    filesystem: pafs.FileSystem,
    ra: str,
    dec: str,
    order: int,
    id_column: str | None = None,
) -> FileScan:
    """Scan one input file: its positions' HEALPix histogram, the rows without a valid sky
    position, and, when ``id_column`` is given, its own objectIds (null or repeated). The
    driver stops the job on either problem before any prediction.

    The ids are checked when the rows were not validated (``validate="schema"``): merging takes
    a repeated (position, objectId) row for a retried block's and keeps one, so the run would
    otherwise stop only at the end, on a row count that no rerun can match. They are read in
    the same pass as the positions, unless the file holds more ids than
    :data:`~raypz.schema.ids.MAX_IDS_PER_PASS`; then the memory-bounded hashed check re-reads
    them.

    A plain task per file: through Ray Data the same pass spent ~16 s of scheduling on 1e6
    rows for 0.6 s of work.
    """
    parts = [PixelHistogram.from_healpix29(np.zeros(0, dtype=np.int64), order)]  # empty file
    bad, nulls, ids = 0, 0, []
    with open_table(filesystem, path) as table:
        rows = table.num_rows
        ids_inline = id_column is not None and rows <= MAX_IDS_PER_PASS
        columns = [ra, dec] + ([id_column] if ids_inline else [])
        for batch in table.iter_batches(columns, HISTOGRAM_READ_ROWS):
            ra_deg = batch.column(0).to_numpy(zero_copy_only=False).astype(np.float64)
            dec_deg = batch.column(1).to_numpy(zero_copy_only=False).astype(np.float64)
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(ra_deg) & np.isfinite(dec_deg) & (np.abs(dec_deg) <= 90.0)
            parts.append(PixelHistogram.from_healpix29(healpix29(ra_deg[ok], dec_deg[ok]), order))
            bad += int((~ok).sum())
            if ids_inline:
                column = batch.column(2)
                nulls += column.null_count
                if not nulls:
                    ids.append(column.to_numpy().astype(np.int64, copy=False))
    histogram = PixelHistogram.merge(parts)
    if nulls:
        return FileScan(histogram, bad, f"{nulls} null values")
    try:
        if id_column is not None and not ids_inline:
            check_unique_ids(filesystem, [path], id_column, rows)
        elif ids:
            values = np.concatenate(ids)
            raise_on_repeat([path], id_column, values, np.zeros(values.size, np.int32))
    except ContractError as err:
        return FileScan(histogram, bad, err.rule)
    return FileScan(histogram, bad)


def merge_and_mark(
    root: str,
    output: str,
    norder: int,
    npix: int,
    metadata: dict,
    id_column: str,
    zstd_level: int,
) -> tuple[dict[str, int], int, int]:
    """Merge one partition's fragments into its catalog file and record which were merged;
    returns the partition's :func:`partition_stats`, taken from the merged rows."""
    fragments = io.list_parquet_files(fragment_directory(root, norder, npix))
    flags, pdf_lengths = [], []

    def collect(rows: pa.Table) -> None:
        flags.append(rows["flags"].to_numpy())
        pdf_lengths.append(pc.binary_length(rows["pdf"]))

    path = merge_partition(root, output, norder, npix, metadata, id_column, zstd_level, collect)
    io.write_bytes_atomic(
        staging.merged_marker(root, norder, npix), json.dumps(sorted(fragments)).encode()
    )
    fs, inner = io.resolve(path)
    return _stats(
        np.concatenate(flags),
        pa.chunked_array(pdf_lengths, pa.int32()),
        fs.get_file_info(inner).size,
    )


def partition_stats(output: str, norder: int, npix: int) -> tuple[dict[str, int], int, int]:
    """Rows per named flag, encoded PDF bytes and file bytes of one partition file."""
    fs, inner = io.resolve(partition_path(output, norder, npix))
    table = pq.read_table(inner, filesystem=fs, columns=["flags", "pdf"])
    flags, lengths = table["flags"].to_numpy(), pc.binary_length(table["pdf"])
    return _stats(flags, lengths, fs.get_file_info(inner).size)


def _stats(flags: np.ndarray, pdf_lengths, file_bytes: int) -> tuple[dict[str, int], int, int]:
    """:func:`partition_stats` from a partition's flags (N,), encoded PDF lengths (N,) and
    file size."""
    pdf_bytes = int(pc.sum(pdf_lengths).as_py() or 0) + 2 * len(flags)  # + uint16 pdf_start
    return fl.count_flags(flags), pdf_bytes, file_bytes
