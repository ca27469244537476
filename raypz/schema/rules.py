"""Schema rules of the contract: required columns and their types, read from a footer."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from itertools import chain

import pyarrow as pa

from raypz import io
from raypz.columns import BANDS, DEFAULT_COLUMNS, ColumnTemplate
from raypz.schema.errors import ContractError
from raypz.schema.files import open_object_table

_RAY_TENSOR = "ray.data.arrow_tensor"
"""Ray Data's tensor extension types are named ``ray.data.arrow_tensor[_v2]``."""

PIXEL_SCALE_KEY = "pixel_scale_arcsec"
"""Where a cutout column's field metadata, or a store's manifest, gives its pixel scale."""

PIXEL_SCALE_RTOL = 1e-3
"""Pixel scales (arcsec) closer than this, relatively, are the same (a rounded header value)."""


def check_file_schema(
    path: str,
    schema: pa.Schema | None = None,
    columns: ColumnTemplate = DEFAULT_COLUMNS,
    bands: tuple[str, ...] = BANDS,
    require_labels: bool = False,
    require_cutouts: bool = False,
    cutout_shape: tuple[int, int, int] | None = None,
    cutout_pixel_scale: float | None = None,
) -> pa.Schema:
    """Check one file's schema against the contract, reading at most its footer (Parquet) or
    header (FITS).

    Cheap enough to run on every file an inference job opens.

    Args:
        path: the file (Parquet or FITS, by suffix); read when ``schema`` is None, otherwise
            only named in errors.
        schema: the file's Arrow schema, if already known.
        columns: the column names of the input.
        bands: the bands that must be present.
        require_labels: the redshift column is required (training).
        require_cutouts: the cutout column, a (bands, H, W) float tensor, is required.
        cutout_shape: with ``require_cutouts``, the (bands, H, W) it must have (a model's).
        cutout_pixel_scale: with ``require_cutouts``, the pixel scale (arcsec) it must have
            when its field metadata gives one (a model's; None: not checked).

    Returns:
        The schema checked.

    Raises:
        ContractError: unreadable footer, missing column or wrong type.
    """
    if schema is None:
        fs, inner = io.resolve(path)
        with open_object_table(fs, inner) as table:
            schema = table.schema
    required = [columns.object_id, *value_columns(columns, bands, require_labels)]
    required += [columns.cutout] if require_cutouts else []
    missing = [name for name in required if name not in schema.names]
    if missing:
        also = f"; also missing: {', '.join(missing[1:])}" if len(missing) > 1 else ""
        rule = f"missing (required by the object-table contract){also}"
        if missing == [columns.cutout]:
            rule = "missing (an image model reads cutouts: a column, or a store given --cutouts)"
        raise ContractError(path, missing[0], rule)

    require_int64_ids(path, schema, columns.object_id)
    for name in value_columns(columns, bands, require_labels):
        _require(path, schema, name, pa.types.is_floating, "a floating type (float32/float64)")
    for name in chain(*columns.epoch_columns(bands)):
        if name in schema.names:
            _require(path, schema, name, _is_float_list, "a list of floats")
    fluxes = [*columns.flux_columns(bands), *columns.flux_err_columns(bands)]
    for name, unit in [(columns.ra, "deg"), (columns.dec, "deg"), *((f, "nJy") for f in fluxes)]:
        _require_declared_unit(path, schema.field(name), unit)
    if require_cutouts:
        field = schema.field(columns.cutout)
        check_cutout_field(path, field, len(bands), cutout_shape, cutout_pixel_scale)
    return schema


def value_columns(columns: ColumnTemplate, bands: tuple[str, ...], labels: bool) -> list[str]:
    """The float columns whose values are checked: coordinates, fluxes, errors, labels."""
    fluxes = [*columns.flux_columns(bands), *columns.flux_err_columns(bands)]
    return [columns.ra, columns.dec, *fluxes] + ([columns.redshift] if labels else [])


