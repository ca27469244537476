"""Cutout columns (Arrow tensors, numpy batches, lists of rows) as (N, C, H, W) float32 arrays.

No torch here: the read tasks that join cutout stores (:mod:`raypz.cutout_store`) use it
without paying torch's import, and :mod:`raypz.features.cutouts` builds its stretch on it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def cutout_array(
    values: object, shape: tuple[int, ...] | None = None, check_data: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A batch's cutout column as (N, C, H, W) float32 and a (N,) bool mask of usable rows.

    Accepts Arrow's ``fixed_shape_tensor`` or nested fixed-size lists (a Table column or
    array), Ray Data's numpy batch form (an (N, C, H, W) array, or an object array of per-row
    arrays / None), and nested lists.
    Null rows, and with ``check_data`` rows that hold no data (:func:`has_data`), are
    returned as zeros with mask False. Without ``check_data``, an Arrow column without nulls
    comes back as a read-only view of its buffer. ``shape`` (C, H, W) is needed only when
    every row is null.
    """
    if isinstance(values, pa.ChunkedArray):  # one chunk (a Ray Data block): no copy
        if values.num_chunks == 1:
            values = values.chunk(0)
        else:
            values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    fixed = _fixed_rows(values) if isinstance(values, pa.Array) else None
    if fixed is not None:
        storage, row_shape = fixed
        valid = ~np.asarray(storage.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        flat = storage
        while pa.types.is_fixed_size_list(flat.type):
            flat = flat.flatten()  # flatten() skips null rows
        flat = flat.to_numpy(zero_copy_only=False)
        if valid.all() and not check_data and flat.dtype == np.float32:
            return flat.reshape(len(values), *row_shape), valid
        images = np.zeros((len(values), *row_shape), dtype=np.float32)
        if valid.all():
            images[:] = flat.reshape(images.shape)
        elif valid.any():
            images[valid] = flat.reshape(-1, *row_shape)
    else:
        images, valid = _from_rows(values, shape)
    if not check_data:
        return images, valid
    usable = valid & has_data(images)
    images[~usable] = 0.0
    return images, usable


def has_data(images: np.ndarray) -> np.ndarray:
    """(N,) bool of cutouts (N, C, H, W) that hold data: every pixel finite, and not every
    pixel exactly zero. Cutout services and masks fill a cutout without data with NaN or with
    zeros; measured pixels carry noise, so they are never all exactly zero."""
    flat = images.reshape(len(images), -1)
    return np.isfinite(flat).all(axis=1) & (flat != 0).any(axis=1)


def _from_rows(values, shape: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(values, pa.Array):
        values = values.to_numpy(zero_copy_only=False)
    arr = np.asarray(values)
    if arr.dtype != object:
        return arr.astype(np.float32, copy=True), np.ones(len(arr), dtype=bool)
    valid = np.array([v is not None for v in arr], dtype=bool)
    if valid.any():
        shape = np.asarray(arr[np.flatnonzero(valid)[0]], dtype=np.float32).shape
    if shape is None:
        raise ValueError("cutout_array: every row is null and no shape was given")
    images = np.zeros((len(arr), *shape), dtype=np.float32)
    for i in np.flatnonzero(valid):
        images[i] = np.asarray(arr[i], dtype=np.float32).reshape(shape)
    return images, valid


def _fixed_rows(values: pa.Array) -> tuple[pa.Array, tuple[int, ...]] | None:
    """(fixed-size-list storage, per-row shape) of a ``fixed_shape_tensor`` or nested
    fixed-size-list column; None for anything else."""
    if isinstance(values.type, pa.FixedShapeTensorType):
        return values.storage, tuple(values.type.shape)
    if not pa.types.is_fixed_size_list(values.type):
        return None
    sizes, dtype = [], values.type
    while pa.types.is_fixed_size_list(dtype):
        sizes.append(dtype.list_size)
        dtype = dtype.value_type
    return values, tuple(sizes)
