"""Tables of redshift PDFs: build them from arrays, and read them back from any Parquet source.

A predictions table has ``objectId``, the summary columns of :func:`raypz.pdf.summarize`,
``flags`` (int32, :mod:`raypz.flags`) and ``pdf`` (one float32 list per row, the PDF on the grid
stored in the schema metadata under ``raypz.z_grid``). The PDF catalog written by inference is a
predictions table too, partitioned in HATS layout, with the PDFs in the compact form of
:mod:`raypz.compact` (``pdf`` bytes + ``pdf_start``); :func:`read_predictions` reads both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raypz import compact, io
from raypz.pdf import SUMMARY_COLUMNS, ZGrid, summarize

Z_GRID_KEY = b"raypz.z_grid"
"""Schema-metadata key holding the JSON z grid of the ``pdf`` column."""


def predictions_table(
    object_id: np.ndarray,
    pdf: np.ndarray,
    grid: ZGrid,
    flags: np.ndarray | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> pa.Table:
    """Build a predictions table from normalised PDFs (N, G) on ``grid``.

    Rows flagged ``NO_PDF`` should carry an all-zero PDF; their summaries are NaN.
    ``extra`` columns (e.g. coordinates, the true redshift of a validation set) are appended.
    """
    pdf = np.asarray(pdf, dtype=np.float32)
    stats = summarize(pdf, grid)
    empty = pdf.sum(axis=1) <= 0
    cols: dict[str, pa.Array] = {"objectId": pa.array(np.asarray(object_id, dtype=np.int64))}
    for name in SUMMARY_COLUMNS:
        cols[name] = pa.array(np.where(empty, np.nan, stats[name]).astype(np.float32))
    n = pdf.shape[0]
    cols["flags"] = pa.array(np.zeros(n, np.int32) if flags is None else flags.astype(np.int32))
    cols["pdf"] = pa.FixedSizeListArray.from_arrays(pa.array(pdf.ravel()), grid.n)
    for name, values in (extra or {}).items():
        cols[name] = pa.array(values)
    table = pa.table(cols)
    return table.replace_schema_metadata({Z_GRID_KEY: json.dumps(grid.to_dict()).encode()})


@dataclass(frozen=True)
class Predictions:
    """PDFs read back from a predictions table or catalog.

    Attributes:
        grid: the z grid of the PDFs.
        object_id: (N,) int64.
        pdf: (N, G) float32 normalised PDFs (all zero where no PDF could be made).
        table: the other requested columns (summaries, flags, ...), row-aligned.
    """

    grid: ZGrid
    object_id: np.ndarray
    pdf: np.ndarray
    table: pa.Table


def read_predictions(path: str, columns: list[str] | None = None) -> Predictions:
    """Read a predictions Parquet file, a directory of them, or a HATS PDF catalog.

    Args:
        path: local path or URI.
        columns: extra columns to keep in ``Predictions.table`` (default: all but ``pdf``).
    """
    files = io.list_parquet_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no Parquet files with predictions")
    fs, _ = io.resolve(path)
    tables = [
        pq.read_table(
            f,
            filesystem=fs,
            columns=None
            if columns is None
            else sorted({"objectId", "pdf", *columns, *_pdf_start(f, fs)}),
        )
        for f in files
    ]
    table = pa.concat_tables(tables, promote_options="default")
    meta = tables[0].schema.metadata or {}
    if Z_GRID_KEY not in meta:
        raise ValueError(f"{files[0]}: schema metadata has no {Z_GRID_KEY.decode()!r} z grid")
    grid = ZGrid.from_dict(json.loads(meta[Z_GRID_KEY]))
    pdf_col = table["pdf"].combine_chunks()
    if pa.types.is_binary(pdf_col.type):
        pdf = compact.decode(table["pdf_start"].to_numpy(), pdf_col, grid.n, grid.dz)
        rest = table.drop_columns(["pdf", "pdf_start"])
    else:
        pdf = _decode_pdf_column(pdf_col, grid)
        rest = table.drop_columns(["pdf"])
    return Predictions(grid, table["objectId"].to_numpy(), pdf, rest)


def to_qp_ensemble(pred: Predictions):
    """The PDFs as a ``qp.Ensemble`` (interpolated on the z grid), e.g. for RAIL tools.

    >>> import qp                                                         # doctest: +SKIP
    >>> from raypz.predictions import read_predictions, to_qp_ensemble    # doctest: +SKIP
    >>> ens = to_qp_ensemble(read_predictions("photoz/"))                 # doctest: +SKIP
    >>> ens.pdf(0.5), ens.median()                                        # doctest: +SKIP

    Rows without a PDF (all-zero, flagged NO_PDF) are left out; ``pred.object_id[has]`` with
    ``has = pred.pdf.any(axis=1)`` names the rows of the ensemble.
    """
    import qp

    has = pred.pdf.any(axis=1)
    return qp.Ensemble(qp.interp, data={"xvals": pred.grid.values, "yvals": pred.pdf[has]})


def _pdf_start(file: str, fs) -> set[str]:
    """{"pdf_start"} when the file stores compact PDFs (which need it to decode), else {}."""
    return {"pdf_start"} & set(pq.read_schema(file, filesystem=fs).names)


def _decode_pdf_column(column: pa.Array, grid: ZGrid) -> np.ndarray:
    """PDFs (N, G) float32 from a ``pdf`` column of float lists (nulls -> all zero)."""
    if pa.types.is_fixed_size_list(column.type) and column.null_count == 0:
        values = column.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(-1, grid.n).astype(np.float32)
    rows = column.to_pylist()
    return np.array([r if r is not None else np.zeros(grid.n) for r in rows], dtype=np.float32)
