"""Validate a whole input (files, a directory of shards, a HATS catalog) in one streaming pass."""

from __future__ import annotations

import pyarrow as pa

from raypz import io, tables
from raypz.columns import BANDS, DEFAULT_COLUMNS, ColumnTemplate
from raypz.schema.errors import ContractError
from raypz.schema.files import batches, open_object_table
from raypz.schema.ids import check_unique_ids
from raypz.schema.report import ValidationReport
from raypz.schema.rules import check_file_schema, check_same_types, value_columns
from raypz.schema.values import check_units, count_row_problems


def validate_dataset(
    path: str,
    columns: ColumnTemplate = DEFAULT_COLUMNS,
    bands: tuple[str, ...] = BANDS,
    require_labels: bool = False,
    require_cutouts: bool = False,
    check_rows: bool = True,
    cutout_shape: tuple[int, int, int] | None = None,
    cutout_pixel_scale: float | None = None,
) -> ValidationReport:
    """Check an object table against the contract; raise on breaches, count per-row problems.

    Files are read one batch at a time and only the contract's columns, so memory does not
    grow with the input; ids are checked in hashed passes when they are too many for one.

    Args:
        path: one Parquet or FITS table file, a directory of shards (either format), or a HATS
            catalog; local or a URI.
        columns: the column names of the input.
        bands: the bands that must be present.
        require_labels: the input is for training: the redshift column is required.
        require_cutouts: the cutout column (bands x H x W floats) is required.
        check_rows: read the rows (units, uniqueness of ``objectId``, problem counts); with
            False only the files' footers or FITS headers are read (readability, columns,
            types).
        cutout_shape: with ``require_cutouts``, the (bands, H, W) the cutouts must have (the
            model's), checked from every file's footer before any row is read.
        cutout_pixel_scale: the same for their pixel scale (arcsec), where a file's field
            metadata gives one.

    Returns:
        The report; ``problems`` is None when ``check_rows`` is False.

    Raises:
        ContractError: the first breach found, naming file (as ``path`` is written: with its
            ``s3://``), column and rule.
        FileNotFoundError: ``path`` does not exist or holds no table file.
    """
    try:
        return _validate(
            path,
            columns,
            bands,
            require_labels,
            require_cutouts,
            check_rows,
            cutout_shape,
            cutout_pixel_scale,
        )
    except ContractError as err:
        named = io.uri(path, err.file)
        if named == err.file:
            raise
        raise ContractError(named, err.column, err.rule) from err


def _validate(
    path: str,
    columns: ColumnTemplate,
    bands: tuple[str, ...],
    require_labels: bool,
    require_cutouts: bool,
    check_rows: bool,
    cutout_shape: tuple[int, int, int] | None,
    cutout_pixel_scale: float | None,
) -> ValidationReport:
    """:func:`validate_dataset`, naming files as pyarrow lists them (``bucket/key`` on S3)."""
    files = tables.require_table_files(path)
    fs, _ = io.resolve(path)
    names = value_columns(columns, bands, require_labels)
    first_types: dict[str, tuple[pa.DataType, str]] = {}
    rows = 0
    problems = count_row_problems(_empty(names), columns, bands, require_labels)
    for file in files:
        with open_object_table(fs, file) as table:
            schema = check_file_schema(
                file,
                table.schema,
                columns=columns,
                bands=bands,
                require_labels=require_labels,
                require_cutouts=require_cutouts,
                cutout_shape=cutout_shape,
                cutout_pixel_scale=cutout_pixel_scale,
            )
            check_same_types(file, schema, [columns.object_id, *names], first_types)
            rows += table.num_rows
            if not check_rows:
                continue
            for batch in batches(file, table, names):
                check_units(file, batch, columns, bands)
                problems += count_row_problems(batch, columns, bands, require_labels)
    if check_rows:
        check_unique_ids(fs, files, columns.object_id, rows)
    return ValidationReport(
        path=path,
        files=len(files),
        rows=rows,
        bands=bands,
        problems=problems if check_rows else None,
    )


def _empty(names: list[str]) -> pa.RecordBatch:
    """A batch without rows: its problem counts are the zero to add batches' counts to."""
    return pa.RecordBatch.from_pydict({n: pa.array([], pa.float64()) for n in names})
