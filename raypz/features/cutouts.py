"""Cutouts (nJy/pixel) -> normalised CNN inputs: a per-band asinh stretch.

    x = asinh(pixel / (STRETCH_SIGMAS * sigma_b))

``sigma_b`` is band b's pixel noise (nJy/pixel), fitted robustly on training cutouts (1.4826 x
the median absolute deviation of the border pixels, which hold mostly sky). The stretch is
linear within a few noise sigmas (so noise keeps its Gaussian shape) and logarithmic for bright
cores (so one bright galaxy does not dominate a batch). The same ``sigma_b`` is applied to every
input, whatever its depth: the network sees physical surface brightness, and a shallower survey
looks noisier, which is exactly the shift that domain adaptation has to absorb.

Rows whose cutout is null or holds non-finite pixels get zeros and the NO_CUTOUT and NO_PDF
flags (an image model cannot predict them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from raypz import flags as fl
from raypz.rowops import host_tensor

STRETCH_SIGMAS = 3.0
"""The stretch turns from linear to logarithmic at this many pixel-noise sigmas."""
BORDER_PIXELS = 3
"""Width of the frame of border pixels used to estimate the sky noise."""


def cutout_array(
    values, shape: tuple[int, ...] | None = None, check_finite: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A batch's cutout column as (N, C, H, W) float32 and a (N,) bool mask of usable rows.

    Accepts Arrow's ``fixed_shape_tensor`` (a Table column or array), Ray Data's numpy batch
    form (an (N, C, H, W) array, or an object array of per-row arrays / None), and nested lists.
    Null rows, and with ``check_finite`` rows with non-finite pixels, are returned as zeros with
    mask False. Without ``check_finite``, an Arrow column without nulls comes back as a
    read-only view of its buffer. ``shape`` (C, H, W) is needed only when every row is null.
    """
    if isinstance(values, pa.ChunkedArray):  # one chunk (a Ray Data block): no copy
        if values.num_chunks == 1:
            values = values.chunk(0)
        else:
            values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    if isinstance(values, pa.ExtensionArray) and isinstance(values.type, pa.FixedShapeTensorType):
        valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        row_shape = tuple(values.type.shape)
        flat = values.storage.flatten().to_numpy(zero_copy_only=False)
        if valid.all() and not check_finite and flat.dtype == np.float32:
            return flat.reshape(len(values), *row_shape), valid
        images = np.zeros((len(values), *row_shape), dtype=np.float32)
        if valid.all():
            images[:] = flat.reshape(images.shape)
        elif valid.any():  # flatten() skips null rows
            images[valid] = flat.reshape(-1, *row_shape)
    else:
        images, valid = _from_rows(values, shape)
    if not check_finite:
        return images, valid
    finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
    usable = valid & finite
    images[~usable] = 0.0
    return images, usable


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


@dataclass(frozen=True)
class CutoutStretch:
    """The fitted cutout normalisation; everything needed to reproduce it at inference.

    Attributes:
        column: name of the cutout column in the object table.
        shape: (bands, H, W) of one cutout.
        sigma_njy: pixel noise per band, nJy/pixel.
    """

    column: str
    shape: tuple[int, int, int]
    sigma_njy: tuple[float, ...]

    @classmethod
    def fit(cls, images: np.ndarray, column: str = "cutout") -> CutoutStretch:
        """Fit the per-band noise on training cutouts (N, C, H, W), nJy/pixel."""
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"CutoutStretch.fit needs (N, C, H, W) images, got {images.shape}")
        b = BORDER_PIXELS
        frame = np.ones(images.shape[2:], dtype=bool)
        frame[b:-b, b:-b] = False
        border = images[:, :, frame]  # (N, C, border pixels)
        per_band = np.moveaxis(border, 1, 0).reshape(images.shape[1], -1)
        med = np.median(per_band, axis=1, keepdims=True)
        sigma = 1.4826 * np.median(np.abs(per_band - med), axis=1)
        sigma = np.where(sigma > 0, sigma, 1.0)
        return cls(column, tuple(int(s) for s in images.shape[1:]), tuple(float(s) for s in sigma))

    def stretch_tensor(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stretched images (N, C, H, W) float32 from nJy/pixel on ``images``' device, and the
        rows' usability (N,) bool: rows with a non-finite pixel become zeros and False.

        Done where the network runs, so a GPU actor's host only moves the raw pixels (a
        cutout is ~24 kB; the stretch is several passes over it)."""
        finite = torch.isfinite(images).flatten(1).all(dim=1)  # (N,)
        sigma = torch.tensor(self.sigma_njy, dtype=torch.float32, device=images.device)
        scale = (STRETCH_SIGMAS * sigma)[None, :, None, None]
        stretched = torch.asinh(images / scale)
        return torch.where(finite[:, None, None, None], stretched, 0.0), finite

    def raw_from_batch(
        self, batch: Mapping[str, np.ndarray] | pa.Table
    ) -> tuple[np.ndarray, np.ndarray]:
        """A batch's cutouts (N, C, H, W) float32 in nJy/pixel, unstretched, and the rows
        whose cutout is not null (N,) bool. Without nulls the array is a read-only view of the
        Arrow buffer (no copy on the host)."""
        images, valid = cutout_array(batch[self.column], self.shape, check_finite=False)
        if images.shape[1:] != self.shape:
            raise ValueError(
                f"column {self.column!r}: cutouts of shape {images.shape[1:]}, the model "
                f"was trained on {self.shape}"
            )
        return images, valid

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Stretched images (N, C, H, W) float32 from nJy/pixel (:meth:`stretch_tensor` on
        the CPU)."""
        return self.stretch_tensor(host_tensor(np.asarray(images, dtype=np.float32)))[0].numpy()

    def from_batch(
        self, batch: Mapping[str, np.ndarray] | pa.Table
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stretched cutouts (N, C, H, W) of a batch and flags (N,) int32: NO_CUTOUT | NO_PDF
        on rows without a usable cutout (null, or a non-finite pixel), whose images are
        zeros."""
        images, valid = self.raw_from_batch(batch)
        stretched, finite = self.stretch_tensor(host_tensor(np.asarray(images, dtype=np.float32)))
        usable = valid & finite.numpy()
        flags = np.where(usable, 0, fl.NO_CUTOUT | fl.NO_PDF).astype(np.int32)
        return stretched.numpy(), flags

    def to_dict(self) -> dict:
        """JSON-ready form for model.json."""
        return {"column": self.column, "shape": list(self.shape), "sigma_njy": list(self.sigma_njy)}

    @classmethod
    def from_dict(cls, d: dict) -> CutoutStretch:
        """Inverse of :meth:`to_dict`."""
        return cls(d["column"], tuple(d["shape"]), tuple(d["sigma_njy"]))
