"""Compact storage of gridded PDFs: a window of square-root-quantised bytes per object.

At 2e10 objects, 351 float32 bins would be 28 TB. Each PDF is stored instead as
``pdf_start`` (uint16, first grid index of its window) and ``pdf`` (bytes, one per grid point
of the window): ``q = round(255 sqrt(p / p_max))``, keeping the window where q >= 1, i.e.
p >= 3.8e-6 p_max (beyond +-5 sigma of a Gaussian). The square root spends the 8 bits evenly
in amplitude so tails keep relative precision. Decoding squares, places the window on the grid
and renormalises. Typical PDFs need 40-120 bytes; the loss in mean CRPS and PIT is measured by
``benchmarks/bench_compact_pdf.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from raypz import rowops

ENCODING = "sqrt-uint8-window-v1"
"""Name stored in the catalog metadata so readers know how to decode ``pdf``."""


@dataclass(frozen=True)
class EncodedPDFs:
    """Compact PDFs of N rows as tensors on the device that encoded them (see
    :func:`encode_tensor`); :meth:`to_arrow` brings them to the host as catalog columns.

    Attributes:
        start: (N,) int32 first grid index of each row's window (0 for a row without mass).
        offsets: (N + 1,) int32 offsets of the rows' windows in ``data``.
        data: (offsets[-1],) uint8 quantised levels of every window, in row order.
        has_pdf: (N,) bool, False for rows without mass (their value is null).
    """

    start: torch.Tensor
    offsets: torch.Tensor
    data: torch.Tensor
    has_pdf: torch.Tensor

    def to_arrow(self) -> tuple[np.ndarray, pa.BinaryArray]:
        """Window starts (N,) uint16 and the ``pdf`` column, built on the host from the
        tensors' buffers without a per-row step."""
        n = len(self.start)
        has = self.has_pdf.cpu().numpy()
        validity = None if has.all() else pa.py_buffer(np.packbits(has, bitorder="little"))
        buffers = [
            validity,
            pa.py_buffer(self.offsets.cpu().numpy()),
            pa.py_buffer(self.data.cpu().numpy()),
        ]
        values = pa.BinaryArray.from_buffers(pa.binary(), n, buffers, null_count=n - int(has.sum()))
        return self.start.cpu().numpy().astype(np.uint16), values


def encode_tensor(pdf: torch.Tensor) -> EncodedPDFs:
    """PDF rows (N, G) float32 on any device -> their compact form on that device.

    ``q = rint(sqrt(255^2 p / p_max))``; a row's window runs from its first to its last
    non-zero level. Rows without mass (all zero or not finite) get no window and a null value.
    """
    n, g = pdf.shape
    peak = pdf.amax(dim=1, keepdim=True)  # NaN for a row with a NaN, inf for one with an inf
    usable = torch.isfinite(peak) & (peak > 0)  # (N, 1)
    has = usable[:, 0]
    # (N, 1); 0 for rows without mass. A true division: torch's `scalar / tensor` multiplies
    # by a reciprocal, which moved 0.2% of the rows' levels by one quantum
    scale = torch.where(usable, torch.full_like(peak, 255.0**2) / peak, 0.0)
    q = rowops.sqrt_levels(pdf, scale)  # (N, G) uint8
    start, stop = rowops.first_last_nonzero(q)
    offsets = torch.zeros(n + 1, dtype=torch.int32, device=pdf.device)
    torch.cumsum(stop - start, dim=0, out=offsets[1:])
    # every row's window, in row order, as one flat buffer: a boolean mask of the windows
    # (8x faster than gathering by computed (row, column) indices on CPU)
    data = rowops.masked_select(q, rowops.window_mask(start, stop, g))
    return EncodedPDFs(start.to(torch.int32), offsets, data, has)


def encode(pdf: np.ndarray) -> tuple[np.ndarray, pa.BinaryArray]:
    """PDFs (N, G) -> window starts (N,) uint16 and one bytes value per row:
    :func:`encode_tensor` on the CPU.

    Rows without mass (no PDF could be made) encode as start 0 and a null value.
    """
    rows = torch.from_numpy(np.array(pdf, dtype=np.float32))
    return encode_tensor(rows).to_arrow()


def is_compact(type_: pa.DataType) -> bool:
    """Whether a ``pdf`` column of this Arrow type holds compact bytes (not float lists): any
    binary layout, since other writers (polars, casts) store them as large or view binary."""
    return (
        pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_binary_view(type_)
    )


def levels(start: np.ndarray, values: pa.Array, n_grid: int) -> np.ndarray:
    """The stored uint8 levels placed on the grid, (N, G): each row's window at its
    ``pdf_start``, zeros elsewhere and for null rows (no PDF). ``values`` may be binary,
    large binary or binary view (:func:`is_compact`)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_binary_view(values.type):  # no offsets buffer: to 64-bit offsets
        values = values.cast(pa.large_binary())
    values = pc.fill_null(values, b"")  # null: no PDF -> an all-zero row
    n = len(values)
    width = np.int64 if pa.types.is_large_binary(values.type) else np.int32
    offsets = np.frombuffer(values.buffers()[1], dtype=width)
    offsets = offsets[values.offset : values.offset + n + 1]
    buf = values.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    row = np.repeat(np.arange(n), lengths)
    col = np.arange(offsets[-1] - offsets[0]) - (offsets[row] - offsets[0]) + np.asarray(start)[row]
    out = np.zeros((n, n_grid), dtype=np.uint8)
    out[row, col] = data[offsets[0] : offsets[-1]]
    return out


def decode(start: np.ndarray, values: pa.Array, n_grid: int, dz: float) -> np.ndarray:
    """Inverse of :func:`encode`: PDFs (N, G) float32, normalised on the grid (trapezoid)."""
    out = levels(start, values, n_grid).astype(np.float32)
    out /= 255.0
    out *= out
    mass = (out.sum(axis=1) - 0.5 * (out[:, 0] + out[:, -1])) * dz
    return np.divide(out, mass[:, None], out=out, where=mass[:, None] > 0)
