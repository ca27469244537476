"""The ``_healpix_29`` spatial index and sparse sky histograms of row counts.

HATS catalogs carry, per row, the nested HEALPix pixel of the position at order 29 (pixels of
about 0.4 milliarcsec). Any coarser nested pixel is a right shift of it: the order-``k`` pixel
of a row is ``_healpix_29 >> 2 * (29 - k)``. That is what makes partitioning cheap: one integer
per row decides its partition at every order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from astropy.coordinates import Latitude, Longitude
from cdshealpix.nested import lonlat_to_healpix, neighbours

HEALPIX29_COLUMN: str = "_healpix_29"
"""Name of the spatial index column in HATS catalogs (hats' ``SPATIAL_INDEX_COLUMN``)."""

HEALPIX29_ORDER: int = 29
"""HEALPix order of the spatial index (hats' ``SPATIAL_INDEX_ORDER``)."""


def healpix29(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Nested HEALPix order-29 pixel of each position, as hats and lsdb compute it.

    Args:
        ra_deg: right ascension in degrees (ICRS); any finite value, wrapped into [0, 360).
        dec_deg: declination in degrees (ICRS), in [-90, 90].

    Returns:
        int64 array of ``_healpix_29`` values, one per position.

    Raises:
        ValueError: for non-finite coordinates (hats would silently map NaN to a real pixel)
            or a declination outside [-90, 90].
    """
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    if ra.shape != dec.shape:
        raise ValueError(f"ra and dec must have the same shape, got {ra.shape} and {dec.shape}")
    bad = ~(np.isfinite(ra) & np.isfinite(dec))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} positions have non-finite coordinates")
    off = np.abs(dec) > 90.0
    if off.any():
        raise ValueError(f"{int(off.sum())} positions have a declination outside [-90, 90]")
    # hats' compute_spatial_index, called directly: importing hats costs every Ray worker
    # 1.6 s, cdshealpix 0.4 s (a test checks the two agree)
    lon, lat = Longitude(ra, unit="deg"), Latitude(dec, unit="deg")
    return lonlat_to_healpix(lon, lat, HEALPIX29_ORDER).astype(np.int64)


def with_healpix29(table: pa.Table, ra_col: str, dec_col: str) -> pa.Table:
    """``table`` with a ``_healpix_29`` column (computed from degrees) as its first column.

    An existing ``_healpix_29`` column is replaced, so the function is idempotent.
    """
    index = healpix29(
        table[ra_col].to_numpy(zero_copy_only=False), table[dec_col].to_numpy(zero_copy_only=False)
    )
    if HEALPIX29_COLUMN in table.column_names:
        table = table.drop_columns([HEALPIX29_COLUMN])
    return table.add_column(0, HEALPIX29_COLUMN, pa.array(index, type=pa.int64()))


def pixel_at_order(healpix29_index: np.ndarray, order: int) -> np.ndarray:
    """Nested pixel at ``order`` (0..29) containing each ``_healpix_29`` value."""
    if not 0 <= order <= HEALPIX29_ORDER:
        raise ValueError(f"order must be in [0, {HEALPIX29_ORDER}], got {order}")
    return np.asarray(healpix29_index, dtype=np.int64) >> (2 * (HEALPIX29_ORDER - order))


NEIGHBOURHOOD_MAX_ORDER: int = 16
"""Order of the fine pixels (~3.2 arcsec wide) whose 3 x 3 blocks :func:`pixels_near` puts
around positions: each block holds every point within a pixel's width of its position, so
within an arcsec (a match radius) with room to spare. Partitions deeper than this order are
narrower than that, and not told apart."""


def pixels_near(ra_deg: np.ndarray, dec_deg: np.ndarray, order: int) -> np.ndarray:
    """Sorted nested pixels at ``order`` (0..NEIGHBOURHOOD_MAX_ORDER) that hold a point within
    ~3 arcsec of one of the positions (degrees): the parents of the 3 x 3 blocks of order-16
    pixels around them. Exact for any point closer than an order-16 pixel's width, and tight:
    a pixel far from every position is never in. Raises ValueError for non-finite positions,
    as :func:`healpix29` does."""
    if not 0 <= order <= NEIGHBOURHOOD_MAX_ORDER:
        raise ValueError(f"order must be in [0, {NEIGHBOURHOOD_MAX_ORDER}], got {order}")
    fine = np.unique(pixel_at_order(healpix29(ra_deg, dec_deg), NEIGHBOURHOOD_MAX_ORDER))
    block = neighbours(fine.astype(np.uint64), NEIGHBOURHOOD_MAX_ORDER)  # (n, 9), -1: none
    block = block[block >= 0].astype(np.int64)
    return np.unique(block >> (2 * (NEIGHBOURHOOD_MAX_ORDER - order)))


@dataclass(frozen=True, eq=False)
class PixelHistogram:
    """Row counts per occupied nested HEALPix pixel at one order (sparse).

    Sparse because a survey covers a fraction of the sky and a block of rows a tiny one:
    per-block histograms stay small, and merging them on the driver costs the occupied pixels,
    not the 12 * 4**order pixels of the sphere.

    Attributes:
        order: HEALPix order of ``pixels``.
        pixels: sorted, unique int64 nested pixel numbers at ``order``.
        counts: int64 number of rows in each pixel (all > 0).
    """

    order: int
    pixels: np.ndarray
    counts: np.ndarray

    def __post_init__(self) -> None:
        if not 0 <= self.order <= HEALPIX29_ORDER:
            raise ValueError(f"order must be in [0, {HEALPIX29_ORDER}], got {self.order}")
        if self.pixels.shape != self.counts.shape or self.pixels.ndim != 1:
            raise ValueError("pixels and counts must be 1-D arrays of the same length")
        if np.any(np.diff(self.pixels) <= 0):
            raise ValueError("pixels must be sorted and unique")
        if np.any(self.counts <= 0):
            raise ValueError("counts must be positive (the histogram is sparse)")

    @classmethod
    def from_healpix29(cls, healpix29_index: np.ndarray, order: int) -> PixelHistogram:
        """Histogram at ``order`` of rows given by their ``_healpix_29`` values."""
        pixels, counts = np.unique(pixel_at_order(healpix29_index, order), return_counts=True)
        return cls(order, pixels.astype(np.int64), counts.astype(np.int64))

    @classmethod
    def merge(cls, histograms: Iterable[PixelHistogram]) -> PixelHistogram:
        """Sum of histograms at the same order (e.g. one per block of a first pass)."""
        parts = list(histograms)
        if not parts:
            raise ValueError("nothing to merge")
        orders = {h.order for h in parts}
        if len(orders) != 1:
            raise ValueError(f"cannot merge histograms of different orders {sorted(orders)}")
        pixels, inverse = np.unique(np.concatenate([h.pixels for h in parts]), return_inverse=True)
        counts = np.zeros(len(pixels), dtype=np.int64)
        np.add.at(counts, inverse, np.concatenate([h.counts for h in parts]))
        return cls(parts[0].order, pixels.astype(np.int64), counts)

    @property
    def total(self) -> int:
        """Number of rows counted."""
        return int(self.counts.sum())

    def to_dense(self) -> np.ndarray:
        """The full-sky int64 histogram (length 12 * 4**order), the form hats' skymaps use."""
        dense = np.zeros(12 * 4**self.order, dtype=np.int64)
        dense[self.pixels] = self.counts
        return dense
