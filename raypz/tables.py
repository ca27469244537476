"""Object-table files of either format, Parquet or FITS, behind one small interface.

Every job reads its tables through :func:`list_table_files` and :func:`open_table`: a
directory (or HATS catalog) may hold ``.parquet`` shards or ``.fits`` object tables
(:mod:`raypz.fits`), and a reader gives the schema and row count without reading rows, then the
rows in bounded batches. Parquet stays the fast path (column projection, row groups); FITS
tables are converted to Arrow batch by batch.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Protocol, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz import io

FITS_SUFFIXES = (".fits", ".fit", ".fits.gz")
"""File names that are read as FITS (:mod:`raypz.fits`)."""
TABLE_SUFFIXES = (".parquet", *FITS_SUFFIXES)
"""File names that hold object tables."""

S = TypeVar("S")
T = TypeVar("T")


def is_fits(path: str) -> bool:
    """True when ``path`` names a FITS file (by its suffix)."""
    return path.lower().endswith(FITS_SUFFIXES)


class TableFile(Protocol):
    """One open object-table file."""

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema (from the footer or header: no rows read)."""

    @property
    def num_rows(self) -> int:
        """Rows in the file (from the footer or header)."""

    def iter_batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The rows of ``columns`` in batches of at most ``batch_rows``."""

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Every row of ``columns`` (all by default)."""


class ParquetTable:
    """A Parquet file as a :class:`TableFile`."""

    def __init__(self, parquet: pq.ParquetFile) -> None:
        self.parquet = parquet

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema from the footer."""
        return self.parquet.schema_arrow

    @property
    def num_rows(self) -> int:
        """Rows from the footer."""
        return self.parquet.metadata.num_rows

    def iter_batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Batches of ``columns`` only."""
        yield from self.parquet.iter_batches(batch_size=batch_rows, columns=columns)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Every row of ``columns``."""
        return self.parquet.read(columns=columns)


@contextmanager
def open_table(fs: pafs.FileSystem, path: str) -> Iterator[TableFile]:
    """Open an object-table file (Parquet or FITS, by suffix) on ``fs``.

    Raises whatever the format's reader raises on an unreadable file (``pyarrow.ArrowException``,
    ``OSError``, ``ValueError``); :func:`raypz.schema.files.open_object_table` turns those into
    contract errors naming the file.
    """
    if is_fits(path):
        from raypz.fits import FitsTable, open_fits  # astropy only where FITS is read

        with open_fits(fs, path) as hdul:
            yield FitsTable(hdul, path)
        return
    with fs.open_input_file(path) as source:
        yield ParquetTable(pq.ParquetFile(source))


def read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    """Every row of ``columns`` of the table files under ``path`` (local or URI), in file order."""
    fs, _ = io.resolve(path)
    return read_files(fs, require_table_files(path), columns)


def read_files(fs: pafs.FileSystem, files: list[str], columns: list[str] | None = None) -> pa.Table:
    """Every row of ``columns`` of ``files`` (table files on ``fs``), in order, as one table
    (types promoted where files differ, e.g. a FITS column nullable where Parquet's is not)."""
    parts = []
    for file in files:
        with open_table(fs, file) as table:
            parts.append(table.read(columns))
    return pa.concat_tables(parts, promote_options="permissive")


IO_THREADS = 32
"""Threads that read footers (or stat files) at once in the driver: on an object store each
is a round trip of ~20 ms, so one at a time a run of 1e6 input files spent ~30 h on them."""


def map_files(
    fn: Callable[[S], T], files: Sequence[S], opens_fits: bool = True, threads: int = IO_THREADS
) -> list[T]:
    """``fn`` of each of ``files`` (footer reads, stats: I/O-bound), in ``threads`` threads,
    results in order; an exception is raised as the first file in order that raised it, so a
    breach names the same file as a serial loop would. With ``opens_fits`` (``fn`` opens the
    file, a path), FITS inputs are done one at a time: astropy's warnings, which the contract
    checks catch, are process-global. Without it the items may be anything (groups of files)."""
    if len(files) < 2 or (opens_fits and any(is_fits(f) for f in files)):
        return [fn(f) for f in files]
    with ThreadPoolExecutor(min(threads, len(files))) as pool:
        return list(pool.map(fn, files))


def list_table_files(path: str) -> list[str]:
    """Sorted paths (inside ``path``'s filesystem) of the object-table files under ``path``:
    Parquet and FITS files, skipped as :func:`raypz.io.list_parquet_files` skips them."""
    return io.list_files(path, TABLE_SUFFIXES)


def require_table_files(path: str) -> list[str]:
    """:func:`list_table_files` of ``path``; FileNotFoundError naming it when there are none
    (a directory of other files, an empty one, a file of another format)."""
    files = list_table_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no Parquet or FITS table files")
    return files


def column_names(path: str) -> list[str]:
    """The column names of the table at ``path`` (local or URI), as its first table file's
    schema says (FileNotFoundError naming ``path`` when it has none)."""
    fs, _ = io.resolve(path)
    with open_table(fs, require_table_files(path)[0]) as table:
        return table.schema.names


def relative_stem(path: str, root: str) -> str:
    """``path`` (a file under ``root``, as :func:`list_table_files` names it) relative to
    ``root`` (local or URI) without its table suffix: the key that pairs an object file with
    its cutout file (``dataset/Norder=3/Dir=0/Npix=12.parquet`` under a HATS root ->
    ``Norder=3/Dir=0/Npix=12``, also below a HATS collection's primary catalog; a file given
    alone -> its base name)."""
    _, inner_root = io.resolve(root)
    rel = posixpath.basename(path) if path == inner_root else posixpath.relpath(path, inner_root)
    parts = rel.split("/")
    if "dataset" in parts[:-1]:  # a HATS catalog (or a collection's primary catalog)
        rel = "/".join(parts[parts.index("dataset") + 1 :])
    for suffix in TABLE_SUFFIXES:
        if rel.lower().endswith(suffix):
            return rel[: -len(suffix)]
    return rel
