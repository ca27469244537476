"""Write partition files, and the staging fragments a parallel write builds them from.

Every file is serialised in memory and then published whole (:func:`raypz.io.write_bytes_atomic`:
a temporary name and a rename on local disk, one PUT on object stores), so a reader or a
restarted job never finds half a file under a final name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raypz import io
from raypz.catalog._runs import run_starts
from raypz.catalog.healpix import HEALPIX29_COLUMN, pixel_at_order
from raypz.catalog.layout import partition_path

ZSTD_LEVEL = 6
"""zstd level of partition files. hats' own writer uses 15; on a 1e6-row PDF partition level 15
took 48 s and 173 MB, level 6 6.7 s and 182 MB, level 3 2.9 s and 199 MB (one core): 6 keeps
the files within 5% of the smallest at a seventh of the CPU (which at 15 rivals inference)."""


def write_partition(
    root: str,
    norder: int,
    npix: int,
    table: pa.Table,
    metadata: Mapping[str, str] | None = None,
    zstd_level: int = ZSTD_LEVEL,
    rows: np.ndarray | None = None,
) -> str:
    """Write the rows of one HATS partition to ``root/dataset/Norder=K/Dir=D/Npix=N.parquet``.

    The file gets ``_healpix_29`` as its first column and its rows sorted by it (a stable
    sort, so ties keep their order), hats' encodings and compression, and the schema metadata
    of ``table`` updated with ``metadata`` (z grid, provenance, ...). Rows are taken from
    ``table`` one row group at a time, so no sorted copy of the whole table is held.

    Args:
        root: catalog root, a local path or a URI such as ``s3://bucket/photoz``.
        norder: HEALPix order of the partition.
        npix: nested pixel number of the partition at ``norder``.
        table: the partition's rows, with a ``_healpix_29`` int64 column.
        metadata: Parquet key-value metadata to add to the schema.
        zstd_level: compression level (see :data:`ZSTD_LEVEL`).
        rows: indices of the rows of ``table`` to write, in the order to write them (sorted by
            ``_healpix_29``, e.g. without repeated rows); None: every row.

    Returns:
        The path written.

    Raises:
        ValueError: if ``_healpix_29`` is missing or not int64, or a row lies outside pixel
            ``(norder, npix)``.
    """
    if HEALPIX29_COLUMN not in table.column_names:
        raise ValueError(f"table has no {HEALPIX29_COLUMN!r} column; add it with with_healpix29")
    if table.schema.field(HEALPIX29_COLUMN).type != pa.int64():
        raise ValueError(f"{HEALPIX29_COLUMN!r} must be int64 (hats reads it as such)")
    index = table[HEALPIX29_COLUMN].to_numpy()
    outside = pixel_at_order(index, norder) != npix
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} of {table.num_rows} rows lie outside partition "
            f"Norder={norder}, Npix={npix}"
        )
    names = [HEALPIX29_COLUMN] + [n for n in table.column_names if n != HEALPIX29_COLUMN]
    table = _with_metadata(table.select(names), metadata)
    if rows is None:
        rows = np.argsort(index, kind="stable")
    else:
        rows = np.asarray(rows, dtype=np.int64)  # sort_indices gives uint64
        if (np.diff(index[rows]) < 0).any():
            raise ValueError("rows must list the table's rows in _healpix_29 order")
    from hats.io.file_io.file_io import get_parquet_write_table_kwargs  # slow import: here only

    kwargs = {**get_parquet_write_table_kwargs(table.schema), "compression_level": zstd_level}
    group = kwargs.pop("row_group_size", PARTITION_ROW_GROUP)
    source = _RowTaker(table)
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, sorting_columns=[pq.SortingColumn(0)], **kwargs) as w:
        for lo in range(0, max(len(rows), 1), group):
            w.write_table(source.take(rows[lo : lo + group]), row_group_size=group)
    path = partition_path(root, norder, npix)
    io.write_bytes_atomic(path, sink.getvalue())
    return path


class _RowTaker:
    """Rows of a table by index, taken chunk by chunk.

    Arrow's ``take`` on a table of many chunks (one per staged fragment) first concatenates
    every chunk of a binary column: for the PDF column of a 1e6-row partition that was a
    0.7 GB copy and 1.7 s per row group. Taking from each chunk and reordering the small
    result costs one row group.
    """

    def __init__(self, table: pa.Table) -> None:
        self.schema = table.schema
        self.batches = table.to_batches()  # zero-copy views of the chunks
        self.starts = np.cumsum([0] + [b.num_rows for b in self.batches])

    def take(self, rows: np.ndarray) -> pa.Table:
        """The rows ``rows`` (global indices), in that order."""
        which = np.searchsorted(self.starts, rows, side="right") - 1  # each row's chunk
        by_batch = np.argsort(which, kind="stable")  # rows grouped by chunk: ``grouped``
        chunk = which[by_batch]
        local = rows[by_batch] - self.starts[chunk]
        cuts = np.flatnonzero(np.diff(chunk)) + 1
        pieces = [
            self.batches[int(chunk[lo])].take(pa.array(part))
            for lo, part in zip(np.r_[0, cuts], np.split(local, cuts), strict=True)
            if len(part)
        ]
        grouped = pa.Table.from_batches(pieces, self.schema).combine_chunks()
        inverse = np.empty_like(by_batch)
        inverse[by_batch] = np.arange(len(by_batch))
        return grouped.take(pa.array(inverse))


PARTITION_ROW_GROUP = 100_000
"""Rows per row group of a partition file when hats' write settings do not say."""


