"""Unit tests of cutout stores (no Ray): the simulator's layouts, pairing files, the per-file
join and its rules, FITS and Parquet cutout files read alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from raypz import io
from raypz.cutout_store import (
    CutoutStore,
    count_file_join,
    count_join,
    join_cutouts,
    open_cutout_file,
    read_store_cutouts,
)
from raypz.fits import write_cutout_fits
from raypz.object_stream import (
    CutoutJoin,
    checked_join,
    declared_pixel_scale,
    object_dataset,
    read_object_file,
)
from raypz.schema import ContractError
from raypz.sim import SurveyConfig, simulate_shard
from raypz.sim.survey import write_shard
from raypz.tables import list_table_files, read_table, relative_stem

SHAPE = (6, 8, 8)
LOCAL = pafs.LocalFileSystem()


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """One 2-shard survey (300 rows, 8x8 cutouts) in the three layouts."""
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in ("column", "shards", "fits"):
        config = SurveyConfig(
            n_objects=300,
            seed=4,
            cutouts=True,
            cutout_size=8,
            rows_per_shard=150,
            cutout_layout=layout,
        )
        for i in range(config.n_shards):
            write_shard(config, i, str(root / layout))
        out[layout] = root / layout
    return out


def _joined(objects: Path, store: Path | None) -> pa.Table:
    """Every row of a layout with its cutouts, sorted by objectId."""
    join = CutoutJoin(CutoutStore.open(str(store)), "cutout", SHAPE) if store else None
    parts = []
    for f in list_table_files(str(objects)):
        columns = ["objectId", "g_cModelFlux"] + ([] if join else ["cutout"])
        parts.extend(read_object_file(f, str(objects), columns, join, chunk_rows=64))
    return pa.concat_tables(parts).sort_by("objectId")


def test_layouts_hold_the_same_objects_and_cutouts(layouts):
    column = _joined(layouts["column"], None)
    assert column.num_rows == 300
    for layout in ("shards", "fits"):
        objects = read_table(str(layouts[layout]))
        assert "cutout" not in objects.column_names  # the store is not read as object rows
        assert objects.num_rows == 300
        joined = _joined(layouts[layout], layouts[layout] / "cutouts")
        assert joined["objectId"].equals(column["objectId"])
        assert joined["g_cModelFlux"].equals(column["g_cModelFlux"])
        np.testing.assert_array_equal(
            joined["cutout"].combine_chunks().to_numpy_ndarray(),
            column["cutout"].combine_chunks().to_numpy_ndarray(),
        )


def test_cutout_files_are_shuffled_within_and_paired_by_name(layouts):
    store = CutoutStore.open(str(layouts["fits"] / "cutouts"))
    assert sorted(store.files) == ["shard-00000", "shard-00001"]
    first = list_table_files(str(layouts["fits"]))[0]
    assert store.file_for(first, str(layouts["fits"])).endswith("cutouts/shard-00000.fits")
    with open_cutout_file(LOCAL, store.files["shard-00000"]) as cutouts:
        ids = cutouts.ids()
        assert cutouts.shape == SHAPE and cutouts.num_rows == 150
    objects = pq.read_table(first, columns=["objectId"])["objectId"].to_numpy()
    assert sorted(ids) == sorted(objects) and not np.array_equal(ids, objects)


def test_relative_stems_pair_hats_partitions_and_lone_files(tmp_path):
    root = str(tmp_path / "cat")
    path = f"{tmp_path}/cat/dataset/Norder=3/Dir=0/Npix=12.parquet"
    assert relative_stem(path, root) == "Norder=3/Dir=0/Npix=12"
    collection = f"{tmp_path}/cat/objects/dataset/Norder=3/Dir=0/Npix=12.parquet"
    assert relative_stem(collection, root) == "Norder=3/Dir=0/Npix=12"
    assert relative_stem(f"{tmp_path}/x.fits", f"{tmp_path}/x.fits") == "x"
    lone = CutoutStore(str(tmp_path / "c.fits"), {"c": str(tmp_path / "c.fits")})
    objects = str(tmp_path / "objects.parquet")
    assert lone.file_for(io.resolve(objects)[1], objects) == str(tmp_path / "c.fits")


def test_a_store_that_pairs_with_no_object_file_is_refused(layouts, tmp_path):
    """A directory of one object file and a store of one file under another name pair with
    nothing (only a table given as one file pairs by position): the job stops, naming the
    store and the stem it looked for, instead of flagging every object no_cutout."""
    objects = tmp_path / "objects"
    objects.mkdir()
    shard = layouts["fits"] / "shard-00000.parquet"
    (objects / "objects_a.parquet").write_bytes(shard.read_bytes())
    store = CutoutStore.open(str(layouts["fits"] / "cutouts" / "shard-00000.fits"))
    files = list_table_files(str(objects))
    with pytest.raises(ContractError, match=r"objects_a\.parquet or objects_a\.fits") as info:
        store.require_pairs(files, str(objects))
    assert info.value.file == store.root
    store.require_pairs(files[:1], files[0])  # the same file given alone pairs
    with pytest.raises(ContractError, match="no cutout file pairs"):  # the training join too
        checked_join(str(objects), store.root, "cutout", SHAPE)
    CutoutStore.open(str(layouts["fits"] / "cutouts")).require_pairs(
        list_table_files(str(layouts["fits"])), str(layouts["fits"])
    )


def test_two_files_for_one_stem_are_refused(layouts, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for suffix in (".parquet", ".fits"):
        (store / f"shard-00000{suffix}").write_bytes(b"x")
    with pytest.raises(ContractError, match="two cutout files"):
        CutoutStore.open(str(store))


def _objects(ids) -> pa.Table:
    return pa.table({"objectId": pa.array(ids, pa.int64()), "x": pa.array(np.arange(len(ids)))})


def _fits(path: Path, ids, images) -> str:
    write_cutout_fits(str(path), np.asarray(ids), [images[:3], images[3:]], SHAPE)
    return str(path)


@pytest.mark.parametrize("suffix", [".fits", ".fits.gz"])
def test_join_emits_every_object_once_with_nan_pixels_where_missing(tmp_path, rng, suffix):
    images = rng.normal(size=(5, *SHAPE)).astype(np.float32)
    path = _fits(tmp_path / f"c{suffix}", [14, 11, 99, 10, 13], images)  # 99: no object row
    objects = _objects([10, 11, 12, 13, 14])
    with open_cutout_file(LOCAL, path) as cutouts:
        out = pa.concat_tables(join_cutouts(objects, cutouts, "objectId", "cutout", SHAPE, 2))
    assert sorted(out["objectId"].to_pylist()) == [10, 11, 12, 13, 14]
    pixels = dict(
        zip(
            out["objectId"].to_pylist(),
            out["cutout"].combine_chunks().to_numpy_ndarray(),
            strict=True,
        )
    )
    for i, oid in enumerate([14, 11, 99, 10, 13]):
        if oid != 99:
            np.testing.assert_array_equal(pixels[oid], images[i])
    assert np.isnan(pixels[12]).all()
    with open_cutout_file(LOCAL, path) as cutouts:
        counts = count_join(objects["objectId"].to_numpy(), cutouts.ids())
    assert (counts.matched, counts.without_cutout, counts.cutouts_without_object) == (4, 1, 1)


def test_repeated_id_and_wrong_shape_name_the_cutout_file(tmp_path, rng):
    images = rng.normal(size=(5, *SHAPE)).astype(np.float32)
    path = _fits(tmp_path / "dup.fits", [1, 2, 3, 2, 5], images)
    with open_cutout_file(LOCAL, path) as cutouts, pytest.raises(ContractError) as err:
        list(join_cutouts(_objects([1, 2, 3]), cutouts, "objectId", "cutout", SHAPE))
    assert "dup.fits" in str(err.value) and "objectId 2 has 2 cutouts" in str(err.value)
    good = _fits(tmp_path / "good.fits", [1, 2, 3, 4, 5], images)
    with (
        open_cutout_file(LOCAL, good) as cutouts,
        pytest.raises(ContractError, match=r"good\.fits"),
    ):
        list(join_cutouts(_objects([1]), cutouts, "objectId", "cutout", (6, 16, 16)))
    (tmp_path / "bad.fits").write_bytes(b"SIMPLE  = not fits")
    with (
        pytest.raises(ContractError, match=r"bad\.fits"),
        open_cutout_file(LOCAL, str(tmp_path / "bad.fits")),
    ):
        pass


@pytest.mark.parametrize("id_type", [pa.float64(), pa.uint64()])
def test_parquet_cutout_ids_int64_cannot_hold_are_refused(layouts, tmp_path, id_type):
    """Float ids were truncated and uint64 ones wrapped, silently: the cutouts then joined no
    object, or the wrong one."""
    shard = sorted((layouts["shards"] / "cutouts").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    table = table.set_column(0, pa.field("objectId", id_type), table["objectId"].cast(id_type))
    pq.write_table(table, tmp_path / "cutouts.parquet")
    rule = f"objectId.*type {id_type} is not an integer type that int64 holds"
    with (
        pytest.raises(ContractError, match=rule),
        open_cutout_file(LOCAL, str(tmp_path / "cutouts.parquet")),
    ):
        pass


def test_fits_cutouts_in_another_unit_are_refused(tmp_path, rng):
    """Pixels in MJy/sr (or ADU) read as nJy/pixel would feed the network numbers off by
    orders of magnitude; the file's BUNIT says so, and the file is refused."""
    images = rng.normal(size=(5, *SHAPE)).astype(np.float32)
    path = _fits(tmp_path / "c.fits", [1, 2, 3, 4, 5], images)
    with open_cutout_file(LOCAL, path) as cutouts:  # as written: nJy/pixel
        assert cutouts.ids().tolist() == [1, 2, 3, 4, 5]
    fits.setval(path, "BUNIT", ext=2, value="MJy/sr")
    with (
        pytest.raises(ContractError, match=r"c\.fits: BUNIT 'MJy/sr'.*nJy/pixel"),
        open_cutout_file(LOCAL, path),
    ):
        pass


