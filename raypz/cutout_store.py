"""Cutouts stored apart from the object table, and their join to object rows on objectId.

A survey serves the Object table (~1 kB per row) and image cutouts (tens of kB per object)
separately. raypz reads cutouts from a *cutout store*: a directory (local or URI) of cutout
files, co-partitioned with the object table. The object file ``X.parquet`` (or ``X.fits``,
path relative to the object table's root; a HATS catalog's ``dataset/`` prefix dropped) has its
cutouts in ``X.parquet`` or ``X.fits`` at the same relative path in the store. Each cutout file
is either

* Parquet: ``objectId`` int64 and the cutout column, a ``fixed_shape_tensor`` (bands, H, W)
  float32 in nJy/pixel (what ``jobs/simulate_survey.py --cutout-layout shards`` writes), or
* FITS: the layout of :mod:`raypz.fits` (an OBJECTS table of ids and a CUTOUTS cube).

Rows may be in any order within a cutout file. **The join is per file**: the reader of an object
file holds that file's needed catalog columns (~100 bytes per row) and streams its cutout file
chunk by chunk (Parquet batches, FITS cube sections), matching each chunk's ids against the
object rows with a sorted index. No global shuffle, and memory is one object file's catalog
columns plus one chunk of cutouts, whatever the size of the survey. Object rows without a
cutout come out with NaN pixels (an image model flags them ``no_cutout``); cutouts without
an object row are counted (:class:`JoinCounts`); an objectId that appears twice in a cutout
file is an error naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz import io
from raypz.features.cutout_arrays import cutout_array, has_data
from raypz.schema.errors import ContractError
from raypz.schema.rules import (
    PIXEL_SCALE_KEY,
    check_cutout_field,
    field_pixel_scale,
    parse_pixel_scale,
    require_band_order,
    require_cutout_shape,
    require_int64_ids,
    require_pixel_scale,
)
from raypz.tables import TABLE_SUFFIXES, is_fits, open_table, relative_stem

CUTOUT_CHUNK_ROWS = 1024
"""Cutouts read at a time from a cutout file by default (24 MB of 6 x 32 x 32 float32)."""


@dataclass(frozen=True)
class CutoutStore:
    """The cutout files of an object table, found by their paths relative to the store's root.

    Attributes:
        root: the store (a directory, or one cutout file for a one-file object table).
        files: relative stem (:func:`raypz.tables.relative_stem`) -> cutout file path.
        pixel_scale: arcsec per pixel, as the store's manifest gives it (None: not given).
    """

    root: str
    files: dict[str, str]
    pixel_scale: float | None = None

    @classmethod
    def open(cls, root: str) -> CutoutStore:
        """List the cutout files under ``root`` (local or URI).

        Raises:
            FileNotFoundError: ``root`` does not exist or holds no cutout file.
            ContractError: two files share a relative stem (``X.parquet`` and ``X.fits``).
        """
        root = io.absolute(root)  # the workers that read it may run in another directory
        files: dict[str, str] = {}
        for path in io.list_files(root, TABLE_SUFFIXES):
            stem = relative_stem(path, root)
            if stem in files:
                rule = f"two cutout files for {stem!r}: {files[stem]} and {path}"
                raise ContractError(root, None, rule)
            files[stem] = path
        if not files:
            raise FileNotFoundError(f"{root}: no cutout files (.parquet or .fits)")
        return cls(root, files, _manifest_pixel_scale(root))

    def require_pixel_scale(self, model_scale: float | None) -> None:
        """Raise a :class:`ContractError` naming the manifest unless the store's pixel scale
        is ``model_scale`` (arcsec; unchecked when either is unknown)."""
        marker = io.join(self.root, io.CUTOUT_STORE_MARKER)
        require_pixel_scale(marker, None, self.pixel_scale, model_scale)

    def file_for(self, object_file: str, object_root: str) -> str | None:
        """The cutout file of ``object_file`` (a file under ``object_root``), or None when the
        store has none (its objects get no cutout). A store of one file pairs with an
        object table given as one file (``object_file == object_root``) whatever their
        names."""
        _, inner_root = io.resolve(object_root)
        if object_file == inner_root and len(self.files) == 1:
            return next(iter(self.files.values()))
        return self.files.get(relative_stem(object_file, object_root))

    def require_pairs(self, object_files: list[str], object_root: str) -> None:
        """Raise a :class:`ContractError` naming the store when it pairs with none of
        ``object_files``: every object would go without a cutout, which is a wrong path or a
        naming scheme that differs from the object table's, not missing cutouts."""
        if any(self.file_for(f, object_root) is not None for f in object_files):
            return
        example = relative_stem(object_files[0], object_root) if object_files else "STEM"
        rule = (
            f"no cutout file pairs with any of the {len(object_files)} object file(s) of "
            f"{object_root}: a cutout file pairs with the object file at the same path "
            f"relative to its root, suffix aside (e.g. {example}.parquet or {example}.fits "
            "here; docs/cutout_stores.md, Pairing)"
        )
        raise ContractError(self.root, None, rule)

    def unpaired(self, object_files: list[str], object_root: str) -> list[str]:
        """Cutout files that no object file pairs with (their cutouts have no object row)."""
        used = {self.file_for(f, object_root) for f in object_files}
        return sorted(p for p in self.files.values() if p not in used)


