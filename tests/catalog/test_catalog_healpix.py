"""The _healpix_29 index and sparse histograms (raypz.catalog.healpix)."""

from __future__ import annotations

import cdshealpix
import lsdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from astropy.coordinates import Latitude, Longitude

from raypz.catalog import (
    HEALPIX29_COLUMN,
    HEALPIX29_ORDER,
    PixelHistogram,
    healpix29,
    pixel_at_order,
    with_healpix29,
)


def sphere_points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the sphere, plus the awkward places: RA 0/360, the poles."""
    ra = np.concatenate([rng.uniform(0, 360, n), [0.0, 359.9999999, 180.0, 45.0]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, n))), [0.0, 0.0, 90.0, -90.0]])
    return ra, dec


def test_matches_cdshealpix_at_order_29_and_coarser(rng):
    ra, dec = sphere_points(rng, 5000)
    index = healpix29(ra, dec)
    assert index.dtype == np.int64
    lon, lat = Longitude(ra, unit="deg"), Latitude(dec, unit="deg")
    np.testing.assert_array_equal(index, cdshealpix.lonlat_to_healpix(lon, lat, 29))
    np.testing.assert_array_equal(
        pixel_at_order(index, 10), cdshealpix.lonlat_to_healpix(lon, lat, 10)
    )


def test_column_name_and_order_are_hats_spatial_index():
    from hats.pixel_math.spatial_index import SPATIAL_INDEX_COLUMN, SPATIAL_INDEX_ORDER

    assert (HEALPIX29_COLUMN, HEALPIX29_ORDER) == (SPATIAL_INDEX_COLUMN, SPATIAL_INDEX_ORDER)


def test_matches_the_index_lsdb_builds(rng):
    ra, dec = sphere_points(rng, 300)
    frame = pd.DataFrame({"id": np.arange(len(ra)), "ra": ra, "dec": dec})
    computed = lsdb.from_dataframe(  # no MOC, no margin: 0.1 s instead of 8 s
        frame, ra_column="ra", dec_column="dec", should_generate_moc=False, margin_threshold=None
    ).compute()
    by_id = dict(zip(computed["id"], computed.index, strict=True))
    np.testing.assert_array_equal(healpix29(ra, dec), [by_id[i] for i in frame["id"]])


@pytest.mark.parametrize(
    ("ra", "dec", "rule"),
    [
        (np.nan, 0.0, "1 positions have non-finite coordinates"),
        (10.0, np.inf, "1 positions have non-finite coordinates"),
        (10.0, 90.5, r"1 positions have a declination outside \[-90, 90\]"),
    ],
)
def test_rejects_positions_off_the_sphere(ra, dec, rule):
    with pytest.raises(ValueError, match=rule):
        healpix29(np.array([1.0, ra]), np.array([1.0, dec]))


def test_with_healpix29_puts_the_index_first_and_is_idempotent(rng):
    ra, dec = sphere_points(rng, 10)
    table = pa.table({"objectId": np.arange(len(ra)), "ra": ra, "dec": dec})
    once = with_healpix29(table, "ra", "dec")
    assert once.column_names == ["_healpix_29", "objectId", "ra", "dec"]
    assert once.equals(with_healpix29(once, "ra", "dec"))


def test_histogram_merge_equals_histogram_of_all_rows(rng):
    ra, dec = sphere_points(rng, 2000)
    index = healpix29(ra, dec)
    parts = [PixelHistogram.from_healpix29(chunk, 3) for chunk in np.array_split(index, 5)]
    merged, whole = PixelHistogram.merge(parts), PixelHistogram.from_healpix29(index, 3)
    np.testing.assert_array_equal(merged.pixels, whole.pixels)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert merged.total == len(ra) == whole.to_dense().sum()
    assert len(whole.to_dense()) == 12 * 4**3
    with pytest.raises(ValueError, match="different orders"):
        PixelHistogram.merge([whole, PixelHistogram.from_healpix29(index, 4)])


def test_pixels_near_hold_every_point_within_an_arcsec_and_no_far_pixel(rng):
    """What an evaluation reads of a catalog: the partitions of points up to 1 arcsec from
    its positions (a spec-z position off the object's), at any partition order; a pixel far
    from every position is never in."""
    from raypz.catalog.healpix import pixels_near

    ra, dec = sphere_points(rng, 300)
    angle = rng.uniform(0, 2 * np.pi, (ra.size, 40))
    dist = rng.uniform(0, 1.0, (ra.size, 40)) / 3600  # degrees
    dec_off = np.clip(dec[:, None] + dist * np.sin(angle), -90, 90)
    stretch = np.maximum(np.cos(np.radians(dec_off)), 1e-6)  # RA degrees per degree on sky
    ra_off = np.mod(ra[:, None] + dist * np.cos(angle) / stretch, 360.0)
    for order in (0, 3, 7, 11, 16):
        near = pixels_near(ra, dec, order)
        offsets = pixel_at_order(healpix29(ra_off.ravel(), dec_off.ravel()), order)
        assert np.isin(offsets, near).all(), order
    lon, lat = cdshealpix.nested.healpix_to_lonlat(np.array([1234], np.uint64), 5)  # a centre
    centre = pixels_near(lon.to_value("deg"), lat.to_value("deg"), 5)
    assert centre.tolist() == [1234]