def test_relative_paths_read_the_same_in_workers_of_another_directory(
    ray_session, layouts, monkeypatch
):
    """Ray workers keep the working directory they started in (a driver run with RAY_ADDRESS
    beside `ray start` nodes has another): relative roots, made absolute on the driver, still
    pair every object file with its cutout file there (they gave every object NaN pixels)."""
    root = layouts["shards"]
    monkeypatch.chdir(root.parent)  # the driver moves; the session's workers stay where they are
    files = list_table_files(root.name)
    join = CutoutJoin(CutoutStore.open(f"{root.name}/cutouts"), "cutout", SHAPE, "objectId")
    blocks = ray_session.get(object_dataset(root.name, files, ["objectId"], join).to_arrow_refs())
    cutouts = pa.concat_tables(blocks)["cutout"].combine_chunks().to_numpy_ndarray()
    assert len(cutouts) == 300 and np.isfinite(cutouts).all()


def test_fits_and_parquet_stores_read_the_same_cutouts(layouts):
    ids = read_table(str(layouts["shards"]), ["objectId"])["objectId"].to_numpy()[::7]
    wanted = np.concatenate([ids, [123]])  # 123: no such object
    got = {}
    for layout in ("shards", "fits"):
        store = CutoutStore.open(str(layouts[layout] / "cutouts"))
        got[layout] = read_store_cutouts(store, wanted)
        assert got[layout][0].shape == (len(wanted), *SHAPE)
    np.testing.assert_array_equal(got["shards"][0], got["fits"][0])
    assert got["fits"][1].tolist() == [True] * len(ids) + [False]


