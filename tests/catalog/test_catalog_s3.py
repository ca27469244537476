"""The same catalog written to and read back from S3 (a loopback moto server)."""

from __future__ import annotations

import lsdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from raypz import io


@pytest.fixture(scope="module")
def s3_catalog(s3_root, patch_rows, write_catalog):
    root = io.join(s3_root, "photoz")
    plan, summary = write_catalog(patch_rows, root)
    return root, plan, summary


def test_catalog_round_trips_through_s3(s3_catalog, patch_rows, catalog_metadata):
    root, plan, summary = s3_catalog
    assert (summary.rows, summary.partitions) == (patch_rows.num_rows, len(plan))
    fs, inner = io.resolve(root)
    assert isinstance(fs, pafs.S3FileSystem)
    files = io.list_parquet_files(root)
    assert len(files) == len(plan) and all("/dataset/Norder=" in f for f in files)
    table = ds.dataset(files, filesystem=fs, format="parquet").to_table()
    assert sorted(table["objectId"].to_pylist()) == sorted(patch_rows["objectId"].to_pylist())
    common = pq.read_schema(f"{inner}/dataset/_common_metadata", filesystem=fs)
    assert {k.decode(): v.decode() for k, v in common.metadata.items()} == catalog_metadata
    assert pq.read_metadata(f"{inner}/dataset/_metadata", filesystem=fs).num_rows == summary.rows
    properties = io.read_bytes(io.join(root, "properties")).decode()
    assert f"hats_nrows={summary.rows}" in properties


def test_lsdb_opens_the_s3_catalog(s3_catalog, patch_rows):
    """hats opens s3:// anonymously unless told otherwise: a private bucket needs anon=False."""
    root, _, _ = s3_catalog
    frame = lsdb.open_catalog(root, storage_options={"anon": False}).compute()
    assert sorted(frame["objectId"]) == sorted(patch_rows["objectId"].to_pylist())


def test_a_trailing_slash_names_the_prefix_beside_a_same_named_key(s3_root):
    """On S3 a key "t" and keys "t/..." may coexist; "t/" means the directory."""
    for name in ("t", "t/a.parquet", "t/sub/b.parquet"):
        io.write_bytes_atomic(io.join(s3_root, "listing", name), b"x")
    bucket = s3_root.removeprefix("s3://")
    assert io.list_parquet_files(io.join(s3_root, "listing", "t") + "/") == [
        f"{bucket}/listing/t/a.parquet",
        f"{bucket}/listing/t/sub/b.parquet",
    ]
    assert io.list_files(io.join(s3_root, "listing", "t"), ("",)) == [f"{bucket}/listing/t"]


def test_a_breach_on_s3_names_the_file_with_its_scheme(s3_root):
    """pyarrow lists S3 files as bucket/key, which reads as a local relative path."""
    from raypz.schema import ContractError, validate_dataset

    table = io.join(s3_root, "breach")
    io.write_bytes_atomic(io.join(table, "part-0.parquet"), b"not parquet")
    with pytest.raises(ContractError, match=r"^s3://raypz-test/breach/part-0\.parquet: unread"):
        validate_dataset(table)


def test_a_lost_partition_of_an_s3_catalog_is_found_by_one_listing(s3_catalog):
    from raypz.catalog.layout import missing_partitions, partition_path

    root, plan, _ = s3_catalog
    assert missing_partitions(root) == []
    fs, inner = io.resolve(root)
    k, n = int(plan.norder[0]), int(plan.npix[0])
    data = io.read_bytes(partition_path(root, k, n))
    fs.delete_file(partition_path(inner, k, n))
    try:
        assert missing_partitions(root) == [partition_path(root, k, n)]
    finally:
        io.write_bytes_atomic(partition_path(root, k, n), data)
