"""A catalog written with raypz.catalog opens in lsdb and pyarrow (local disk)."""

from __future__ import annotations

import os
from pathlib import Path

import lsdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from raypz import io
from raypz.catalog import (
    PixelHistogram,
    finalize_catalog,
    healpix29,
    merge_partition,
    partition_path,
    plan_partitions,
    with_healpix29,
    write_fragment,
    write_partition,
)

N_ROWS = 3000  # rows of the patch_rows fixture


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, patch_rows, write_catalog):
    root = str(tmp_path_factory.mktemp("pz") / "photoz")
    assert patch_rows.num_rows == N_ROWS
    plan, summary = write_catalog(patch_rows, root)
    return root, plan, summary


def angular_separation_arcsec(ra1, dec1, ra2, dec2):
    """Great-circle distance (haversine) between positions in degrees, in arcsec."""
    ra1, dec1, ra2, dec2 = (np.radians(v) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(h))) * 3600


def test_layout_and_summary(catalog):
    root, plan, summary = catalog
    assert (summary.rows, summary.partitions) == (N_ROWS, len(plan))
    assert len(set(plan.norder.tolist())) > 1  # the clump made deeper partitions
    assert summary.max_rows == plan.nrows.max() <= 400
    for norder, npix in plan.pixels():
        path = partition_path(root, norder, npix)
        assert path.endswith(f"Norder={norder}/Dir={10_000 * (npix // 10_000)}/Npix={npix}.parquet")
        table = pq.read_table(path)
        assert table.column_names[0] == "_healpix_29"
        assert np.all(np.diff(table["_healpix_29"].to_numpy()) >= 0)
    properties = dict(
        line.split("=", 1) for line in Path(root, "properties").read_text().splitlines()[1:]
    )
    assert properties["obs_collection"] == "photoz_test"
    assert properties["dataproduct_type"] == "object"
    assert (properties["hats_col_ra"], properties["hats_col_dec"]) == ("coord_ra", "coord_dec")
    assert int(properties["hats_nrows"]) == N_ROWS
    assert int(properties["hats_order"]) == plan.max_order
    assert int(properties["hats_max_rows"]) == summary.max_rows
    assert properties["obs_description"] == "test"
    assert Path(root, "hats.properties").read_text() == Path(root, "properties").read_text()
    assert Path(root, "skymap.fits").exists()
    assert not [p for p in Path(root).rglob(".*")]  # no temporary files left behind


def test_lsdb_reads_every_row_once(catalog, patch_rows):
    root, plan, _ = catalog
    cat = lsdb.open_catalog(root)
    assert len(cat.get_healpix_pixels()) == len(plan)
    frame = cat.compute()
    assert len(frame) == N_ROWS
    assert sorted(frame["objectId"]) == sorted(patch_rows["objectId"].to_pylist())
    expected = dict(
        zip(patch_rows["objectId"].to_pylist(), patch_rows["z_mode"].to_pylist(), strict=True)
    )
    assert all(expected[i] == z for i, z in zip(frame["objectId"], frame["z_mode"], strict=True))
    np.testing.assert_array_equal(
        frame.index.to_numpy(), healpix29(frame["coord_ra"], frame["coord_dec"])
    )


@pytest.mark.parametrize(("ra", "dec", "radius_arcsec"), [(1.0, 0.5, 600.0), (359.5, -1.0, 3600.0)])
def test_cone_search_matches_brute_force(catalog, patch_rows, ra, dec, radius_arcsec):
    root, _, _ = catalog
    found = lsdb.open_catalog(root).cone_search(ra, dec, radius_arcsec).compute()
    separation = angular_separation_arcsec(
        ra, dec, patch_rows["coord_ra"].to_numpy(), patch_rows["coord_dec"].to_numpy()
    )
    expected = patch_rows["objectId"].to_numpy()[separation <= radius_arcsec]
    assert len(expected) > 10
    assert sorted(found["objectId"]) == sorted(expected)


def test_pyarrow_reads_rows_and_key_value_metadata(catalog, catalog_metadata):
    root, _, _ = catalog
    dataset = ds.dataset(os.path.join(root, "dataset"), format="parquet")
    assert dataset.count_rows() == N_ROWS
    for schema in (
        dataset.schema,
        pq.read_schema(os.path.join(root, "dataset", "_common_metadata")),
    ):
        assert {k.decode(): v.decode() for k, v in schema.metadata.items()} == catalog_metadata
        assert schema.field("pdf").type == pa.list_(pa.float32(), 5)
    footers = pq.read_metadata(os.path.join(root, "dataset", "_metadata"))
    assert footers.num_rows == N_ROWS
    paths = {footers.row_group(i).column(0).file_path for i in range(footers.num_row_groups)}
    assert all(p.startswith("Norder=") for p in paths)
    assert io.list_parquet_files(root) == sorted(  # a HATS root lists its partitions only
        os.path.join(root, "dataset", p) for p in paths
    )


def test_finalize_refuses_partitions_that_disagree_with_the_plan(tmp_path, patch_rows):
    rows = with_healpix29(patch_rows, "coord_ra", "coord_dec")
    plan = plan_partitions(PixelHistogram.from_healpix29(rows["_healpix_29"], 10), 400)
    root = str(tmp_path / "cat")
    (norder, npix), *_ = plan.pixels()
    first = rows.filter(
        pa.array(healpix29(rows["coord_ra"], rows["coord_dec"]) >> 2 * (29 - norder) == npix)
    )
    write_partition(root, norder, npix, first.slice(1))
    with pytest.raises(ValueError, match="disagree with the plan") as info:
        finalize_catalog(root, "x", "coord_ra", "coord_dec", plan=plan)
    assert f"Norder={norder}, Npix={npix}: {first.num_rows - 1} rows, planned" in str(info.value)
    assert f"missing; ... ({len(plan)} in all)" in str(info.value)
    assert "an objectId repeated across input files" in str(info.value)  # a cause of fewer rows
    assert not Path(root, "properties").exists()  # not committed
    summary = finalize_catalog(  # without a plan: the catalog as found
        root, "x", "coord_ra", "coord_dec", {"obs_collection": "renamed"}
    )
    assert summary.rows == first.num_rows - 1
    assert "obs_collection=renamed" in Path(root, "properties").read_text()
    assert not Path(root, "skymap.fits").exists()