def check_same_types(
    path: str, schema: pa.Schema, names: list[str], first: dict[str, tuple[pa.DataType, str]]
) -> None:
    """A column's type must not change between shards (readers would fail to unify them).

    ``first`` maps each column to its type and file where first seen; it is updated.
    """
    for name in names:
        dtype = schema.field(name).type
        seen, where = first.setdefault(name, (dtype, path))
        if dtype != seen:
            raise ContractError(path, name, f"type {dtype} differs from {seen} in {where}")


def _require(
    path: str, schema: pa.Schema, name: str, ok: Callable[[pa.DataType], bool], wanted: str
) -> None:
    dtype = schema.field(name).type
    if not ok(dtype):
        raise ContractError(path, name, f"type {dtype} is not {wanted}")


def require_int64_ids(path: str, schema: pa.Schema, name: str) -> None:
    """ContractError unless the id column ``name`` has an integer type whose every value
    int64 holds: float ids would be truncated and uint64 ones wrapped, silently, and then
    join the wrong rows."""
    _require(
        path,
        schema,
        name,
        _fits_int64,
        "an integer type that int64 holds (int8-int64, uint8-uint32; cast uint64 ids to int64)",
    )


def _require_declared_unit(path: str, field: pa.Field, unit: str) -> None:
    """ContractError when the field declares a unit (its ``unit`` metadata: FITS TUNIT, or
    a Parquet writer's) that is another than the contract's ``unit``, e.g. ``rad`` for a
    coordinate (Rubin's afw tables) or ``uJy`` for a flux; their values would pass the range
    checks and land in the wrong sky pixel, or 1000 times too faint. A unit that astropy
    cannot read is left to the value checks."""
    declared = (field.metadata or {}).get(b"unit", b"").decode(errors="replace").strip()
    if not declared:
        return
    import astropy.units as u  # only files that declare units pay for the import

    for text in (declared, declared.lower(), declared.removesuffix("s")):
        try:
            found = u.Unit(text)
            break
        except (ValueError, TypeError):
            continue
    else:
        return
    if found != u.Unit(unit):
        raise ContractError(
            path, field.name, f"declared unit {declared!r} is not {unit} (convert the column)"
        )


def _fits_int64(dtype: pa.DataType) -> bool:
    """Every value of the type is an int64 (uint64 is not: ids from 2^63 would not cast)."""
    return pa.types.is_signed_integer(dtype) or (
        pa.types.is_unsigned_integer(dtype) and dtype.bit_width <= 32
    )


def _is_list(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
    )


def _is_float_list(dtype: pa.DataType) -> bool:
    return _is_list(dtype) and pa.types.is_floating(dtype.value_type)


def check_cutout_field(
    path: str,
    field: pa.Field,
    n_bands: int = len(BANDS),
    model_shape: tuple[int, int, int] | None = None,
    model_pixel_scale: float | None = None,
) -> tuple[int, int, int]:
    """The (bands, H, W) shape of a cutout column; ContractError unless it is a fixed-shape
    float tensor with ``n_bands`` bands (of ``model_shape``, when given), in ugrizy order when
    its field metadata names them (``bands``, as raypz's writers do), and of the pixel scale
    ``model_pixel_scale`` (arcsec) when both it and the field metadata give one."""
    shape, value_type = _tensor_shape(field)
    if shape is None or len(shape) != 3 or shape[0] != n_bands or min(shape) < 1:
        rule = f"shape {shape} is not a fixed (bands={n_bands}, H, W) tensor"
        raise ContractError(path, field.name, rule)
    if not pa.types.is_floating(value_type):
        raise ContractError(path, field.name, f"values of type {value_type} are not floats")
    bands = (field.metadata or {}).get(b"bands", b"").decode()
    if bands:  # the field says which bands its axis holds
        require_band_order(path, field.name, bands, "bands")
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    if model_shape is not None:
        require_cutout_shape(path, field.name, shape, model_shape)
    require_pixel_scale(path, field.name, field_pixel_scale(path, field), model_pixel_scale)
    return shape


