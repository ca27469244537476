"""Partition planning and row assignment (raypz.catalog.plan, raypz.catalog.assign)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hats.pixel_math import generate_alignment
from hypothesis import given, settings
from hypothesis import strategies as st

from raypz.catalog import (
    PixelHistogram,
    assign_partitions,
    healpix29,
    pixel_at_order,
    plan_partitions,
    split_by_partition,
    with_healpix29,
)


def clustered_index(rng: np.random.Generator, n: int, n_clusters: int = 4) -> np.ndarray:
    """_healpix_29 of rows in a few clumps of different sizes and widths (degrees)."""
    centres_ra, centres_dec = rng.uniform(0, 360, n_clusters), rng.uniform(-60, 60, n_clusters)
    which = rng.choice(n_clusters, n, p=rng.dirichlet(np.ones(n_clusters)))
    width = rng.uniform(0.05, 3.0, n_clusters)[which]
    ra = np.mod(centres_ra[which] + width * rng.standard_normal(n), 360)
    dec = np.clip(centres_dec[which] + width * rng.standard_normal(n), -90, 90)
    return healpix29(ra, dec)


def check_plan_covers_exactly_once(index: np.ndarray, plan, max_rows: int) -> None:
    starts, ends = plan.healpix29_ranges()
    assert np.all(plan.nrows <= max_rows) and np.all(plan.nrows > 0)
    assert np.all(starts[1:] >= ends[:-1])  # sorted, disjoint
    inside = (index[:, None] >= starts) & (index[:, None] < ends)
    assert np.all(inside.sum(axis=1) == 1)  # every row in exactly one partition, no gap
    np.testing.assert_array_equal(inside.sum(axis=0), plan.nrows)


def test_plan_equals_hats_alignment(rng):
    index = clustered_index(rng, 20_000)
    histogram = PixelHistogram.from_healpix29(index, 7)
    for lowest in (0, 3):
        plan = plan_partitions(histogram, 900, lowest_order=lowest)
        alignment = generate_alignment(
            histogram.to_dense(), highest_order=7, lowest_order=lowest, threshold=900
        )
        expected = sorted({tuple(int(v) for v in a) for a in alignment if a is not None})
        got = sorted(zip(*(a.tolist() for a in (plan.norder, plan.npix, plan.nrows)), strict=True))
        assert got == expected
        assert plan.norder.min() >= lowest


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), max_rows=st.integers(200, 5000))
def test_plan_respects_max_rows_and_covers_each_row_once(seed, max_rows):
    rng = np.random.default_rng(seed)
    index = clustered_index(rng, 3000)
    histogram = PixelHistogram.from_healpix29(index, 10)
    if histogram.counts.max() > max_rows:
        with pytest.raises(ValueError, match="finer histogram"):
            plan_partitions(histogram, max_rows)
        return
    plan = plan_partitions(histogram, max_rows)
    check_plan_covers_exactly_once(index, plan, max_rows)
    norder, npix = assign_partitions(index, plan)
    assert all(
        np.all(pixel_at_order(index[norder == k], k) == npix[norder == k]) for k in set(norder)
    )


def test_assign_rejects_rows_outside_the_plan(rng):
    index = healpix29(rng.uniform(10, 12, 500), rng.uniform(0, 2, 500))
    plan = plan_partitions(PixelHistogram.from_healpix29(index, 10), 10_000)
    assert plan.pixels() == [(0, 4)]  # one base pixel holds them all
    stranger = healpix29(np.array([200.0]), np.array([-45.0]))
    with pytest.raises(ValueError, match=r"1 rows .* outside every planned partition"):
        assign_partitions(np.append(index, stranger), plan)


def test_split_by_partition_keeps_every_row_once(rng):
    ra, dec = rng.uniform(10, 14, 2000), rng.uniform(-2, 2, 2000)
    table = pa.table({"objectId": np.arange(2000), "ra": ra, "dec": dec})
    table = with_healpix29(table, "ra", "dec")
    plan = plan_partitions(PixelHistogram.from_healpix29(table["_healpix_29"], 10), 300)
    pieces = split_by_partition(table, plan)
    assert len(pieces) == len(plan)
    ids = np.concatenate([piece["objectId"].to_numpy() for _, _, piece in pieces])
    np.testing.assert_array_equal(np.sort(ids), np.arange(2000))
    for norder, npix, piece in pieces:
        assert np.all(pixel_at_order(piece["_healpix_29"].to_numpy(), norder) == npix)
        assert np.all(np.diff(piece["objectId"].to_numpy()) > 0)  # block order kept
    assert split_by_partition(table.slice(0, 0), plan) == []
    # the plan the predictor actors get: no histogram, the same pieces
    slim = plan.without_histogram()
    assert slim.histogram.pixels.size == 0 and slim.histogram.order == plan.histogram.order
    assert [(k, n, t) for k, n, t in split_by_partition(table, slim)] == pieces
    # rows already in partition order (one partition, or sorted): the same pieces, no copy
    ordered = table.sort_by("_healpix_29")
    again = split_by_partition(ordered, plan)
    assert [(k, n) for k, n, _ in again] == [(k, n) for k, n, _ in pieces]
    for (_, _, fast), (_, _, moved) in zip(again, pieces, strict=True):
        assert fast.equals(moved.sort_by("_healpix_29"))


def test_plan_arguments_are_checked(rng):
    histogram = PixelHistogram.from_healpix29(clustered_index(rng, 100), 5)
    with pytest.raises(ValueError, match="max_rows_per_partition"):
        plan_partitions(histogram, 0)
    with pytest.raises(ValueError, match="lowest_order"):
        plan_partitions(histogram, 10, lowest_order=6)
