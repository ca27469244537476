"""Inputs of an evaluation: read the needed columns of a table, and join tables on objectId.

Evaluation sets (spec-z samples, validation splits) fit in memory, so both are plain in-process
operations. The join never drops rows silently: :class:`IdMatch` counts what did not match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raypz import io, tables
from raypz.schema import ContractError
from raypz.schema.files import open_object_table


def read_table(path: str, columns: list[str]) -> pa.Table:
    """The ``columns`` of every table file under ``path`` (a Parquet or FITS table file, a
    directory of them, a HATS catalog; local or URI).

    Raises:
        FileNotFoundError: no table file under ``path``.
        ContractError: a file is unreadable or lacks one of ``columns`` (named with the file),
            checked on every footer or FITS header before any rows are read.
    """
    files = tables.require_table_files(path)
    fs, _ = io.resolve(path)
    for f in files:
        with open_object_table(fs, f) as table:
            names = table.schema.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise ContractError(f, missing[0], "missing (needed by the evaluation)")
    return tables.read_files(fs, files, columns)


def object_ids(table: pa.Table, column: str, path: str) -> np.ndarray:
    """The id ``column`` of ``table`` (read from ``path``) as int64 (N,).

    Raises:
        ContractError: the column holds nulls or is not integer: a single null would turn the
            whole column into floats, which merge distinct 64-bit ids and pair the wrong rows.
    """
    ids = table[column]
    if not pa.types.is_integer(ids.type):
        raise ContractError(path, column, f"type {ids.type} is not an integer type")
    if ids.null_count:
        raise ContractError(path, column, f"{ids.null_count} null values")
    return ids.to_numpy().astype(np.int64, copy=False)


@dataclass(frozen=True)
class IdMatch:
    """Rows of two tables that share an objectId, and what did not match.

    Attributes:
        left_rows: (M,) row indices into the left table, in left-table order.
        right_rows: (M,) row indices into the right table, paired with ``left_rows``.
        n_left_only: distinct left ids absent from the right table.
        n_right_only: distinct right ids absent from the left table.
        n_left_duplicates: left rows repeating an earlier id (only the first one is matched).
        n_right_duplicates: right rows repeating an earlier id (only the first one is matched).
    """

    left_rows: np.ndarray
    right_rows: np.ndarray
    n_left_only: int
    n_right_only: int
    n_left_duplicates: int
    n_right_duplicates: int


def match_ids(left: np.ndarray, right: np.ndarray) -> IdMatch:
    """Pair rows of two id arrays (N,) and (K,) by equal id (sort-based, O((N + K) log(N + K)))."""
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    left_ids, left_first = np.unique(left, return_index=True)
    right_ids, right_first = np.unique(right, return_index=True)
    common, li, ri = np.intersect1d(left_ids, right_ids, assume_unique=True, return_indices=True)
    left_rows, right_rows = left_first[li], right_first[ri]
    order = np.argsort(left_rows)
    return IdMatch(
        left_rows=left_rows[order],
        right_rows=right_rows[order],
        n_left_only=int(left_ids.size - common.size),
        n_right_only=int(right_ids.size - common.size),
        n_left_duplicates=int(left.size - left_ids.size),
        n_right_duplicates=int(right.size - right_ids.size),
    )
