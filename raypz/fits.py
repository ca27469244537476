"""FITS files with astropy: object tables (a binary-table HDU) and cutout files (an image cube).

**Object tables.** The first binary-table HDU of a ``.fits`` file holds the rows; column names
follow the object-table contract (``objectId``, ``coord_ra``, ``{b}_cModelFlux`` ...), units in
``TUNIT`` (``nJy``, ``deg``) become the Arrow fields' ``unit`` metadata, integer ``TNULL`` values
and float NaNs are missing values. :class:`FitsTable` exposes the same schema / row count /
batches as a Parquet file, so every check of :mod:`raypz.schema` applies unchanged.

**Cutout files** (:func:`write_cutout_fits`, :class:`FitsCutouts`), one per object shard::

    HDU 0  PRIMARY   no data; RAYPZ = 'cutouts', BANDS = 'ugrizy', NOBJ = N
    HDU 1  OBJECTS   binary table, one column objectId (K = int64): row i is cutout i
    HDU 2  CUTOUTS   float32 image cube, numpy shape (N, bands, H, W) (NAXIS4 = N objects,
                     NAXIS3 = bands in BANDS order, NAXIS2 = H, NAXIS1 = W);
                     BUNIT = 'nJy/pixel', PIXSCALE = arcsec per pixel

One cube rather than one HDU per band, so a file is written in one pass over the objects
(astropy's ``StreamingHDU``) and a range of objects is read with one seek (``section``), without
loading the file. Files are read through pyarrow's filesystems, so they may be local or on S3.
"""

from __future__ import annotations

import gzip
import itertools
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from io import BytesIO

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
from astropy import units
from astropy.io import fits

from raypz import io
from raypz.columns import BANDS
from raypz.schema.errors import ContractError
from raypz.schema.rules import parse_pixel_scale, require_band_order

OBJECTS_EXTNAME = "OBJECTS"
"""EXTNAME of a cutout file's table of objectIds."""
CUTOUTS_EXTNAME = "CUTOUTS"
"""EXTNAME of a cutout file's image cube."""
PIXEL_UNIT = "nJy/pixel"
"""BUNIT of a cutout cube: the contract's unit of cutout pixels (a file without BUNIT is
taken to be in it)."""


def _is_pixel_unit(bunit: str) -> bool:
    """True when the FITS unit string ``bunit`` means nJy per pixel (or plain nJy)."""
    unit = units.Unit(bunit, format="fits", parse_strict="silent")
    return unit in (units.nJy / units.pix, units.nJy)


@contextmanager
def open_fits(fs: pafs.FileSystem, path: str) -> Iterator[fits.HDUList]:
    """Open a FITS file on any pyarrow filesystem (local or S3) through a random-access file.

    Not memory-mapped: a cube's ``section`` is read with a seek, and the pages read do not stay
    mapped in the reading process (mapped cutout files made a read task's resident memory grow
    with every file it joined).

    A gzip-compressed file (``.gz``) allows no seeking: it is decompressed into memory first,
    so it costs its uncompressed size in RAM while open."""
    if path.lower().endswith(".gz"):
        with fs.open_input_stream(path, compression="gzip") as stream:
            data = BytesIO(stream.read())
        with fits.open(data, lazy_load_hdus=True) as hdul:
            yield hdul
        return
    with fs.open_input_file(path) as f, fits.open(f, lazy_load_hdus=True) as hdul:
        yield hdul


def _native(values: np.ndarray) -> np.ndarray:
    """FITS arrays are big-endian; Arrow wants native byte order."""
    return values.astype(values.dtype.newbyteorder("="), copy=False)


def _arrow_type(column: fits.Column) -> pa.DataType:
    """The Arrow type of the values astropy reads from ``column`` (from the header alone)."""
    if column.format.p_format:  # a variable-length array (P/Q): a list per row
        return pa.list_(_numpy_type(fits.column.FITS2NUMPY[column.format.p_format]))
    dtype = column.dtype
    base = dtype.base if dtype.shape else dtype
    if base.kind in "SU":
        return pa.string()
    value = _scaled_type(base.newbyteorder("="), column.bzero, column.bscale)
    if dtype.shape:  # a vector column (TDIM / repeat count): a fixed-size list per row
        return pa.list_(value, int(np.prod(dtype.shape)))
    return value


def _numpy_type(code: str) -> pa.DataType:
    return pa.from_numpy_dtype(np.dtype(code))


