"""``objectId`` must be non-null and unique across every file of the input."""

from __future__ import annotations

import numpy as np
import pyarrow.fs as pafs

from raypz.schema.errors import ContractError
from raypz.schema.files import batches, open_object_table

MAX_IDS_PER_PASS = 50_000_000
"""Ids held at once: (int64 id, int32 file index) pairs, about 600 MB."""


def check_unique_ids(
    fs: pafs.FileSystem,
    files: list[str],
    id_name: str,
    rows: int,
    max_ids_per_pass: int = MAX_IDS_PER_PASS,
) -> None:
    """Raise on a null or repeated id, holding about ``max_ids_per_pass`` ids at a time.

    With more rows than that, pass ``k`` of ``n`` keeps only the ids whose hash is ``k``
    modulo ``n``. Equal ids share a hash, so every repeat is caught in exactly one pass; each
    pass re-reads only the id column.

    Args:
        fs: the filesystem of ``files``.
        files: the input's table files (Parquet or FITS), in order.
        id_name: the id column.
        rows: total rows of ``files`` (from their footers or headers), to choose the number of
            passes.
        max_ids_per_pass: the memory bound, in ids.

    Raises:
        ContractError: naming the id column and the file of the second occurrence (or the
            file with nulls).
    """
    passes = max(1, -(-rows // max_ids_per_pass))
    for k in range(passes):
        ids, where = [], []
        for i, file in enumerate(files):
            with open_object_table(fs, file) as table:
                for batch in batches(file, table, [id_name]):
                    column = batch.column(0)
                    if column.null_count:
                        raise ContractError(file, id_name, f"{column.null_count} null values")
                    values = column.to_numpy().astype(np.int64, copy=False)
                    if passes > 1:
                        values = values[_hash(values) % np.uint64(passes) == k]
                    ids.append(values)
                    where.append(np.full(values.size, i, dtype=np.int32))
        if ids:
            raise_on_repeat(files, id_name, np.concatenate(ids), np.concatenate(where))


def _hash(values: np.ndarray) -> np.ndarray:
    """Fibonacci hashing: spreads sequential or strided ids evenly over the passes."""
    return (values.view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)


def raise_on_repeat(files: list[str], id_name: str, ids: np.ndarray, where: np.ndarray) -> None:
    """Raise :class:`ContractError` on the first id of ``ids`` that occurs twice, naming the
    file of its second occurrence; ``where[i]`` is the index in ``files`` of ``ids[i]``."""
    order = np.lexsort((where, ids))
    ids, where = ids[order], where[order]
    repeats = np.flatnonzero(ids[1:] == ids[:-1])
    if repeats.size == 0:
        return
    j = repeats[0]
    first, second = files[where[j]], files[where[j + 1]]
    place = "within this file" if first == second else f"also in {first}"
    rule = (
        f"value {ids[j]} is duplicated ({place}); {repeats.size} repeats in all; ids must be unique"
    )
    raise ContractError(second, id_name, rule)