class CutoutFile:
    """One cutout file (Parquet or FITS) read by chunks: its ids and (bands, H, W) cutouts."""

    def __init__(self, path: str, reader, id_column: str, column: str) -> None:
        self.path, self.reader = path, reader
        self.id_column, self.column = id_column, column
        self.fits = not isinstance(reader, pq.ParquetFile)
        if self.fits:
            self.num_rows, self.shape = reader.num_rows, reader.shape
            self.pixel_scale = reader.pixel_scale
        else:
            field = reader.schema_arrow.field(column)
            self.shape = check_cutout_field(path, field)
            self.pixel_scale = field_pixel_scale(path, field)
            self.num_rows = reader.metadata.num_rows

    def require_geometry(
        self, shape: tuple[int, int, int], pixel_scale: float | None = None
    ) -> None:
        """Raise a :class:`ContractError` naming the file unless its cutouts are ``shape``
        (bands, H, W) and, when both are known, of ``pixel_scale`` arcsec per pixel."""
        require_cutout_shape(self.path, self.column, self.shape, shape)
        require_pixel_scale(self.path, self.column, self.pixel_scale, pixel_scale)

    def ids(self) -> np.ndarray:
        """The objectIds (N,) int64 of the file's cutouts, in file order; a repeated id is a
        :class:`ContractError` naming the file."""
        if self.fits:
            ids = self.reader.ids(self.id_column)
        else:
            column = self.reader.read(columns=[self.id_column])[self.id_column]
            if column.null_count:
                raise ContractError(self.path, self.id_column, f"{column.null_count} null values")
            ids = column.to_numpy().astype(np.int64, copy=False)
        _raise_on_repeat(self.path, self.id_column, ids)
        return ids

    def chunks(self, rows: int = CUTOUT_CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids (n,) int64, cutouts (n, bands, H, W) float32 nJy/pixel) of consecutive rows.

        A null cutout in a Parquet file comes back as NaN pixels (an image model flags it)."""
        if self.fits:
            ids = self.reader.ids(self.id_column)
            for lo in range(0, self.num_rows, rows):
                yield ids[lo : lo + rows], self.reader.images(lo, lo + rows)
            return
        names = [self.id_column, self.column]
        for batch in self.reader.iter_batches(batch_size=rows, columns=names):
            ids = batch.column(0).to_numpy().astype(np.int64, copy=False)
            images, valid = cutout_array(batch.column(1), self.shape, check_data=False)
            if not valid.all():  # a fresh array then (else a read-only view of the batch)
                images[~valid] = np.nan
            yield ids, images


@contextmanager
def open_cutout_file(
    fs: pafs.FileSystem, path: str, id_column: str = "objectId", column: str = "cutout"
) -> Iterator[CutoutFile]:
    """Open a cutout file (Parquet or FITS, by suffix); a file that cannot be read as one is a
    :class:`ContractError` naming it."""
    try:
        if is_fits(path):
            from raypz.fits import FitsCutouts, open_fits  # astropy only where FITS is read

            with open_fits(fs, path) as hdul:
                yield CutoutFile(path, FitsCutouts(hdul, path), id_column, column)
            return
        with fs.open_input_file(path) as source:
            parquet = pq.ParquetFile(source)
            missing = [c for c in (id_column, column) if c not in parquet.schema_arrow.names]
            if missing:
                raise ContractError(path, missing[0], "missing (required in a cutout file)")
            require_int64_ids(path, parquet.schema_arrow, id_column)
            yield CutoutFile(path, parquet, id_column, column)
    except (OSError, ValueError, pa.ArrowException) as err:
        if isinstance(err, ContractError):
            raise
        raise ContractError(path, None, f"unreadable cutout file ({err})") from err


def _manifest_pixel_scale(root: str) -> float | None:
    """The pixel scale (arcsec) that the store's manifest (:data:`raypz.io.CUTOUT_STORE_MARKER`,
    when it has one) gives, after checking that its bands are in the contract's order (the
    cube's axes are read as ugrizy whatever they hold); ContractError naming it otherwise."""
    marker = io.join(root, io.CUTOUT_STORE_MARKER)
    try:
        manifest = json.loads(io.read_bytes(marker))
    except (FileNotFoundError, NotADirectoryError):
        return None
    if "bands" in manifest:
        require_band_order(marker, None, manifest["bands"], "bands")
    if PIXEL_SCALE_KEY not in manifest:
        return None
    return parse_pixel_scale(marker, None, manifest[PIXEL_SCALE_KEY], PIXEL_SCALE_KEY)


