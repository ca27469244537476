"""Open object-table files (Parquet or FITS, :mod:`raypz.tables`) and stream their batches,
turning read failures into contract errors naming the file."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz.schema.errors import ContractError
from raypz.tables import ParquetTable, TableFile, is_fits, open_table

BATCH_ROWS = 65_536
"""Rows per streamed batch: bounds memory per file whatever its row-group sizes."""

_PARQUET_ERRORS = (pa.ArrowException, OSError)
_FITS_ERRORS = (pa.ArrowException, OSError, ValueError, TypeError, KeyError, IndexError)
"""What astropy raises on a corrupt or truncated FITS file: ``OSError`` (no SIMPLE card,
header without END), ``TypeError`` (data shorter than the header says), ``ValueError`` (no
binary-table HDU, bad TFORM), ``KeyError``/``IndexError`` (missing header keywords)."""


@contextmanager
def open_object_table(fs: pafs.FileSystem, path: str) -> Iterator[TableFile]:
    """Open an object-table file, Parquet or FITS (by suffix), by its footer or header; a file
    that cannot be opened is a breach naming it (``unreadable Parquet file (...)``,
    ``unreadable FITS file (...)``)."""
    if not is_fits(path):
        with open_parquet(fs, path) as parquet:
            yield ParquetTable(parquet)
        return
    with ExitStack() as stack:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                table = stack.enter_context(open_table(fs, path))
        except _FITS_ERRORS as err:
            raise ContractError(path, None, f"unreadable FITS file ({err})") from err
        for warning in caught:
            # astropy only warns when the file is shorter than its headers say; its rows
            # would fail to read later: a breach now, naming the file
            if "truncated" in str(warning.message):
                raise ContractError(path, None, f"unreadable FITS file ({warning.message})")
            warnings.warn(warning.message, stacklevel=3)
        yield table


@contextmanager
def open_parquet(fs: pafs.FileSystem, path: str) -> Iterator[pq.ParquetFile]:
    """Open a Parquet file by its footer; a file that cannot be opened is a breach."""
    try:
        source = fs.open_input_file(path)
    except (pa.ArrowException, OSError) as err:
        raise ContractError(path, None, f"unreadable ({err})") from err
    try:
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowException, OSError) as err:
            raise ContractError(path, None, f"unreadable Parquet file ({err})") from err
        yield parquet
    finally:
        source.close()


def batches(
    path: str, table: TableFile | pq.ParquetFile, names: list[str]
) -> Iterator[pa.RecordBatch]:
    """Batches of the columns ``names`` only, of an open table file (see
    :func:`open_object_table`; a ``pq.ParquetFile`` is accepted too); corrupt data is a breach
    naming ``path``."""
    if isinstance(table, pq.ParquetFile):
        table = ParquetTable(table)
    kind, errors = ("FITS", _FITS_ERRORS) if is_fits(path) else ("Parquet", _PARQUET_ERRORS)
    try:
        yield from table.iter_batches(names, BATCH_ROWS)
    except errors as err:
        raise ContractError(path, None, f"unreadable {kind} data ({err})") from err


def floats(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """A column as float64, nulls as NaN."""
    return np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