def field_pixel_scale(path: str, field: pa.Field) -> float | None:
    """The pixel scale (arcsec) a cutout column's field metadata gives (``pixel_scale_arcsec``,
    as raypz's writers put it), or None; ContractError naming the file when it is no positive
    number."""
    raw = (field.metadata or {}).get(PIXEL_SCALE_KEY.encode())
    if raw is None:
        return None
    return parse_pixel_scale(path, field.name, raw.decode(), PIXEL_SCALE_KEY)


def parse_pixel_scale(path: str, column: str | None, value: object, what: str) -> float:
    """``value``, the pixel scale a file gives in its ``what`` (field metadata, FITS card or
    manifest entry), as arcsec per pixel; ContractError unless it is a positive number."""
    try:
        scale = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        rule = f"{what} {value!r} is not a positive pixel scale (arcsec)"
        raise ContractError(path, column, rule)
    return scale


def require_pixel_scale(
    path: str, column: str | None, scale: float | None, model_scale: float | None
) -> None:
    """ContractError naming the file unless its cutouts' pixel scale ``scale`` (arcsec) is the
    model's: a CNN learns sizes and profiles in pixels, so another scale gives confident, wrong
    PDFs. Not checked when either is unknown (None)."""
    if scale is None or model_scale is None:
        return
    if not same_pixel_scale(scale, model_scale):
        rule = f"pixels of {scale:g} arcsec, the model was trained on {model_scale:g} arcsec pixels"
        raise ContractError(path, column, rule)


def same_pixel_scale(a: float, b: float) -> bool:
    """Whether two pixel scales (arcsec) are one, within :data:`PIXEL_SCALE_RTOL` (a rounded
    header value)."""
    return math.isclose(a, b, rel_tol=PIXEL_SCALE_RTOL)


def require_band_order(path: str, column: str | None, bands: str, what: str) -> None:
    """ContractError naming the file unless ``bands``, what a cutout file (or store) says its
    band axis holds (in its ``what``: a FITS card, a field's or a manifest's entry), is
    ugrizy: the axis is read in that order whatever it holds."""
    if bands != "".join(BANDS):
        rule = f"{what} {bands!r}: cutouts hold {''.join(BANDS)!r}, in that order"
        raise ContractError(path, column, rule)


def require_cutout_shape(
    path: str, column: str, shape: tuple[int, ...], model_shape: tuple[int, ...]
) -> None:
    """ContractError naming the file and column unless its cutouts have the model's shape."""
    if tuple(shape) != tuple(model_shape):
        rule = f"cutouts of shape {tuple(shape)}, the model reads {tuple(model_shape)}"
        raise ContractError(path, column, rule)


def _tensor_shape(field: pa.Field) -> tuple[tuple[int, ...] | None, pa.DataType]:
    """Per-row shape and value type of a tensor column; shape None when not fixed.

    Understood: Arrow's ``fixed_shape_tensor``, nested fixed-size lists, and Ray Data's tensor
    extension, registered (``.shape``) or read without Ray (a list whose field metadata holds
    the shape as JSON).
    """
    dtype = field.type
    if isinstance(dtype, pa.FixedShapeTensorType):
        return tuple(dtype.shape), dtype.value_type
    if isinstance(dtype, pa.ExtensionType):
        shape = getattr(dtype, "shape", None)
        return (tuple(shape) if shape is not None else None), _leaf_type(dtype.storage_type)
    meta = field.metadata or {}
    if meta.get(b"ARROW:extension:name", b"").decode().startswith(_RAY_TENSOR):
        shape = json.loads(meta.get(b"ARROW:extension:metadata", b"null"))
        return (tuple(shape) if isinstance(shape, list) else None), _leaf_type(dtype)
    sizes = []
    while pa.types.is_fixed_size_list(dtype):
        sizes.append(dtype.list_size)
        dtype = dtype.value_type
    return (tuple(sizes) if sizes else None), dtype


def _leaf_type(dtype: pa.DataType) -> pa.DataType:
    while _is_list(dtype):
        dtype = dtype.value_type
    return dtype
