"""Write partition files, and the staging fragments a parallel write builds them from.

Every file is published whole (:func:`raypz.io.atomic_output`: streamed to a temporary name and
renamed on local disk, one PUT on object stores), so a reader or a restarted job never finds
half a file under a final name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
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
    _check_inside(index, norder, npix)
    table = _with_metadata(_index_first(table), metadata)
    rows = np.argsort(index, kind="stable")
    source = _RowTaker(table)
    with _partition_file(root, norder, npix, table.schema, zstd_level) as (writer, group):
        for lo in range(0, max(len(rows), 1), group):
            writer.write_table(source.take(rows[lo : lo + group]), row_group_size=group)
    return partition_path(root, norder, npix)


def _check_inside(index: np.ndarray, norder: int, npix: int) -> None:
    """Raise ValueError if a ``_healpix_29`` value lies outside pixel ``(norder, npix)``."""
    outside = pixel_at_order(index, norder) != npix
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} of {len(index)} rows lie outside partition "
            f"Norder={norder}, Npix={npix}"
        )


def _index_first(table: pa.Table) -> pa.Table:
    """``table`` with ``_healpix_29`` as its first column."""
    names = [HEALPIX29_COLUMN] + [n for n in table.column_names if n != HEALPIX29_COLUMN]
    return table.select(names)


@contextmanager
def _partition_file(
    root: str, norder: int, npix: int, schema: pa.Schema, zstd_level: int
) -> Iterator[tuple[pq.ParquetWriter, int]]:
    """A Parquet writer for partition ``(norder, npix)`` with hats' encodings and the given
    zstd level, and the rows per row group to write at a time. The file appears whole when
    the block ends (:func:`raypz.io.atomic_output`), and not at all after an error."""
    from hats.io.file_io.file_io import get_parquet_write_table_kwargs  # slow import: here only

    kwargs = {**get_parquet_write_table_kwargs(schema), "compression_level": zstd_level}
    group_rows = kwargs.pop("row_group_size", PARTITION_ROW_GROUP)
    sorting = [pq.SortingColumn(0)]
    with (
        io.atomic_output(partition_path(root, norder, npix)) as sink,
        pq.ParquetWriter(sink, schema, sorting_columns=sorting, **kwargs) as writer,
    ):
        yield writer, group_rows


class _RowTaker:
    """Rows of a table by index, taken chunk by chunk.

    Arrow's ``take`` on a table of many chunks (e.g. concatenated batches) first concatenates
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

FRAGMENT_ROW_GROUP = 2048
"""Rows per row group of a staging fragment. The merge reads each fragment one row group at a
time, so it holds about (fragments x this) staged rows, not the partition (~100 MB of PDF rows
for 60 fragments, against 0.73 GB for a whole 1e6-row partition)."""


def fragment_directory(staging_root: str, norder: int, npix: int) -> str:
    """Directory of the staging fragments of partition ``(norder, npix)``."""
    return io.join(staging_root, f"Norder={int(norder)}", f"Npix={int(npix)}")


def write_fragment(
    staging_root: str, norder: int, npix: int, fragment_id: str, table: pa.Table
) -> str:
    """Stage the rows of one block that belong to partition ``(norder, npix)``.

    Fragments are temporary: written fast (:data:`FRAGMENT_WRITE_OPTIONS`), sorted by
    ``_healpix_29`` (stable) in row groups of :data:`FRAGMENT_ROW_GROUP` rows, so that
    :func:`merge_partition` can stream them. Writing the same ``fragment_id`` again replaces
    the fragment.

    Returns:
        The path written.
    """
    if not fragment_id or "/" in fragment_id or fragment_id.startswith((".", "_")):
        raise ValueError(f"fragment_id must be a plain file stem, got {fragment_id!r}")
    path = io.join(fragment_directory(staging_root, norder, npix), f"{fragment_id}.parquet")
    order = np.argsort(table[HEALPIX29_COLUMN].to_numpy(), kind="stable")
    rows = table.take(pa.array(order))
    data = _parquet_bytes(rows, row_group_size=FRAGMENT_ROW_GROUP, **FRAGMENT_WRITE_OPTIONS)
    io.write_bytes_atomic(path, data)
    return path