FRAGMENT_WRITE_OPTIONS: dict[str, object] = {"compression": "lz4", "use_dictionary": False}
"""Parquet settings of staging fragments: lz4 and no dictionaries (the PDF bytes are unique per
row, so building a dictionary of them is wasted work; 1.6x faster writes than the defaults)."""


def fragment_directory(staging_root: str, norder: int, npix: int) -> str:
    """Directory of the staging fragments of partition ``(norder, npix)``."""
    return io.join(staging_root, f"Norder={int(norder)}", f"Npix={int(npix)}")


def write_fragment(
    staging_root: str, norder: int, npix: int, fragment_id: str, table: pa.Table
) -> str:
    """Stage the rows of one block that belong to partition ``(norder, npix)``.

    Fragments are temporary: written fast (:data:`FRAGMENT_WRITE_OPTIONS`), merged by
    :func:`merge_partition`.
    Writing the same ``fragment_id`` again replaces the fragment.

    Returns:
        The path written.
    """
    if not fragment_id or "/" in fragment_id or fragment_id.startswith((".", "_")):
        raise ValueError(f"fragment_id must be a plain file stem, got {fragment_id!r}")
    path = io.join(fragment_directory(staging_root, norder, npix), f"{fragment_id}.parquet")
    io.write_bytes_atomic(path, _parquet_bytes(table, **FRAGMENT_WRITE_OPTIONS))
    return path


class MergedPartition(NamedTuple):
    """What :func:`merge_partition` merged: ``table``, the staged rows in staging order, and
    ``rows``, the indices of those written, in the file's order."""

    table: pa.Table
    rows: np.ndarray


def merge_partition(
    staging_root: str,
    root: str,
    norder: int,
    npix: int,
    metadata: Mapping[str, str] | None = None,
    unique_column: str | None = None,
    zstd_level: int = ZSTD_LEVEL,
) -> MergedPartition:
    """Merge the staged fragments of one partition into its partition file.

    With ``unique_column`` (e.g. ``objectId``, unique by the input contract) rows are sorted
    by ``(_healpix_29, unique_column)`` and repeated rows (same position and id) are written
    once: a block retried after a killed worker may have staged its rows twice, under another
    fragment id. Running the merge again rewrites the same file, so it is safe to retry.
    ``zstd_level`` is passed to :func:`write_partition`.

    Returns:
        The staged rows and which of them were written (e.g. for statistics, without reading
        the file back).

    Raises:
        FileNotFoundError: if no fragment was staged for the partition.
    """
    directory = fragment_directory(staging_root, norder, npix)
    fs, _ = io.resolve(directory)
    table = pa.concat_tables(
        [pq.read_table(f, filesystem=fs) for f in io.list_parquet_files(directory)]
    )
    rows = None
    if unique_column is not None:
        keys = [(HEALPIX29_COLUMN, "ascending"), (unique_column, "ascending")]
        rows = pc.sort_indices(table, sort_keys=keys).to_numpy()
        if len(rows):
            index = table[HEALPIX29_COLUMN].to_numpy()[rows]
            rows = rows[run_starts(index, table[unique_column].to_numpy()[rows])]
    write_partition(root, norder, npix, table, metadata, zstd_level, rows)
    return MergedPartition(table, np.arange(table.num_rows) if rows is None else rows)


def _with_metadata(table: pa.Table, metadata: Mapping[str, str] | None) -> pa.Table:
    if not metadata:
        return table
    merged = dict(table.schema.metadata or {})
    merged.update({k.encode(): v.encode() for k, v in metadata.items()})
    return table.replace_schema_metadata(merged)


def _parquet_bytes(table: pa.Table, **write_kwargs: object) -> pa.Buffer:
    """The Parquet file of ``table`` in memory (an Arrow buffer: no copy into Python bytes)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **write_kwargs)
    return sink.getvalue()