def test_write_partition_checks_its_rows(tmp_path, patch_rows):
    root = str(tmp_path / "cat")
    with pytest.raises(ValueError, match="_healpix_29"):
        write_partition(root, 0, 4, patch_rows)
    rows = with_healpix29(patch_rows, "coord_ra", "coord_dec")
    with pytest.raises(
        ValueError, match="3000 of 3000 rows lie outside partition Norder=0, Npix=5"
    ):
        write_partition(root, 0, 5, rows)  # the patch lies in base pixel 4


def test_write_partition_sorts_a_chunked_table_into_row_groups(tmp_path, patch_rows, monkeypatch):
    import hats.io.file_io.file_io as hats_io  # where write_partition takes its settings

    hats_kwargs = hats_io.get_parquet_write_table_kwargs
    monkeypatch.setattr(  # row groups of 500 rows instead of hats' 100k
        hats_io,
        "get_parquet_write_table_kwargs",
        lambda s: {**hats_kwargs(s), "row_group_size": 500},
    )
    rows = with_healpix29(patch_rows, "coord_ra", "coord_dec")
    rows = pa.concat_tables([rows.slice(0, 700), rows.slice(700, 1000), rows.slice(1700)])
    assert rows["pdf"].num_chunks == 3  # rows taken chunk by chunk (_RowTaker)
    path = write_partition(str(tmp_path / "cat"), 0, 4, rows)
    written = pq.read_table(path)
    order = np.argsort(rows["_healpix_29"].to_numpy(), kind="stable")
    assert written["objectId"].to_pylist() == rows["objectId"].take(order).to_pylist()
    assert written["pdf"].equals(rows["pdf"].take(order))
    assert pq.ParquetFile(path).metadata.num_row_groups == 6  # 3000 rows


def test_a_failed_write_leaves_nothing(tmp_path, patch_rows, monkeypatch):
    rows = with_healpix29(patch_rows, "coord_ra", "coord_dec").slice(0, 1)
    npix = int(rows["_healpix_29"][0].as_py()) >> 2 * 29
    root = str(tmp_path / "cat")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_partition(root, 0, npix, rows)
    assert [p for p in Path(root).rglob("*") if p.is_file()] == []


def test_merge_streams_sorted_fragments_into_row_groups(tmp_path, patch_rows, monkeypatch):
    """Many fragments read a few rows at a time, many output row groups, positions shared by
    two objects across group boundaries, and a block staged twice: the file holds every
    (position, id) once, sorted by (_healpix_29, objectId)."""
    import hats.io.file_io.file_io as hats_io

    import raypz.catalog.write as write

    hats_kwargs = hats_io.get_parquet_write_table_kwargs
    monkeypatch.setattr(
        hats_io,
        "get_parquet_write_table_kwargs",
        lambda s: {**hats_kwargs(s), "row_group_size": 100},
    )
    monkeypatch.setattr(write, "FRAGMENT_ROW_GROUP", 7)
    rows = with_healpix29(patch_rows, "coord_ra", "coord_dec")
    twins = rows.slice(0, 400)  # same positions, other objects: runs of equal _healpix_29
    twins = twins.set_column(1, "objectId", pa.array(twins["objectId"].to_numpy() + 10**6))
    rows = pa.concat_tables([rows, twins]).take(np.random.default_rng(5).permutation(3400))
    staging, root = str(tmp_path / "staging"), str(tmp_path / "cat")
    blocks = [rows.slice(lo, 500) for lo in range(0, rows.num_rows, 500)]
    for i, block in enumerate(blocks):
        write_fragment(staging, 0, 4, f"block-{i}", block)
    write_fragment(staging, 0, 4, "block-3-retry", blocks[3])
    seen = []
    path = merge_partition(staging, root, 0, 4, {"k": "v"}, "objectId", on_rows=seen.append)

    written = pq.read_table(path)
    expected = rows.sort_by([("_healpix_29", "ascending"), ("objectId", "ascending")])
    assert written.column_names[0] == "_healpix_29"
    assert written["objectId"].to_pylist() == expected["objectId"].to_pylist()
    assert written["pdf"].equals(expected["pdf"])
    assert written.schema.metadata[b"k"] == b"v"
    groups = pq.ParquetFile(path).metadata
    assert groups.num_row_groups >= 34 and all(
        groups.row_group(i).num_rows <= 100 for i in range(groups.num_row_groups)
    )
    assert sum(t.num_rows for t in seen) == 3400


def test_merge_refuses_an_unsorted_fragment(tmp_path, patch_rows):
    rows = with_healpix29(patch_rows, "coord_ra", "coord_dec")
    staging = str(tmp_path / "staging")
    path = write_fragment(staging, 0, 4, "block-0", rows)
    pq.write_table(rows.sort_by([("_healpix_29", "descending")]), path)  # not as staged
    with pytest.raises(ValueError, match=r"block-0\.parquet: staged fragment is not sorted"):
        merge_partition(staging, str(tmp_path / "cat"), 0, 4)