def test_store_check_counts_and_listing_skips_the_store(layouts):
    root = str(layouts["shards"])
    files = list_table_files(root)
    assert len(files) == 2 and not any("cutouts" in f for f in files)
    store = CutoutStore.open(f"{root}/cutouts")
    counts = count_file_join(files[0], root, store, shape=SHAPE)
    assert (counts.objects, counts.matched, counts.cutouts_without_object) == (150, 150, 0)
    with pytest.raises(ContractError, match="the model reads"):
        count_file_join(files[0], root, store, shape=(6, 16, 16))


def test_fits_object_tables_stream_like_parquet(tmp_path):
    from raypz.fits import write_fits_table

    table = simulate_shard(SurveyConfig(n_objects=200, seed=9), 0)
    write_fits_table(table, str(tmp_path / "objects.fits"))
    columns = ["objectId", "coord_ra", "r_cModelFlux"]
    parts = list(read_object_file(str(tmp_path / "objects.fits"), str(tmp_path), columns))
    assert [p.num_rows for p in parts] == [200]
    assert pa.concat_tables(parts).equals(table.select(columns).cast(parts[0].schema))


def test_stores_and_fits_tables_on_s3(layouts, s3_root):
    """The simulator writes a FITS store to s3://; the join reads it back through pyarrow's S3
    filesystem, and FITS object tables stream from there too."""
    from raypz.fits import write_fits_table

    config = SurveyConfig(
        n_objects=300, seed=4, cutouts=True, cutout_size=8, rows_per_shard=150, cutout_layout="fits"
    )
    objects = io.join(s3_root, "cutout-sim")
    write_shard(config, 0, objects)
    store = CutoutStore.open(io.join(objects, "cutouts"))
    assert list(store.files) == ["shard-00000"]
    files = list_table_files(objects)
    assert len(files) == 1  # the marked store is not an object file
    join = CutoutJoin(store, "cutout", SHAPE)
    parts = list(read_object_file(files[0], objects, ["objectId"], join, chunk_rows=64))
    remote = pa.concat_tables(parts).sort_by("objectId")
    local = _joined(layouts["fits"], layouts["fits"] / "cutouts").slice(0, 150)
    assert remote["objectId"].equals(local["objectId"])
    np.testing.assert_array_equal(
        remote["cutout"].combine_chunks().to_numpy_ndarray(),
        local["cutout"].combine_chunks().to_numpy_ndarray(),
    )
    table = read_table(str(layouts["fits"]), ["objectId", "coord_ra", "r_cModelFlux"])
    write_fits_table(table, io.join(s3_root, "fits-objects", "t.fits"))
    back = read_table(io.join(s3_root, "fits-objects"))
    for name in table.column_names:
        assert back[name].equals(table[name]), name


