"""Cutout columns -> arrays, the asinh stretch, and flips/rotations."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from raypz import flags as fl
from raypz.features.cutout_arrays import has_data
from raypz.features.cutouts import STRETCH_SIGMAS, CutoutStretch, cutout_array
from raypz.train.augment import random_dihedral


def _tensor_column(images: np.ndarray, null_rows=()) -> pa.Array:
    arr = pa.FixedShapeTensorArray.from_numpy_ndarray(images)
    if not null_rows:
        return arr
    mask = np.zeros(len(images), dtype=bool)
    mask[list(null_rows)] = True
    storage = pa.FixedSizeListArray.from_arrays(
        arr.storage.flatten(), images[0].size, mask=pa.array(mask)
    )
    return pa.ExtensionArray.from_storage(arr.type, storage)


def test_fixed_shape_tensor_column_with_nulls_and_nan(rng):
    images = rng.normal(size=(5, 6, 4, 4)).astype(np.float32)
    images[3, 2, 1, 1] = np.nan
    column = pa.chunked_array(
        [_tensor_column(images[:2]), _tensor_column(images[2:], null_rows=(0,))]
    )
    out, usable = cutout_array(column)
    assert out.shape == (5, 6, 4, 4) and out.dtype == np.float32
    assert usable.tolist() == [True, True, False, False, True]
    np.testing.assert_array_equal(out[[0, 1, 4]], images[[0, 1, 4]])
    assert not out[[2, 3]].any(), "unusable rows are zeros"


def test_numpy_and_object_batches(rng):
    images = rng.normal(size=(3, 6, 4, 4)).astype(np.float32)
    out, usable = cutout_array(images)
    np.testing.assert_array_equal(out, images)
    assert usable.all()
    rows = np.empty(3, dtype=object)
    rows[:] = [images[0], None, images[2]]
    out, usable = cutout_array(rows)
    assert usable.tolist() == [True, False, True]
    np.testing.assert_array_equal(out[2], images[2])
    with pytest.raises(ValueError, match="null"):
        cutout_array(np.array([None, None], dtype=object))


def test_stretch_fit_recovers_pixel_noise_and_is_linear_near_zero(rng):
    sigma = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 40.0])
    images = (rng.normal(size=(400, 6, 16, 16)) * sigma[None, :, None, None]).astype(np.float32)
    images[:, :, 6:10, 6:10] += 1000.0  # a bright centre does not bias the border estimate
    stretch = CutoutStretch.fit(images)
    np.testing.assert_allclose(stretch.sigma_njy, sigma, rtol=0.03)
    out = stretch(images[:1])
    small = images[0, :, 0, 0] / (STRETCH_SIGMAS * np.asarray(stretch.sigma_njy))
    np.testing.assert_allclose(out[0, :, 0, 0], np.arcsinh(small), rtol=1e-5)
    assert CutoutStretch.from_dict(stretch.to_dict()) == stretch


def test_from_batch_flags_missing_cutouts_and_names_the_column_on_wrong_shape(rng):
    images = rng.normal(size=(3, 6, 8, 8)).astype(np.float32)
    stretch = CutoutStretch("cutout", (6, 8, 8), (1.0,) * 6)
    table = pa.table({"cutout": _tensor_column(images, null_rows=(1,))})
    out, flags = stretch.from_batch(table)
    assert flags.tolist() == [0, fl.NO_CUTOUT | fl.NO_PDF, 0] and out.shape == (3, 6, 8, 8)
    wrong = CutoutStretch("cutout", (6, 16, 16), (1.0,) * 6)
    with pytest.raises(ValueError, match=r"'cutout'.*trained on"):
        wrong.from_batch(table)


def test_random_dihedral_applies_one_of_the_eight_symmetries_per_image(rng):
    images = rng.normal(size=(64, 2, 5, 5)).astype(np.float32)
    out = random_dihedral(images, rng)
    seen = set()
    for src, dst in zip(images, out, strict=True):
        matches = [
            (k, m)
            for k in range(4)
            for m in (False, True)
            if np.array_equal(
                np.rot90(src, k, axes=(1, 2))[..., ::-1] if m else np.rot90(src, k, axes=(1, 2)),
                dst,
            )
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 8, "every symmetry is drawn"


def test_raw_cutouts_are_a_view_and_the_device_stretch_flags_rows_without_data(rng):
    """The predictor's image path: raw pixels (a view of the Arrow buffer when no row is null)
    go to the device, where the stretch zeroes and reports rows with a non-finite pixel and
    rows of all-zero pixels (how cutout services fill a cutout without data; before, such a
    row got a confident PDF). One band of zeros is data, as is one nonzero pixel."""
    images = rng.normal(size=(7, 6, 8, 8)).astype(np.float32) * 30
    images[2, 5, 7, 7] = np.inf
    images[4] = 0.0
    images[5, 1] = 0.0
    images[6] = 0.0
    images[6, 0, 0, 0] = 1e-3
    stretch = CutoutStretch("cutout", (6, 8, 8), tuple(np.linspace(1.0, 6.0, 6)))
    column = _tensor_column(images)
    raw, valid = stretch.raw_from_batch(pa.table({"cutout": column}))
    assert valid.all() and not raw.flags.writeable, "no copy of the Arrow buffer"
    assert np.shares_memory(raw, column.storage.flatten().to_numpy())
    out, usable = stretch.stretch_tensor(torch.from_numpy(images))
    assert usable.tolist() == [True, True, False, True, False, True, True]
    assert not out[2].any()
    assert has_data(images).tolist() == usable.tolist()  # the numpy rule of stores and columns
    assert cutout_array(_tensor_column(images))[1].tolist() == usable.tolist()
    scale = STRETCH_SIGMAS * np.asarray(stretch.sigma_njy, np.float32)[None, :, None, None]
    expected = np.arcsinh(images[[0, 1, 3]] / scale)
    np.testing.assert_allclose(out[[0, 1, 3]].numpy(), expected, rtol=2e-7, atol=1e-7)
    stretched, flags = stretch.from_batch(pa.table({"cutout": column}))
    gone = fl.NO_CUTOUT | fl.NO_PDF
    assert flags.tolist() == [0, 0, gone, 0, gone, 0, 0]
    np.testing.assert_array_equal(stretched, out.numpy())


def test_cutout_array_reads_nested_fixed_size_lists_with_null_rows():
    """The other fixed-shape form the contract accepts (raypz.schema.rules): (6, H, W) as
    fixed-size lists of fixed-size lists, a null row among them."""
    x = np.arange(3 * 6 * 2 * 2, dtype=np.float32).reshape(3, 6, 2, 2)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 2)
    rows = pa.FixedSizeListArray.from_arrays(
        pa.FixedSizeListArray.from_arrays(inner, 2), 6, mask=pa.array([False, True, False])
    )
    out, usable = cutout_array(rows)
    assert out.shape == (3, 6, 2, 2) and usable.tolist() == [True, False, True]
    np.testing.assert_array_equal(out[[0, 2]], x[[0, 2]])
    assert not out[1].any()
