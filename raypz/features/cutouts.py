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
from raypz.features.cutout_arrays import cutout_array
from raypz.metrics.point import MAD_TO_SIGMA
from raypz.rowops import host_tensor

STRETCH_SIGMAS = 3.0
"""The stretch turns from linear to logarithmic at this many pixel-noise sigmas."""
BORDER_PIXELS = 3
"""Width of the frame of border pixels used to estimate the sky noise."""


@dataclass(frozen=True)
class CutoutStretch:
    """The fitted cutout normalisation; everything needed to reproduce it at inference.

    Attributes:
        column: name of the cutout column in the object table.
        shape: (bands, H, W) of one cutout.
        sigma_njy: pixel noise per band, nJy/pixel.
        pixel_scale_arcsec: arcsec per pixel of the training cutouts, as their files declared
            it (None: they did not); inference refuses cutouts that declare another.
    """

    column: str
    shape: tuple[int, int, int]
    sigma_njy: tuple[float, ...]
    pixel_scale_arcsec: float | None = None

    @classmethod
    def fit(
        cls, images: np.ndarray, column: str = "cutout", pixel_scale_arcsec: float | None = None
    ) -> CutoutStretch:
        """Fit the per-band noise on training cutouts (N, C, H, W), nJy/pixel, of
        ``pixel_scale_arcsec`` arcsec pixels (when known)."""
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"CutoutStretch.fit needs (N, C, H, W) images, got {images.shape}")
        b = BORDER_PIXELS
        frame = np.ones(images.shape[2:], dtype=bool)
        frame[b:-b, b:-b] = False
        border = images[:, :, frame]  # (N, C, border pixels)
        per_band = np.moveaxis(border, 1, 0).reshape(images.shape[1], -1)
        med = np.median(per_band, axis=1, keepdims=True)
        sigma = MAD_TO_SIGMA * np.median(np.abs(per_band - med), axis=1)
        sigma = np.where(sigma > 0, sigma, 1.0)
        shape = tuple(int(s) for s in images.shape[1:])
        return cls(column, shape, tuple(float(s) for s in sigma), pixel_scale_arcsec)

    def stretch_tensor(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stretched images (N, C, H, W) float32 from nJy/pixel on ``images``' device, and the
        rows' usability (N,) bool: rows that hold no data (a non-finite pixel, or every pixel
        exactly zero: :func:`raypz.features.cutout_arrays.has_data`) become zeros and False.

        Done where the network runs, so a GPU actor's host only moves the raw pixels (a
        cutout is ~24 kB; the stretch is several passes over it)."""
        flat = images.flatten(1)
        usable = torch.isfinite(flat).all(dim=1) & (flat != 0).any(dim=1)  # (N,), as has_data
        sigma = torch.tensor(self.sigma_njy, dtype=torch.float32, device=images.device)
        scale = (STRETCH_SIGMAS * sigma)[None, :, None, None]
        stretched = torch.asinh(images / scale)
        return torch.where(usable[:, None, None, None], stretched, 0.0), usable

    def raw_from_batch(
        self, batch: Mapping[str, np.ndarray] | pa.Table
    ) -> tuple[np.ndarray, np.ndarray]:
        """A batch's cutouts (N, C, H, W) float32 in nJy/pixel, unstretched, and the rows
        whose cutout is not null (N,) bool. Without nulls the array is a read-only view of the
        Arrow buffer (no copy on the host)."""
        images, valid = cutout_array(batch[self.column], self.shape, check_data=False)
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
        on rows without a usable cutout (null, or no data: a non-finite pixel, or all zeros),
        whose images are zeros."""
        images, valid = self.raw_from_batch(batch)
        stretched, has_data = self.stretch_tensor(host_tensor(np.asarray(images, np.float32)))
        usable = valid & has_data.numpy()
        flags = np.where(usable, 0, fl.NO_CUTOUT | fl.NO_PDF).astype(np.int32)
        return stretched.numpy(), flags

    def to_dict(self) -> dict:
        """JSON-ready form for model.json."""
        return {
            "column": self.column,
            "shape": list(self.shape),
            "sigma_njy": list(self.sigma_njy),
            "pixel_scale_arcsec": self.pixel_scale_arcsec,
        }

    @classmethod
    def from_dict(cls, d: dict) -> CutoutStretch:
        """Inverse of :meth:`to_dict` (a model saved before the pixel scale was recorded
        has none)."""
        scale = d.get("pixel_scale_arcsec")
        return cls(d["column"], tuple(d["shape"]), tuple(d["sigma_njy"]), scale)