def test_fits_cutouts_in_another_band_order_or_count_are_refused(tmp_path, rng):
    """A cube in yzirgu order read as ugrizy gave confident, wrong PDFs with no flag; an
    OBJECTS table longer than the cube failed mid-stream with Arrow's length message."""
    images = rng.normal(size=(5, *SHAPE)).astype(np.float32)
    path = str(tmp_path / "reversed.fits")
    write_cutout_fits(path, np.arange(5), [images], SHAPE, bands=tuple("yzirgu"))
    with (
        pytest.raises(ContractError, match=r"reversed\.fits: BANDS 'yzirgu'.*'ugrizy'"),
        open_cutout_file(LOCAL, path),
    ):
        pass
    short = str(tmp_path / "short.fits")
    write_cutout_fits(short, np.arange(3), [images[:3]], SHAPE)
    with fits.open(short, mode="update") as hdul:  # the OBJECTS table of another file: 5 ids
        objects = fits.BinTableHDU.from_columns(
            [fits.Column(name="objectId", format="K", array=np.arange(5))], name="OBJECTS"
        )
        hdul[1] = objects
    with (
        pytest.raises(
            ContractError,
            match=r"short\.fits: HDU OBJECTS has 5 objectIds and the "
            r"CUTOUTS cube 3 cutouts",
        ),
        open_cutout_file(LOCAL, short),
    ):
        pass


def test_a_store_whose_manifest_names_another_band_order_is_refused(layouts):
    store = layouts["shards"] / "cutouts"
    marker = store / io.CUTOUT_STORE_MARKER
    manifest = json.loads(marker.read_text())
    assert manifest["bands"] == "ugrizy"
    CutoutStore.open(str(store))
    marker.write_text(json.dumps({**manifest, "bands": "grizyu"}))
    try:
        with pytest.raises(ContractError, match=r"_cutout_store\.json: bands 'grizyu'"):
            CutoutStore.open(str(store))
    finally:
        marker.write_text(json.dumps(manifest))


def test_pixel_scales_declared_by_each_layout_and_refused_when_another(layouts, tmp_path, rng):
    """The simulator declares 0.2 arcsec pixels in every layout (field metadata, FITS PIXSCALE,
    the store's manifest); a training set's declared scale is what its model records, and a
    file of another scale is refused naming it, in a check and in the stream."""
    assert declared_pixel_scale(str(layouts["column"]), None, "cutout") == 0.2
    for layout in ("shards", "fits"):
        root, store_path = str(layouts[layout]), str(layouts[layout] / "cutouts")
        assert declared_pixel_scale(root, store_path, "cutout") == 0.2
        store = CutoutStore.open(store_path)
        assert store.pixel_scale == 0.2
        first = list_table_files(root)[0]
        count_file_join(first, root, store, shape=SHAPE, pixel_scale=0.2)
        with pytest.raises(ContractError, match=r"shard-00000\.(parquet|fits).*pixels of 0\.2 "):
            count_file_join(first, root, store, shape=SHAPE, pixel_scale=0.168)
        with pytest.raises(ContractError, match=r"_cutout_store\.json: pixels of 0\.2 arcsec"):
            checked_join(root, store_path, "cutout", SHAPE, pixel_scale=0.168)
        join = CutoutJoin(store, "cutout", SHAPE, pixel_scale=0.168)
        with pytest.raises(ContractError, match=r"the model was trained on 0\.168"):
            next(read_object_file(first, root, ["objectId"], join))
    with pytest.raises(ContractError, match=r"shard-00000\.parquet: column 'cutout': pixels"):
        checked_join(str(layouts["column"]), None, "cutout", SHAPE, pixel_scale=0.168)

    images = rng.normal(size=(4, *SHAPE)).astype(np.float32)
    mixed = tmp_path / "mixed"
    for i, scale in enumerate((0.2, 0.168)):  # no manifest: the files alone say
        write_cutout_fits(
            str(mixed / f"s{i}.fits"),
            np.arange(4) + 4 * i,
            [images],
            SHAPE,
            pixel_scale_arcsec=scale,
        )
    write_cutout_fits(str(mixed / "s2.fits"), np.arange(8, 12), [images], SHAPE)
    with pytest.raises(
        ContractError,
        match=r"s1\.fits: .*pixels of 0\.168 arcsec where .*"
        r"s0\.fits says 0\.2",
    ):
        declared_pixel_scale(str(layouts["fits"]), str(mixed), "cutout")
    (mixed / "s1.fits").unlink()
    assert declared_pixel_scale(str(layouts["fits"]), str(mixed), "cutout") == 0.2
    (mixed / "s0.fits").unlink()
    assert declared_pixel_scale(str(layouts["fits"]), str(mixed), "cutout") is None