def merge_partition(
    staging_root: str,
    root: str,
    norder: int,
    npix: int,
    metadata: Mapping[str, str] | None = None,
    unique_column: str | None = None,
    zstd_level: int = ZSTD_LEVEL,
    on_rows: Callable[[pa.Table], None] | None = None,
) -> str:
    """Merge the staged fragments of one partition into its partition file, streaming.

    Rows are written sorted by ``_healpix_29`` (ties in fragment-listing order). With
    ``unique_column`` (e.g. ``objectId``, unique by the input contract) ties are sorted by it
    and repeated rows (same position and id) are written once: a block retried after a killed
    worker may have staged its rows twice, under another fragment id. Running the merge again
    rewrites the same file, so it is safe to retry.

    Only the fragments' ``_healpix_29`` columns are read whole (8 bytes per row). Each output
    row group is then cut at a change of ``_healpix_29`` (so repeated rows meet in one group)
    and gathered from the fragments, which are sorted: each gives a contiguous run of rows,
    read one fragment row group at a time. Memory is a few row groups per fragment, whatever
    the partition's size.

    Args:
        on_rows: called with each row group written (e.g. to take statistics without reading
            the file back).
        zstd_level: compression level (see :data:`ZSTD_LEVEL`).

    Returns:
        The path written.

    Raises:
        FileNotFoundError: if no fragment was staged for the partition.
        ValueError: a fragment not sorted by ``_healpix_29``, or rows outside the partition.
    """
    directory = fragment_directory(staging_root, norder, npix)
    fs, _ = io.resolve(directory)
    paths = io.list_parquet_files(directory)
    if not paths:
        raise FileNotFoundError(f"{directory}: no staged fragments")
    cursors = [_FragmentCursor(path, fs) for path in paths]
    keys = [cursor.sorted_index() for cursor in cursors]
    index = np.concatenate(keys)
    _check_inside(index, norder, npix)
    order = np.argsort(index, kind="stable")  # each fragment's rows keep their order
    sizes = [len(k) for k in keys]
    fragment = np.repeat(np.arange(len(paths)), sizes)[order]
    local = (np.arange(len(index)) - np.repeat(np.cumsum([0, *sizes[:-1]]), sizes))[order]
    index = index[order]
    empty = cursors[0].metadata.schema.to_arrow_schema().empty_table()
    schema = _with_metadata(_index_first(empty), metadata).schema
    with _partition_file(root, norder, npix, schema, zstd_level) as (writer, group_rows):
        for lo, hi in _group_bounds(index, group_rows):
            group = _gather(cursors, fragment[lo:hi], local[lo:hi]).select(schema.names)
            rows = _group_order(group, unique_column)
            written = group.take(pa.array(rows)).replace_schema_metadata(schema.metadata)
            writer.write_table(written, row_group_size=group_rows)
            if on_rows is not None:
                on_rows(written)
            del group, written
            # Arrow's allocator keeps freed pages for reuse; handing them back after each row
            # group halves the merge's own peak memory (0.66 -> 0.33-0.40 GiB RSS for a
            # 1e6-row partition)
            pa.default_memory_pool().release_unused()
    return partition_path(root, norder, npix)


def _group_bounds(index: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Row ranges of about ``size`` rows over the sorted ``index``, cut only where the value
    changes (a run of one value longer than ``size`` stays whole)."""
    bounds, lo = [], 0
    while lo < len(index):
        hi = min(lo + size, len(index))
        if hi < len(index):
            cut = int(np.searchsorted(index, index[hi], side="left"))
            hi = cut if cut > lo else int(np.searchsorted(index, index[hi], side="right"))
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _gather(cursors: list[_FragmentCursor], fragment: np.ndarray, local: np.ndarray) -> pa.Table:
    """The rows (fragment[i], local[i]) of one output group, grouped by fragment (each
    fragment's rows of a group are one contiguous, increasing run)."""
    by = np.argsort(fragment, kind="stable")
    fragment, local = fragment[by], local[by]
    starts = np.flatnonzero(np.diff(fragment)) + 1
    pieces = [
        cursors[int(fragment[a])].rows(int(local[a]), int(local[b - 1]) + 1)
        for a, b in zip(np.r_[0, starts], np.r_[starts, len(fragment)], strict=True)
    ]
    return pa.concat_tables(pieces)


def _group_order(group: pa.Table, unique_column: str | None) -> np.ndarray:
    """Indices of a group's rows in file order: by ``_healpix_29`` (stable), with
    ``unique_column`` by it too and without repeated (position, id) rows."""
    index = group[HEALPIX29_COLUMN].to_numpy()
    if unique_column is None:
        return np.argsort(index, kind="stable")
    keys = [(HEALPIX29_COLUMN, "ascending"), (unique_column, "ascending")]
    rows = pc.sort_indices(group, sort_keys=keys).to_numpy().astype(np.int64)
    return rows[run_starts(index[rows], group[unique_column].to_numpy()[rows])]


class _FragmentCursor:
    """Reads a fragment's rows in increasing, adjacent ranges, one row group at a time. The
    file is opened only to read (a partition may have thousands of fragments)."""

    def __init__(self, path: str, filesystem: pafs.FileSystem) -> None:
        self.path, self.filesystem = path, filesystem
        self.metadata = pq.read_metadata(path, filesystem=filesystem)
        sizes = [self.metadata.row_group(i).num_rows for i in range(self.metadata.num_row_groups)]
        self.starts = np.cumsum([0, *sizes])
        self.loaded: dict[int, pa.Table] = {}

    def _open(self) -> pq.ParquetFile:
        """The fragment, opened with the footer already read (close it after use)."""
        return pq.ParquetFile(self.path, filesystem=self.filesystem, metadata=self.metadata)

    def sorted_index(self) -> np.ndarray:
        """The fragment's ``_healpix_29`` column, checked to be sorted."""
        file = self._open()
        index = file.read(columns=[HEALPIX29_COLUMN])[HEALPIX29_COLUMN].to_numpy()
        file.close()
        if (np.diff(index) < 0).any():
            raise ValueError(f"{self.path}: staged fragment is not sorted by {HEALPIX29_COLUMN}")
        return index

    def rows(self, lo: int, hi: int) -> pa.Table:
        """Rows [lo, hi); row groups that end before ``lo`` are released."""
        first = int(np.searchsorted(self.starts, lo, side="right")) - 1
        last = int(np.searchsorted(self.starts, hi - 1, side="right")) - 1
        self.loaded = {i: t for i, t in self.loaded.items() if i >= first}
        missing = [i for i in range(first, last + 1) if i not in self.loaded]
        if missing:
            file = self._open()
            self.loaded.update({i: file.read_row_group(i) for i in missing})
            file.close()
        span = pa.concat_tables([self.loaded[i] for i in range(first, last + 1)])
        return span.slice(lo - int(self.starts[first]), hi - lo)


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