def _scaled_type(raw: np.dtype, bzero: float | None, bscale: float | None) -> pa.DataType:
    """The type of integers stored as ``raw`` after TZERO / TSCAL, as astropy applies them:
    FITS's conventions for unsigned integers (TZERO = 2^(bits - 1)) and signed bytes
    (TZERO = -128) keep integers, any other scaling gives floats."""
    zero, scale = bzero or 0, 1 if bscale is None else bscale
    if raw.kind not in "iu" or (zero == 0 and scale == 1):
        return pa.from_numpy_dtype(raw)
    half = 2 ** (8 * raw.itemsize - 1)
    if scale == 1 and raw.kind == "i" and zero == half:
        return _numpy_type(f"u{raw.itemsize}")
    if scale == 1 and raw.kind == "u" and zero == -half:
        return _numpy_type(f"i{raw.itemsize}")
    return pa.float64()


class FitsTable:
    """The object table in a FITS file's first binary-table HDU, read as Arrow.

    Args:
        hdul: the open file (see :func:`open_fits`).
        path: the file, for error messages.
    """

    def __init__(self, hdul: fits.HDUList, path: str) -> None:
        tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
        if not tables:
            raise ValueError(f"{path}: no binary-table HDU (a FITS object table needs one)")
        self.hdu = tables[0]
        self.path = path
        self._columns = {c.name: c for c in self.hdu.columns}

    @property
    def num_rows(self) -> int:
        """Rows of the table (from the header; nothing is read)."""
        return int(self.hdu.header["NAXIS2"])

    @property
    def schema(self) -> pa.Schema:
        """Arrow schema from the header: types from TFORM, ``unit`` metadata from TUNIT."""
        fields = []
        for name, col in self._columns.items():
            meta = {"unit": col.unit} if col.unit else None
            fields.append(pa.field(name, _arrow_type(col), metadata=meta))
        return pa.schema(fields)

    def read(
        self, columns: list[str] | None = None, start: int = 0, stop: int | None = None
    ) -> pa.Table:
        """Rows ``start:stop`` of ``columns`` (all by default) as an Arrow table."""
        names = list(self._columns) if columns is None else columns
        missing = [n for n in names if n not in self._columns]
        if missing:
            raise KeyError(f"{self.path}: no column {missing[0]!r}")
        data = self.hdu.data[start:stop]
        schema = self.schema
        arrays = [self._array(data, name, schema.field(name).type) for name in names]
        return pa.Table.from_arrays(arrays, schema=pa.schema([schema.field(n) for n in names]))

    def iter_batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The rows in batches of at most ``batch_rows`` (bounded memory for large files)."""
        for lo in range(0, self.num_rows, batch_rows):
            yield from self.read(columns, lo, lo + batch_rows).to_batches()

    def _array(self, data: fits.FITS_rec, name: str, dtype: pa.DataType) -> pa.Array:
        if pa.types.is_list(dtype):  # variable-length arrays: one numpy array per row
            rows = [_native(np.asarray(v)) for v in data[name]]
            offsets = np.cumsum([0, *(len(v) for v in rows)], dtype=np.int32)
            flat = np.concatenate(rows) if rows else np.zeros(0)
            return pa.ListArray.from_arrays(offsets, pa.array(flat, type=dtype.value_type))
        values = np.asarray(data[name])
        if pa.types.is_string(dtype):
            return pa.array([v.strip() for v in values.astype(str)], pa.string())
        values = _native(values)
        if pa.types.is_fixed_size_list(dtype):
            return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), dtype.list_size)
        column = self._columns[name]
        mask = None
        if column.null is not None and values.dtype.kind in "iu":  # TNULL is a stored value
            mask = values == column.null * (column.bscale or 1) + (column.bzero or 0)
        return pa.array(values, type=dtype, mask=mask)


def write_fits_table(table: pa.Table, path: str) -> None:
    """Write an object table as a FITS binary table (local or URI); the reverse of
    :class:`FitsTable`.

    Numbers keep their type (unsigned integers and int8 by FITS's TZERO conventions), strings
    become fixed-width ``A`` columns, nulls of float columns become NaN (integer columns must
    not have nulls), fixed-size lists become vector columns, lists of numbers variable-length
    arrays (``P``; a null list is refused), and a field's ``unit`` metadata becomes its TUNIT.
    Tensor columns (cutouts) are refused: cutouts go to cutout files
    (:func:`write_cutout_fits`).
    """
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        columns.append(_fits_column(field, column.combine_chunks()))
    hdu = fits.BinTableHDU.from_columns(columns, name=OBJECTS_EXTNAME)
    with _local_target(path) as local:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(local)


def _fits_column(field: pa.Field, array: pa.Array) -> fits.Column:
    unit = (field.metadata or {}).get(b"unit", b"").decode() or None
    dtype = field.type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        values = [v or "" for v in array.to_pylist()]
        width = max([len(v) for v in values] + [1])
        return fits.Column(name=field.name, format=f"{width}A", array=values, unit=unit)
    if pa.types.is_fixed_size_list(dtype) and _is_number(dtype.value_type):
        values = array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), -1)
        code, zero = _fits_code(values.dtype)
        fmt = f"{dtype.list_size}{code}"
        return fits.Column(name=field.name, format=fmt, array=values, unit=unit, bzero=zero)
    if pa.types.is_list(dtype) and _is_number(dtype.value_type):
        if array.null_count:
            raise ValueError(f"column {field.name!r}: list column with nulls")
        flat = array.values.to_numpy(zero_copy_only=False)
        offsets = array.offsets.to_numpy()
        rows = np.empty(len(array), dtype=object)
        rows[:] = [flat[a:b] for a, b in itertools.pairwise(offsets)]
        code, zero = _fits_code(flat.dtype)
        if zero is not None:
            raise ValueError(
                f"column {field.name!r}: lists of {dtype.value_type} cannot be written to FITS"
            )
        return fits.Column(name=field.name, format=f"P{code}()", array=rows, unit=unit)
    if not _is_number(dtype):
        raise ValueError(
            f"column {field.name!r}: type {dtype} cannot be written to a FITS object table"
            " (cutouts go to cutout files: raypz.fits.write_cutout_fits)"
        )
    if array.null_count and pa.types.is_integer(dtype):
        raise ValueError(f"column {field.name!r}: integer column with nulls")
    values = array.to_numpy(zero_copy_only=False)
    code, zero = _fits_code(values.dtype)
    return fits.Column(name=field.name, format=code, array=values, unit=unit, bzero=zero)


def _is_number(dtype: pa.DataType) -> bool:
    return pa.types.is_floating(dtype) or pa.types.is_integer(dtype)


def _fits_code(dtype: np.dtype) -> tuple[str, int | None]:
    """TFORM letter and TZERO (None: not needed) that store numbers of ``dtype`` exactly:
    unsigned integers wider than a byte as signed ones offset by 2^(bits - 1), int8 as bytes
    offset by -128 (astropy's plain mapping wraps the former and makes the latter logicals)."""
    half = 2 ** (8 * dtype.itemsize - 1)
    if dtype.kind == "u" and dtype.itemsize > 1:
        return fits.column.NUMPY2FITS[f"i{dtype.itemsize}"], half
    if dtype.kind == "i" and dtype.itemsize == 1:
        return "B", -half
    return fits.column.NUMPY2FITS[dtype.str[1:]], None


class FitsCutouts:
    """A cutout file (module docstring): objectIds and a cube of cutouts, read by row ranges.

    Args:
        hdul: the open file (see :func:`open_fits`).
        path: the file, for error messages.
    """

    def __init__(self, hdul: fits.HDUList, path: str) -> None:
        try:
            self.objects, self.cube = hdul[OBJECTS_EXTNAME], hdul[CUTOUTS_EXTNAME]
        except KeyError as err:
            raise ValueError(
                f"{path}: a FITS cutout file needs HDUs {OBJECTS_EXTNAME!r} (objectIds) and "
                f"{CUTOUTS_EXTNAME!r} (the (N, bands, H, W) cube)"
            ) from err
        self.path = path
        header = self.cube.header
        if header.get("NAXIS") != 4:
            raise ValueError(f"{path}: HDU {CUTOUTS_EXTNAME} is not a 4-d (N, bands, H, W) cube")
        self.num_rows = int(header["NAXIS4"])
        self.shape = (int(header["NAXIS3"]), int(header["NAXIS2"]), int(header["NAXIS1"]))
        self.unit = header.get("BUNIT") or PIXEL_UNIT
        if not _is_pixel_unit(self.unit):
            raise ContractError(
                path, None, f"BUNIT {self.unit!r}: cutout pixels must be in {PIXEL_UNIT}"
            )
        scale = header.get("PIXSCALE")
        self.pixel_scale = (  # arcsec per pixel, or None when the file does not say
            None if scale is None else parse_pixel_scale(path, None, scale, "PIXSCALE")
        )
        bands = hdul[0].header.get("BANDS")
        if bands is not None:
            require_band_order(path, None, bands, "BANDS")
        n_ids = int(self.objects.header.get("NAXIS2", 0))
        if n_ids != self.num_rows:
            rule = (
                f"HDU {OBJECTS_EXTNAME} has {n_ids} objectIds and the {CUTOUTS_EXTNAME} cube "
                f"{self.num_rows} cutouts (NAXIS4): one objectId per cutout"
            )
            raise ContractError(path, None, rule)

    def ids(self, id_column: str) -> np.ndarray:
        """The objectIds (N,) int64 of the cutouts, in file order."""
        return _native(np.asarray(self.objects.data[id_column])).astype(np.int64, copy=False)

    def images(self, start: int, stop: int) -> np.ndarray:
        """Cutouts ``start:stop`` as (n, bands, H, W) float32 in nJy/pixel (one read)."""
        return _native(np.asarray(self.cube.section[start:stop])).astype(np.float32, copy=False)


def write_cutout_fits(
    path: str,
    object_ids: np.ndarray,
    chunks: Iterable[np.ndarray],
    shape: tuple[int, int, int],
    id_column: str = "objectId",
    pixel_scale_arcsec: float | None = None,
    bands: tuple[str, ...] = BANDS,
) -> None:
    """Write a cutout file (module docstring), streaming the cube chunk by chunk.

    Args:
        path: the file to write (local or URI); it appears whole or not at all.
        object_ids: (N,) int64 ids, in the order of the cutouts.
        chunks: consecutive (n, bands, H, W) float32 arrays in nJy/pixel, N rows in all.
        shape: (bands, H, W) of one cutout.
        id_column: name of the id column of the OBJECTS table.
        pixel_scale_arcsec: written as PIXSCALE when given.
        bands: the bands of the cube's second axis, written as BANDS.
    """
    ids = np.asarray(object_ids, dtype=np.int64)
    primary = fits.PrimaryHDU()
    primary.header["RAYPZ"] = ("cutouts", "raypz cutout file (raypz.fits)")
    primary.header["BANDS"] = ("".join(bands), "bands along the cube's second axis")
    primary.header["NOBJ"] = (len(ids), "objects (rows of OBJECTS, NAXIS4 of CUTOUTS)")
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name=id_column, format="K", array=ids)], name=OBJECTS_EXTNAME
    )
    header = fits.ImageHDU(data=np.zeros((1, *shape), np.float32), name=CUTOUTS_EXTNAME).header
    header["NAXIS4"] = len(ids)
    header["BUNIT"] = (PIXEL_UNIT, "calibrated surface brightness")
    if pixel_scale_arcsec is not None:
        header["PIXSCALE"] = (pixel_scale_arcsec, "arcsec per pixel")
    with _local_target(path) as local:
        fits.HDUList([primary, table]).writeto(local)
        stream = fits.StreamingHDU(local, header)
        written = 0
        for chunk in chunks:
            stream.write(np.ascontiguousarray(chunk, dtype=np.float32))
            written += len(chunk)
        stream.close()
        if written != len(ids):
            raise ValueError(f"{path}: {written} cutouts written for {len(ids)} objectIds")


@contextmanager
def _local_target(path: str) -> Iterator[str]:
    """A local file name to write ``path``'s content to; it is moved (local) or uploaded (URI)
    to ``path`` when the block succeeds, so the file appears whole or not at all. A ``path``
    ending in ``.gz`` receives the content gzip-compressed (astropy cannot stream an HDU into
    a gzip file)."""
    fs, inner = io.resolve(path)
    local = isinstance(fs, pafs.LocalFileSystem)
    gz = inner.lower().endswith(".gz")
    directory = posixpath.dirname(inner) if local else None
    if directory:
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{posixpath.basename(inner)}.", dir=directory)
    os.close(fd)
    os.remove(tmp)  # astropy refuses to write over an existing file
    try:
        yield tmp
        if local and not gz:
            os.replace(tmp, inner)
            return
        with open(tmp, "rb") as src, io.atomic_output(path) as dst:
            if gz:
                with gzip.GzipFile(fileobj=dst, mode="wb", mtime=0) as packed:
                    shutil.copyfileobj(src, packed)
            else:
                shutil.copyfileobj(src, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
