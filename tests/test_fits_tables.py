"""FITS object tables (astropy binary tables) are inputs like Parquet shards: same values, same
contract checks and messages, same training rows and evaluation metrics."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from raypz import tables
from raypz.columns import flux_to_mag
from raypz.evaluation import EvaluationRequest, evaluate_predictions
from raypz.fits import write_fits_table
from raypz.metrics import read_table as read_truth
from raypz.pdf import ZGrid, normalize
from raypz.predictions import predictions_table
from raypz.schema import ContractError, check_file_schema, validate_dataset
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train import TrainConfig
from raypz.train.labelled import has_epoch_columns, read_labelled, read_training_rows

SURVEY = SurveyConfig(n_objects=600, seed=21, rows_per_shard=300)


@pytest.fixture(scope="module")
def shards() -> list[pa.Table]:
    """Two simulated shards, with a few per-row problems so the reports count something."""
    out = []
    for i in range(SURVEY.n_shards):
        table = simulate_shard(SURVEY, i)
        u = table["u_cModelFlux"].to_numpy().copy()
        u[: 5 + i] = np.nan  # missing u band
        err = table["g_cModelFluxErr"].to_numpy().copy()
        err[10:12] = -1.0  # error not positive beside a finite flux
        table = _set(table, "u_cModelFlux", u)
        out.append(_set(table, "g_cModelFluxErr", err))
    return out


@pytest.fixture(scope="module")
def copies(shards, tmp_path_factory) -> dict[str, Path]:
    """The same shards as a Parquet directory and as a FITS directory."""
    root = tmp_path_factory.mktemp("fits_tables")
    (root / "parquet").mkdir()
    (root / "fits").mkdir()
    for i, table in enumerate(shards):
        pq.write_table(table, root / "parquet" / f"part-{i}.parquet")
        write_fits_table(table, str(root / "fits" / f"part-{i}.fits"))
    return {"parquet": root / "parquet", "fits": root / "fits", "root": root}


def _set(table: pa.Table, name: str, values) -> pa.Table:
    i = table.schema.get_field_index(name)
    field = table.schema.field(i)
    return table.set_column(i, field, pa.array(values, type=field.type))


def _assert_same_table(got: pa.Table, want: pa.Table) -> None:
    """Same columns, types, units and values (NaN equal to NaN); nullability and the
    Parquet-only schema metadata aside."""
    assert got.column_names == want.column_names
    for g, w in zip(got.schema, want.schema, strict=True):
        assert g.type == w.type, g.name
        assert (g.metadata or {}).get(b"unit") == (w.metadata or {}).get(b"unit"), g.name
    for name in want.column_names:
        g, w = got[name], want[name]
        if pa.types.is_string(w.type):
            assert g.to_pylist() == w.to_pylist(), name
        else:
            np.testing.assert_array_equal(g.to_numpy(), w.to_numpy(), err_msg=name)


def test_fits_table_reads_back_equal_to_parquet(shards, copies):
    parquet = tables.read_table(str(copies["parquet"]))
    from_fits = tables.read_table(str(copies["fits"]))
    _assert_same_table(from_fits, parquet)
    _assert_same_table(parquet, pa.concat_tables(shards))
    assert from_fits.schema.field("u_cModelFlux").metadata[b"unit"] == b"nJy"
    assert from_fits.schema.field("coord_ra").metadata[b"unit"] == b"deg"
    # column projection and row counts from the header, as from the footer
    files = tables.list_table_files(str(copies["fits"]))
    fs = pafs.LocalFileSystem()
    counts = []
    for f in files:
        with tables.open_table(fs, f) as table:
            counts.append(table.num_rows)
    assert counts == [t.num_rows for t in shards]
    with tables.open_table(fs, files[1]) as table:
        got = pa.Table.from_batches(list(table.iter_batches(["objectId", "redshift"], 64)))
    _assert_same_table(got, shards[1].select(["objectId", "redshift"]))


def test_gzip_compressed_fits_reads_like_the_plain_file(shards, copies, tmp_path):
    """``.fits.gz`` is a FITS suffix: the file is decompressed, not refused as unreadable."""
    gz = tmp_path / "gz"
    gz.mkdir()
    for f in sorted(copies["fits"].iterdir()):
        (gz / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
    _assert_same_table(tables.read_table(str(gz)), pa.concat_tables(shards))
    report = validate_dataset(str(gz))
    assert report.summary() == validate_dataset(str(copies["fits"])).summary().replace(
        str(copies["fits"]), str(gz)
    )


def test_the_writer_gzips_a_fits_gz_target(shards, tmp_path):
    path = tmp_path / "part-0.fits.gz"
    write_fits_table(shards[0], str(path))
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip magic
    _assert_same_table(tables.read_table(str(path)), shards[0])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_a_fits_gz_that_is_not_gzip_is_named(copies, tmp_path):
    bad = tmp_path / "part-0.fits.gz"
    bad.write_bytes(next(copies["fits"].iterdir()).read_bytes())  # plain FITS bytes
    with pytest.raises(ContractError, match="unreadable FITS file") as info:
        check_file_schema(str(bad))
    assert info.value.file == str(bad)


def test_unsigned_byte_and_list_columns_round_trip(tmp_path):
    """uint16/32/64 and int8 by FITS's TZERO conventions (astropy's plain mapping wraps the
    first and makes the last logicals), lists of floats (epoch columns) as variable-length
    arrays."""
    table = pa.table(
        {
            "objectId": pa.array([1, 2, 3], pa.int64()),
            "flags_u16": pa.array([0, 40000, 65535], pa.uint16()),
            "id_u32": pa.array([1, 4_000_000_000, 5], pa.uint32()),
            "id_u64": pa.array([1, 2**63 + 5, 7], pa.uint64()),
            "code_i8": pa.array([-128, 0, 127], pa.int8()),
            "r_epochFlux": pa.array([[1.0], [], [2.0, 3.0, 4.0]], pa.list_(pa.float64())),
            "r_epochFluxErr": pa.array([[0.5], [], [1.5, 2.5, 3.5]], pa.list_(pa.float32())),
        }
    )
    for name, rows in (("whole", table), ("slice", table.slice(1, 2))):
        path = str(tmp_path / f"{name}.fits")
        write_fits_table(rows, path)
        with tables.open_table(pafs.LocalFileSystem(), path) as f:
            assert f.schema.equals(rows.schema) and f.read().equals(rows)


def test_tables_written_by_astropy_read_with_their_scaled_types(tmp_path):
    """What astropy reads is what raypz declares: TZERO-unsigned ids, TSCAL/TZERO-scaled
    integers (as floats), TNULL as null, and variable-length (P) epoch columns as lists."""
    uint32 = np.array([1, 3_000_000_000], np.uint32)
    ids = fits.Column(name="objectId", format="J", bzero=2**31, array=uint32)
    counts = fits.Column(name="n", format="J", null=-99, array=np.array([4, -99], np.int32))
    scaled = fits.Column(name="s", format="I", array=np.array([0, 3], np.int16))
    epochs = np.empty(2, dtype=object)
    epochs[:] = [np.array([1.0, 2.0], np.float32), np.array([3.0], np.float32)]
    vla = fits.Column(name="r_epochFlux", format="PE()", array=epochs)
    hdu = fits.BinTableHDU.from_columns([ids, counts, scaled, vla])
    hdu.header["TSCAL3"], hdu.header["TZERO3"] = 0.5, 10.0
    hdu.writeto(tmp_path / "astropy.fits")
    with tables.open_table(pafs.LocalFileSystem(), str(tmp_path / "astropy.fits")) as f:
        got = f.read()
        assert got.schema.equals(f.schema)
    assert got.to_pydict() == {
        "objectId": [1, 3_000_000_000],
        "n": [4, None],
        "s": [10.0, 11.5],
        "r_epochFlux": [[1.0, 2.0], [3.0]],
    }
    assert got.schema.field("objectId").type == pa.uint32()
    assert got.schema.field("r_epochFlux").type == pa.list_(pa.float32())


def test_validation_report_is_the_same_for_both_formats(copies):
    reports = {
        kind: validate_dataset(str(copies[kind]), require_labels=True)
        for kind in ("parquet", "fits")
    }
    parquet, from_fits = reports["parquet"], reports["fits"]
    assert dataclasses.replace(from_fits, path=parquet.path) == parquet
    assert parquet.files == 2 and parquet.rows == 600
    assert parquet.problems.nonfinite_flux["u"] >= 11 and parquet.problems.bad_flux_err["g"] == 4
    assert from_fits.summary().splitlines()[1:] == parquet.summary().splitlines()[1:]
    schema_only = validate_dataset(str(copies["fits"]), check_rows=False)
    assert schema_only.rows == 600 and schema_only.problems is None


def test_a_directory_may_mix_parquet_and_fits(shards, tmp_path):
    pq.write_table(shards[0], tmp_path / "a.parquet")
    write_fits_table(shards[1], str(tmp_path / "b.fits"))
    report = validate_dataset(str(tmp_path), require_labels=True)
    assert report.files == 2 and report.rows == 600
    _assert_same_table(tables.read_table(str(tmp_path)), pa.concat_tables(shards))


def test_check_file_schema_reads_a_fits_header(copies):
    path = str(tables.list_table_files(str(copies["fits"]))[0])
    schema = check_file_schema(path, require_labels=True)
    assert schema.field("objectId").type == pa.int64()
    assert schema.field("r_cModelFlux").type == pa.float32()


# ---- contract breaches in FITS files: the same errors, naming the FITS file and the column


def _breach(table: pa.Table, tmp_path: Path, **kwargs) -> ContractError:
    path = tmp_path / "objects.fits"
    write_fits_table(table, str(path))
    with pytest.raises(ContractError) as info:
        validate_dataset(str(path), **kwargs)
    assert info.value.file == str(path)
    return info.value


def test_missing_flux_column_names_file_and_column(shards, tmp_path):
    err = _breach(shards[0].drop_columns(["g_cModelFlux"]), tmp_path)
    assert err.column == "g_cModelFlux" and "missing" in err.rule
    assert str(err).startswith(f"{tmp_path / 'objects.fits'}: column 'g_cModelFlux': missing")


def test_missing_labels_when_training(shards, tmp_path):
    err = _breach(shards[0].drop_columns(["redshift"]), tmp_path, require_labels=True)
    assert err.column == "redshift"


def test_magnitudes_instead_of_fluxes(shards, tmp_path):
    flux = shards[0]["r_cModelFlux"].to_numpy()
    err = _breach(_set(shards[0], "r_cModelFlux", flux_to_mag(flux)), tmp_path)
    assert err.column == "r_cModelFlux" and "AB magnitudes" in err.rule


def test_coordinates_not_in_degrees(shards, tmp_path):
    dec = np.radians(shards[0]["coord_dec"].to_numpy()) * 1e3  # milliradians
    err = _breach(_set(shards[0], "coord_dec", dec), tmp_path)
    assert err.column == "coord_dec" and "degrees" in err.rule


def test_float_object_ids_are_a_type_breach(shards, tmp_path):
    table = shards[0]
    i = table.schema.get_field_index("objectId")
    table = table.set_column(i, "objectId", pc.cast(table["objectId"], pa.float64()))
    err = _breach(table, tmp_path)
    assert err.column == "objectId" and "integer" in err.rule


def test_duplicate_object_ids_within_a_file(shards, tmp_path):
    ids = shards[0]["objectId"].to_numpy().copy()
    ids[7] = ids[3]
    err = _breach(_set(shards[0], "objectId", ids), tmp_path)
    assert err.column == "objectId" and "duplicated (within this file)" in err.rule


def test_duplicate_object_ids_across_files(shards, tmp_path):
    first, second = tmp_path / "a.fits", tmp_path / "b.fits"
    write_fits_table(shards[0], str(first))
    ids = shards[1]["objectId"].to_numpy().copy()
    ids[-1] = shards[0]["objectId"].to_numpy()[0]
    write_fits_table(_set(shards[1], "objectId", ids), str(second))
    with pytest.raises(ContractError) as info:
        validate_dataset(str(tmp_path))
    assert info.value.file == str(second) and info.value.column == "objectId"
    assert f"also in {first}" in info.value.rule


def _corrupt(tmp_path: Path, good: Path, how: str) -> Path:
    path = tmp_path / "bad.fits"
    data = good.read_bytes()
    if how == "garbage":
        path.write_bytes(b"not a FITS file at all" * 200)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "header cut":  # the table header without its END card
        path.write_bytes(data[: 2880 + 1000])
    elif how == "data cut":  # headers whole, rows missing
        path.write_bytes(data[: len(data) // 2])
    elif how == "no table":  # a valid FITS image, no binary table
        fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(path)
    return path


@pytest.mark.parametrize("how", ["garbage", "empty", "header cut", "data cut", "no table"])
def test_corrupt_fits_file_is_named_as_unreadable(copies, tmp_path, how):
    good = Path(tables.list_table_files(str(copies["fits"]))[0])
    path = _corrupt(tmp_path, good, how)
    with pytest.raises(ContractError, match="unreadable FITS file") as info:
        validate_dataset(str(path))
    assert info.value.file == str(path) and info.value.column is None
    with pytest.raises(ContractError, match="unreadable FITS file") as info:
        check_file_schema(str(path))  # the header alone tells
    assert info.value.file == str(path)


# ---- in-process readers of labelled and truth tables


def test_training_readers_give_the_same_rows_for_both_formats(copies):
    config = TrainConfig()
    parquet, from_fits = str(copies["parquet"]), str(copies["fits"])
    a, b = read_labelled(parquet, config), read_labelled(from_fits, config)
    for name in ("object_id", "flux", "err", "z"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    assert a.fingerprint("x") == b.fingerprint("x")
    assert has_epoch_columns(parquet, config) is has_epoch_columns(from_fits, config) is False
    _assert_same_table(read_training_rows(from_fits, config), read_training_rows(parquet, config))


def test_truth_reader_checks_fits_columns(copies):
    from_fits = str(copies["fits"])
    got = read_truth(from_fits, ["objectId", "redshift"])
    assert got.num_rows == 600 and got.column_names == ["objectId", "redshift"]
    with pytest.raises(ContractError, match="missing \\(needed by the evaluation\\)") as info:
        read_truth(from_fits, ["objectId", "z_spec"])
    assert info.value.column == "z_spec" and info.value.file.endswith("part-0.fits")


def test_evaluation_with_fits_truth_and_training_tables(shards, copies):
    """Metrics (the model's and the kNN baseline's) equal with FITS or Parquet truth/train."""
    root = copies["root"]
    grid = ZGrid(0.0, 3.0, 301)
    truth, train = shards[0], shards[1]
    rng = np.random.default_rng(5)
    z = truth["redshift"].to_numpy().astype(np.float64)
    sigma = 0.05 * (1 + z)
    mu = z + sigma * rng.standard_normal(z.size)
    pdf = normalize(np.exp(-0.5 * ((grid.values - mu[:, None]) / sigma[:, None]) ** 2), grid)
    predictions = root / "predictions.parquet"
    pq.write_table(predictions_table(truth["objectId"].to_numpy(), pdf, grid), predictions)
    metrics = {}
    for kind, write in (("parquet", pq.write_table), ("fits", write_fits_table)):
        write(truth, str(root / f"truth.{kind}"))
        write(train, str(root / f"train.{kind}"))
        request = EvaluationRequest(
            predictions=str(predictions),
            truth=str(root / f"truth.{kind}"),
            train=str(root / f"train.{kind}"),
            report=str(root / f"report-{kind}"),
            plots=False,
        )
        metrics[kind] = evaluate_predictions(request)
    assert list(metrics["fits"]) == ["model", "knn"]
    assert metrics["fits"]["model"]["n_scored"] == truth.num_rows
    # as JSON: the NaNs of empty bins compare equal there
    assert json.dumps(metrics["fits"], sort_keys=True) == json.dumps(
        metrics["parquet"], sort_keys=True
    )
