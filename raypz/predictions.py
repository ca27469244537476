"""Tables of redshift PDFs: build them from arrays, and read them back from any Parquet source.

A predictions table has ``objectId``, the summary columns of :func:`raypz.pdf.summarize`,
``flags`` (int32, :mod:`raypz.flags`) and ``pdf`` (one float32 list per row, the PDF on the grid
stored in the schema metadata under ``raypz.z_grid``). The PDF catalog written by inference is a
predictions table too, partitioned in HATS layout, with the PDFs in the compact form of
:mod:`raypz.compact` (``pdf`` bytes + ``pdf_start``); :func:`read_predictions` reads both.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz import compact, io, tables
from raypz.catalog.healpix import NEIGHBOURHOOD_MAX_ORDER, pixels_near
from raypz.catalog.layout import STAGING_DIR, parse_partition_path, require_complete
from raypz.metrics.tables import object_ids
from raypz.pdf import SUMMARY_COLUMNS, ZGrid, require_on_grid, summarize
from raypz.schema.errors import RefusedError

if TYPE_CHECKING:
    import lsdb
    import qp

Z_GRID_KEY = b"raypz.z_grid"
"""Schema-metadata key holding the JSON z grid of the ``pdf`` column."""

MODEL_HASH_KEY = b"raypz.model_hash"
"""Schema-metadata key holding the hash of the model that made the predictions."""


def grid_metadata(grid: ZGrid) -> dict[bytes, bytes]:
    """Schema metadata recording ``grid``: how every raypz table of PDFs (predictions, the
    catalog's partitions, n(z) files) says which z grid its values are on."""
    return {Z_GRID_KEY: json.dumps(grid.to_dict()).encode()}


def grid_from_metadata(metadata: dict | None, path: str) -> ZGrid:
    """The z grid that schema ``metadata`` of the file ``path`` records
    (:func:`grid_metadata`); ValueError naming ``path`` when it records none."""
    metadata = metadata or {}
    if Z_GRID_KEY not in metadata:
        raise ValueError(f"{path}: schema metadata has no {Z_GRID_KEY.decode()!r} z grid")
    return ZGrid.from_dict(json.loads(metadata[Z_GRID_KEY]))


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
    require_on_grid(pdf.shape, grid, len(object_id))
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
    return table.replace_schema_metadata(grid_metadata(grid))


@dataclass(frozen=True)
class Predictions:
    """PDFs read back from a predictions table or catalog.

    Attributes:
        grid: the z grid of the PDFs.
        object_id: (N,) int64.
        pdf: (N, G) float32 normalised PDFs (all zero where no PDF could be made).
        table: the other requested columns (summaries, flags, ...), row-aligned.
        n_not_kept: rows of the source left out: their objectId was not asked for
            (``read_predictions(..., only_ids=...)``), or their partition file lay far from
            every position asked for (``near=``); 0 when every row was read.
    """

    grid: ZGrid
    object_id: np.ndarray
    pdf: np.ndarray
    table: pa.Table
    n_not_kept: int = 0


READ_THREADS = 8
"""Files that :func:`read_predictions` reads at once when it keeps only some objectIds: each
is read whole before its rows are picked, so this bounds the memory of the reads in flight."""


def read_predictions(
    path: str,
    columns: list[str] | None = None,
    only_ids: np.ndarray | None = None,
    near: tuple[np.ndarray, np.ndarray] | None = None,
) -> Predictions:
    """Read a predictions Parquet file, a directory of them, or a HATS PDF catalog.

    Args:
        path: local path or URI.
        columns: extra columns to keep in ``Predictions.table`` (default: all but ``pdf``).
        only_ids: keep only the rows with these objectIds (e.g. a spec-z sample's), picked file
            by file before any PDF is decoded, so the memory is that of the rows kept (plus
            READ_THREADS files), not of the whole catalog: how an evaluation scores a sample of
            a data release. ``n_not_kept`` counts the other rows. Default: every row.
        near: RA and Dec (degrees) of the objects wanted: a HATS catalog's partition files
            that hold no point within ~3 arcsec of these positions are not read at all (their
            rows, from the footers, count in ``n_not_kept``). A spec-z sample in a few fields
            then reads those fields' partitions, not the release. Files of other layouts, and
            partitions deeper than :data:`~raypz.catalog.healpix.NEIGHBOURHOOD_MAX_ORDER`,
            are read. Non-finite positions: every file is read.
    """
    files = io.list_parquet_files(path)
    if not files:
        raise FileNotFoundError(f"{path}: no Parquet files with predictions")
    fs, _ = io.resolve(path)
    require_finished(path)
    if columns is not None:
        names = pq.read_schema(files[0], filesystem=fs).names
        unknown = [c for c in columns if c not in names]
        if unknown:
            kept = [n for n in names if n not in ("pdf", "pdf_start")]
            raise RefusedError(f"{files[0]}: no column(s) {unknown}; it has {kept}")
    wanted = None if only_ids is None else np.unique(np.asarray(only_ids, dtype=np.int64))
    files, skipped = _partitions_near(files, near)

    def read(file: str) -> tuple[pa.Table, ZGrid, int]:
        """One file's columns (only the wanted rows), its z grid and how many rows it left."""
        table = pq.read_table(
            file,
            filesystem=fs,
            columns=None
            if columns is None
            else sorted({"objectId", "pdf", *columns, *_pdf_start(file, fs)}),
        )
        grid = grid_from_metadata(table.schema.metadata, file)
        ids = object_ids(table, "objectId", file)
        # one id type whatever each file has
        table = table.set_column(
            table.schema.get_field_index("objectId"), "objectId", pa.array(ids)
        )
        if wanted is None:
            return table, grid, 0
        at = np.minimum(np.searchsorted(wanted, ids), max(wanted.size - 1, 0))
        keep = np.flatnonzero(wanted[at] == ids) if wanted.size else np.zeros(0, np.int64)
        return table.take(keep), grid, table.num_rows - keep.size

    if wanted is None:  # everything is kept anyway: one file at a time
        parts = [read(f) for f in files]
    else:
        parts = tables.map_files(read, files, opens_fits=False, threads=READ_THREADS)
    grid = parts[0][1]
    for f, (_, g, _) in zip(files[1:], parts[1:], strict=True):
        if g != grid:  # the PDFs would be decoded on the first file's grid
            raise ValueError(f"{f}: z grid {g} differs from {files[0]}'s {grid}")
    table = pa.concat_tables([t for t, _, _ in parts], promote_options="default")
    compact_pdfs = compact.is_compact(table.schema.field("pdf").type)
    start = table["pdf_start"] if compact_pdfs else None
    pdf = decode_pdfs(table["pdf"], start, grid)
    rest = table.drop_columns(["pdf", "pdf_start"] if compact_pdfs else ["pdf"])
    skipped_rows = tables.map_files(
        lambda f: pq.read_metadata(f, filesystem=fs).num_rows, skipped, opens_fits=False
    )
    not_kept = sum(n for _, _, n in parts) + sum(skipped_rows)
    return Predictions(grid, table["objectId"].to_numpy(), pdf, rest, not_kept)


def _partitions_near(
    files: list[str], near: tuple[np.ndarray, np.ndarray] | None
) -> tuple[list[str], list[str]]:
    """``files`` split into those to read and the HATS partitions with no point within ~3
    arcsec of a position of ``near`` (RA, Dec in degrees; see :func:`read_predictions`)."""
    if near is None:
        return files, []
    ra, dec = (np.asarray(a, dtype=np.float64) for a in near)
    if not (np.isfinite(ra) & np.isfinite(dec)).all():  # its partition cannot be told
        return files, []
    pixels = [parse_partition_path(f) for f in files]
    orders = {p[0] for p in pixels if p is not None and p[0] <= NEIGHBOURHOOD_MAX_ORDER}
    keep = {k: set(pixels_near(ra, dec, k).tolist()) for k in orders}
    read, skipped = [], []
    for f, p in zip(files, pixels, strict=True):
        far = p is not None and p[0] in keep and p[1] not in keep[p[0]]
        (skipped if far else read).append(f)
    if not read:  # one file still gives the grid and the columns of an empty result
        read, skipped = skipped[:1], skipped[1:]
    return read, skipped


def require_finished(path: str) -> None:
    """RefusedError for a catalog directory (one with ``dataset/``) that an inference run has not
    finished: no ``properties`` (written last), unless a catalog of another writer that has
    only ``hats.properties`` and no raypz staging. Some of its partitions may be missing.
    FileNotFoundError for a finished one that lost partition files."""
    fs, inner = io.resolve(path)
    names = ("dataset", "properties", "hats.properties", STAGING_DIR)
    dataset, props, hats_props, staging = fs.get_file_info(
        [posixpath.join(inner, n) for n in names]
    )
    other_writer = hats_props.type == pafs.FileType.File and staging.type == pafs.FileType.NotFound
    if (
        dataset.type == pafs.FileType.Directory
        and props.type != pafs.FileType.File
        and not other_writer
    ):
        raise RefusedError(
            f"{path}: a catalog without its properties file, so an unfinished inference run "
            "(some partitions may be missing); rerun that inference to finish it"
        )
    finished = pafs.FileType.File in (props.type, hats_props.type)
    if dataset.type == pafs.FileType.Directory and finished:  # another writer may list elsewhere
        require_complete(path, "its rows would be scored as if complete", listing_required=False)


def decode_pdfs(
    pdf: pa.Array | pa.ChunkedArray | Sequence,
    pdf_start: pa.Array | pa.ChunkedArray | Sequence | None,
    grid: ZGrid,
) -> np.ndarray:
    """PDFs (N, G) float32 on ``grid`` from a ``pdf`` column: the compact bytes of the
    catalog (:mod:`raypz.compact`, which need ``pdf_start``) or float lists. Null rows (no PDF)
    come back all zero. The columns may be Arrow arrays or anything Arrow converts: pandas
    Series (an lsdb partition's), numpy or lists."""
    if not isinstance(pdf, (pa.Array, pa.ChunkedArray)):
        pdf = pa.array(pdf)
    binary = compact.is_compact(pdf.type)
    if binary and pdf_start is None:
        raise ValueError("compact (binary) PDFs need their pdf_start column to decode")
    start = np.asarray(pdf_start, dtype=np.int64) if binary else None
    # chunk by chunk: joined into one array, a column of more than 2 GB of PDF bytes (~2.5e7
    # compact rows, or 3e6 rows of float lists) overflows Arrow's 32-bit offsets
    chunks = pdf.chunks if isinstance(pdf, pa.ChunkedArray) else [pdf]
    out = np.zeros((len(pdf), grid.n), np.float32)
    lo = 0
    for chunk in chunks:
        hi = lo + len(chunk)
        if binary:
            out[lo:hi] = compact.decode(start[lo:hi], chunk, grid.n, grid.dz)
        else:
            out[lo:hi] = _decode_pdf_column(chunk, grid)
        lo = hi
    return out


def to_qp_ensemble(pred: Predictions) -> qp.Ensemble:
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


def open_catalog(path: str, columns: list[str] | None = None) -> lsdb.Catalog:
    """A HATS catalog (the PDF catalog or any other), opened lazily with lsdb.

    Only ``columns`` (default: the catalog's default columns, else all) are read, one partition
    at a time, when the result is computed. ``s3://`` paths use the standard AWS credentials
    (hats would open them anonymously).
    """
    import lsdb  # 1-2 s to import: only callers that open catalogs pay for it

    options = {"anon": False} if path.startswith("s3://") else None
    return lsdb.open_catalog(path, columns=columns, storage_options=options)


def crossmatch_catalog(
    pdf_catalog: str | lsdb.Catalog,
    other_catalog: str | lsdb.Catalog,
    radius_arcsec: float = 1.0,
    columns: list[str] | None = None,
    other_columns: list[str] | None = None,
    n_neighbors: int = 1,
    suffixes: tuple[str, str] = ("_pz", "_other"),
) -> lsdb.Catalog:
    """The PDF catalog's rows paired on the sky with another HATS catalog's, lazily (lsdb).

    Each PDF-catalog row gets its ``n_neighbors`` nearest rows of ``other_catalog`` within
    ``radius_arcsec`` (lsdb's k-d tree cross-match, run partition by partition: neither catalog
    is ever loaded whole); rows without a neighbour are left out. The result is an lsdb
    ``Catalog`` (``.compute()`` gives a data frame) with both catalogs' columns, those that
    both have suffixed with ``suffixes``, and ``_dist_arcsec`` (separation, arcsec).

    A neighbour across a partition boundary is found only through ``other_catalog``'s margin
    cache: pass it opened with ``lsdb.open_catalog(path, margin_cache=...)`` when it has one.

    Args:
        pdf_catalog: the PDF catalog (path, local or s3://, or an opened lsdb Catalog).
        other_catalog: the catalog to match against (e.g. an object or spectroscopic catalog).
        radius_arcsec: largest separation of a match (arcsec).
        columns: PDF-catalog columns to read when given a path (default: all; the PDFs are
            the bulk of the bytes, leave out ``pdf`` and ``pdf_start`` if not needed).
        other_columns: columns of ``other_catalog`` to read when given a path (default: all).
        n_neighbors: matches kept per PDF-catalog row, nearest first.
        suffixes: appended to the names both catalogs use (left, right).

    Example (spectroscopic redshifts next to the photo-z summaries)::

        from raypz.predictions import crossmatch_catalog

        matched = crossmatch_catalog(
            "dr1/photoz", "dr1/specz", radius_arcsec=0.5,
            columns=["objectId", "z_mode", "z_median", "flags"], other_columns=["z_spec"],
        ).compute()
        matched[["objectId", "z_mode", "z_spec", "_dist_arcsec"]]
    """
    left = open_catalog(pdf_catalog, columns) if isinstance(pdf_catalog, str) else pdf_catalog
    right = (
        open_catalog(other_catalog, other_columns)
        if isinstance(other_catalog, str)
        else other_catalog
    )
    return left.crossmatch(
        right,
        n_neighbors=n_neighbors,
        radius_arcsec=radius_arcsec,
        suffixes=suffixes,
        suffix_method="overlapping_columns",
        log_changes=False,
    )


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
