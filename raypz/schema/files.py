"""Open Parquet files and stream their batches, turning read failures into contract errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz.schema.errors import ContractError

BATCH_ROWS = 65_536
"""Rows per streamed batch: bounds memory per file whatever its row-group sizes."""


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


def batches(path: str, parquet: pq.ParquetFile, names: list[str]) -> Iterator[pa.RecordBatch]:
    """Batches of the columns ``names`` only; corrupt data is a breach naming ``path``."""
    try:
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=names)
    except (pa.ArrowException, OSError) as err:
        raise ContractError(path, None, f"unreadable Parquet data ({err})") from err


def floats(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """A column as float64, nulls as NaN."""
    return np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