def _raise_on_repeat(path: str, id_column: str, ids: np.ndarray) -> None:
    if len(ids) < 2:
        return
    ordered = np.sort(ids)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        rule = (
            f"objectId {int(repeated[0])} has {int((ids == repeated[0]).sum())} cutouts "
            f"({len(np.unique(repeated))} repeated ids in all): a cutout file holds one cutout "
            "per object"
        )
        raise ContractError(path, id_column, rule)


@dataclass(frozen=True)
class JoinCounts:
    """How an object file's rows met its cutout file's.

    Attributes:
        objects: object rows.
        matched: object rows that found their cutout.
        without_cutout: object rows without one (flagged ``no_cutout`` by an image model).
        cutouts_without_object: cutouts whose objectId is not in the object file.
    """

    objects: int
    matched: int
    without_cutout: int
    cutouts_without_object: int

    def __add__(self, other: JoinCounts) -> JoinCounts:
        return JoinCounts(
            self.objects + other.objects,
            self.matched + other.matched,
            self.without_cutout + other.without_cutout,
            self.cutouts_without_object + other.cutouts_without_object,
        )


class ObjectIndex:
    """Sorted index of one object file's ids: finds the rows of a chunk's ids."""

    def __init__(self, object_ids: np.ndarray) -> None:
        self.order = np.argsort(object_ids, kind="stable")
        self.sorted = np.asarray(object_ids, dtype=np.int64)[self.order]

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(object rows of the ``ids`` that are present, mask (len(ids),) of those ids)."""
        if not len(self.sorted):
            return np.zeros(0, np.int64), np.zeros(len(ids), bool)
        pos = np.searchsorted(self.sorted, ids)
        pos = np.minimum(pos, len(self.sorted) - 1)
        found = self.sorted[pos] == ids
        return self.order[pos[found]], found


def count_join(object_ids: np.ndarray, cutout_ids: np.ndarray | None) -> JoinCounts:
    """The :class:`JoinCounts` of an object file's ids and its cutout file's (None: no file)."""
    n = len(object_ids)
    if cutout_ids is None:
        return JoinCounts(n, 0, n, 0)
    _, found = ObjectIndex(object_ids).rows(cutout_ids)
    matched = int(found.sum())
    return JoinCounts(n, matched, n - matched, len(cutout_ids) - matched)


def join_cutouts(
    objects: pa.Table,
    cutouts: CutoutFile | None,
    id_column: str,
    column: str,
    shape: tuple[int, int, int],
    chunk_rows: int = CUTOUT_CHUNK_ROWS,
    pixel_scale: float | None = None,
) -> Iterator[pa.Table]:
    """``objects`` with a cutout column ``column`` added, in tables of at most ``chunk_rows``.

    Rows come in the cutout file's order, then the object rows without a cutout (NaN
    pixels, see :func:`_missing_cutouts`); every object row comes out exactly once.
    ``shape`` (bands, H, W) and ``pixel_scale`` (arcsec) are what the model expects: a cutout
    file of another shape, or that gives another pixel scale, is an error naming it.
    """
    if cutouts is not None:
        cutouts.require_geometry(shape, pixel_scale)
    tensor = pa.fixed_shape_tensor(pa.float32(), shape)
    seen = np.zeros(objects.num_rows, dtype=bool)
    if cutouts is not None:
        cutouts.ids()  # the repeat check, before any row is emitted
        index = ObjectIndex(objects[id_column].to_numpy())
        for ids, images in cutouts.chunks(chunk_rows):
            rows, found = index.rows(ids)
            if not len(rows):
                continue
            seen[rows] = True
            matched = images if found.all() else images[found]
            yield objects.take(pa.array(rows)).append_column(
                pa.field(column, tensor),
                pa.FixedShapeTensorArray.from_numpy_ndarray(
                    np.ascontiguousarray(matched, dtype=np.float32)
                ),
            )
    rest = np.flatnonzero(~seen)
    for lo in range(0, len(rest), chunk_rows):
        part = objects.take(pa.array(rest[lo : lo + chunk_rows]))
        yield part.append_column(pa.field(column, tensor), _missing_cutouts(shape, part.num_rows))


def _missing_cutouts(shape: tuple[int, int, int], n: int) -> pa.Array:
    """Cutouts of rows that have none: NaN pixels, which an image model flags ``no_cutout``.
    Not nulls: Ray Data 2.60 cannot concatenate tensor columns with null rows."""
    return pa.FixedShapeTensorArray.from_numpy_ndarray(np.full((n, *shape), np.nan, np.float32))


def count_file_join(
    object_file: str,
    object_root: str,
    store: CutoutStore,
    id_column: str = "objectId",
    column: str = "cutout",
    shape: tuple[int, int, int] | None = None,
    pixel_scale: float | None = None,
) -> JoinCounts:
    """Check an object file's cutout file and count how their rows meet, reading only ids
    (and headers): the cutout file must be readable, hold each objectId once and, when
    ``shape`` is given, cutouts of that (bands, H, W) shape (and of ``pixel_scale`` arcsec
    when both it and the file give one). Raises a :class:`ContractError` naming the cutout
    file otherwise. Run before any prediction, so a bad store stops a job before it writes
    anything."""
    fs, _ = io.resolve(object_root)
    with open_table(fs, object_file) as table:
        ids = table.read([id_column])[id_column].to_numpy().astype(np.int64, copy=False)
    cutout_path = store.file_for(object_file, object_root)
    if cutout_path is None:
        return count_join(ids, None)
    cutout_fs, _ = io.resolve(store.root)
    with open_cutout_file(cutout_fs, cutout_path, id_column, column) as cutouts:
        if shape is not None:
            cutouts.require_geometry(shape, pixel_scale)
        return count_join(ids, cutouts.ids())


def store_counts(
    per_file: Iterable[JoinCounts],
    store: CutoutStore,
    object_files: list[str],
    object_root: str,
    id_column: str = "objectId",
    column: str = "cutout",
) -> JoinCounts:
    """The join counts of a whole table: the sum of its files' (:func:`count_file_join`, run
    wherever the caller runs them), plus the cutouts of store files that pair with no object
    file (every one of them lacks its object)."""
    fs, _ = io.resolve(store.root)
    unpaired = 0
    for path in store.unpaired(object_files, object_root):
        with open_cutout_file(fs, path, id_column, column) as cutouts:
            unpaired += cutouts.num_rows
    return sum(per_file, JoinCounts(0, 0, 0, unpaired))


def read_store_cutouts(
    store: CutoutStore,
    object_ids: np.ndarray,
    id_column: str = "objectId",
    column: str = "cutout",
) -> tuple[np.ndarray, np.ndarray]:
    """Raw cutouts (n, bands, H, W) float32 nJy/pixel from the store and their usable-row mask
    (n,) of ``object_ids``, in that order (an id without a cutout, or whose cutout holds no
    data (:func:`raypz.features.cutout_arrays.has_data`), gives zeros and False).

    For the driver's samples of a training set (the stretch fit, the validation rows): memory
    is the cutouts returned plus one chunk."""
    fs, _ = io.resolve(store.root)
    paths = sorted(store.files.values())
    with open_cutout_file(fs, paths[0], id_column, column) as first:
        shape = first.shape
    chunks = _store_chunks(fs, paths, id_column, column, shape)
    images, found = _cutouts_of(chunks, np.asarray(object_ids, dtype=np.int64), shape)
    usable = found & has_data(images)
    images[~usable] = 0.0
    return images, usable


def _store_chunks(
    fs: pafs.FileSystem, paths: list[str], id_column: str, column: str, shape: tuple[int, ...]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, cutouts) chunks of every file of a store, in file order; all of ``shape``."""
    for path in paths:
        with open_cutout_file(fs, path, id_column, column) as cutouts:
            cutouts.require_geometry(shape)
            yield from cutouts.chunks()


def _cutouts_of(
    chunks, wanted: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The cutouts of the ids ``wanted``, in that order, and which of them the store holds."""
    index = ObjectIndex(wanted)
    images = np.zeros((len(wanted), *shape), dtype=np.float32)
    found = np.zeros(len(wanted), dtype=bool)
    for ids, chunk in chunks:
        where, hit = index.rows(ids)
        images[where] = chunk[hit]
        found[where] = True
    return images, found
