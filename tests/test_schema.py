"""Input validation against the object-table contract (raypz.schema)."""

from __future__ import annotations

import os
import pickle
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from raypz.columns import BANDS, DEFAULT_COLUMNS, ColumnTemplate, mag_to_flux
from raypz.schema import ContractError, check_file_schema, validate_dataset
from raypz.schema.ids import check_unique_ids

C = DEFAULT_COLUMNS


def object_table(n: int, rng: np.random.Generator, first_id: int = 0) -> pa.Table:
    """A table that meets the contract: fluxes of mag 20-26 galaxies with 5% noise, in nJy."""
    data: dict[str, np.ndarray] = {
        C.object_id: np.arange(first_id, first_id + n, dtype=np.int64),
        C.ra: rng.uniform(50.0, 52.0, n),
        C.dec: rng.uniform(-30.0, -28.0, n),
    }
    for flux_name, err_name in zip(C.flux_columns(), C.flux_err_columns(), strict=True):
        flux = mag_to_flux(rng.uniform(20.0, 26.0, n))
        data[flux_name] = (flux * (1 + 0.05 * rng.standard_normal(n))).astype(np.float32)
        data[err_name] = (0.05 * flux).astype(np.float32)
    data[C.redshift] = rng.uniform(0.0, 3.0, n)
    return pa.table(data)


def write(table: pa.Table, path) -> str:
    pq.write_table(table, path, row_group_size=max(1, table.num_rows // 3))
    return str(path)


@pytest.fixture
def shards(tmp_path, rng) -> str:
    """Three good shards with disjoint ids."""
    for k in range(3):
        write(object_table(500, rng, first_id=1000 * k), tmp_path / f"shard-{k:05d}.parquet")
    return str(tmp_path)


def test_good_input_passes_and_counts_rows(shards):
    report = validate_dataset(shards, require_labels=True)
    assert (report.files, report.rows) == (3, 1500)
    assert report.problems is not None
    assert report.problems.flagged_rows == 0
    assert report.problems.nonfinite_flux == dict.fromkeys(BANDS, 0)
    assert "1,500 rows" in report.summary()


def test_uri_input(shards):
    assert validate_dataset(f"file://{shards}").rows == 1500


def test_single_file_and_schema_only(shards):
    path = f"{shards}/shard-00001.parquet"
    assert validate_dataset(path).rows == 500
    report = validate_dataset(shards, check_rows=False)
    assert report.problems is None and report.rows == 1500
    assert "rows not read" in report.summary()
    assert check_file_schema(path).names[0] == C.object_id


def test_missing_column_names_file_column_and_rule(tmp_path, rng):
    path = write(object_table(50, rng).drop_columns(["g_cModelFluxErr"]), tmp_path / "s.parquet")
    with pytest.raises(ContractError) as info:
        validate_dataset(str(tmp_path))
    err = info.value
    assert (err.file, err.column) == (path, "g_cModelFluxErr")
    assert "missing (required by the object-table contract)" in str(err)
    assert str(err).startswith(f"{path}: column 'g_cModelFluxErr': missing")
    copy = pickle.loads(pickle.dumps(err))  # Ray ships errors between processes
    assert (copy.file, copy.column, copy.rule) == (err.file, err.column, err.rule)


def test_labels_and_cutouts_only_when_required(tmp_path, rng):
    write(object_table(50, rng).drop_columns([C.redshift]), tmp_path / "s.parquet")
    validate_dataset(str(tmp_path))
    with pytest.raises(ContractError, match="'redshift': missing"):
        validate_dataset(str(tmp_path), require_labels=True)
    with pytest.raises(ContractError, match="'cutout': missing"):
        validate_dataset(str(tmp_path), require_cutouts=True)


@pytest.mark.parametrize(
    ("column", "values", "rule"),
    [
        (C.object_id, lambda n: np.arange(n).astype(str), "integer"),
        (C.object_id, lambda n: np.arange(n, dtype=np.float64), "integer"),
        # ids from 2^63 would not cast to int64 once inference is under way
        (C.object_id, lambda n: np.arange(n, dtype=np.uint64) + np.uint64(2**63), "uint64"),
        (C.ra, lambda n: np.full(n, 51, dtype=np.int64), "floating"),
        ("r_cModelFlux", lambda n: np.full(n, "1.0"), "floating"),
    ],
)
def test_wrong_type(tmp_path, rng, column, values, rule):
    table = object_table(40, rng)
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values(40)))
    write(table, tmp_path / "s.parquet")
    with pytest.raises(ContractError, match=rule) as info:
        validate_dataset(str(tmp_path))
    assert info.value.column == column


def test_type_drift_between_shards(tmp_path, rng):
    write(object_table(40, rng), tmp_path / "a.parquet")
    other = object_table(40, rng, first_id=100)
    other = other.set_column(3, C.flux_columns()[0], other[3].cast(pa.float64()))
    path = write(other, tmp_path / "b.parquet")
    with pytest.raises(ContractError, match="differs from float") as info:
        validate_dataset(str(tmp_path))
    assert (info.value.file, info.value.column) == (path, "u_cModelFlux")


def test_duplicated_id_within_a_file(tmp_path, rng):
    table = object_table(60, rng)
    ids = table[C.object_id].to_numpy().copy()
    ids[41] = ids[7]
    path = write(table.set_column(0, C.object_id, pa.array(ids)), tmp_path / "s.parquet")
    with pytest.raises(ContractError, match=r"value 7 is duplicated \(within this file\)") as info:
        validate_dataset(str(tmp_path))
    assert (info.value.file, info.value.column) == (path, C.object_id)


def test_duplicated_id_across_shards(tmp_path, rng):
    first = write(object_table(60, rng), tmp_path / "shard-00000.parquet")
    second = write(object_table(60, rng, first_id=59), tmp_path / "shard-00001.parquet")
    with pytest.raises(ContractError, match=f"value 59 is duplicated \\(also in {first}\\)") as e:
        validate_dataset(str(tmp_path))
    assert e.value.file == second
    validate_dataset(str(tmp_path), check_rows=False)  # footers alone cannot see it


def test_null_id(tmp_path, rng):
    table = object_table(30, rng)
    table = table.set_column(0, C.object_id, pa.array([None, *range(1, 30)], pa.int64()))
    write(table, tmp_path / "s.parquet")
    with pytest.raises(ContractError, match="1 null values"):
        validate_dataset(str(tmp_path))


def test_id_check_in_several_hashed_passes(tmp_path, rng):
    """With room for few ids per pass, the check makes several passes and still finds repeats."""
    files = [
        write(object_table(300, rng, first_id=300 * k), tmp_path / f"s{k}.parquet")
        for k in range(3)
    ]
    fs = pa.fs.LocalFileSystem()
    check_unique_ids(fs, files, C.object_id, rows=900, max_ids_per_pass=100)
    dup = object_table(5, rng, first_id=555)
    files.append(write(dup, tmp_path / "s3.parquet"))
    with pytest.raises(ContractError, match="value 555 is duplicated"):
        check_unique_ids(fs, files, C.object_id, rows=905, max_ids_per_pass=100)


def test_empty_file(tmp_path, rng):
    write(object_table(30, rng), tmp_path / "a.parquet")
    empty = tmp_path / "b.parquet"
    empty.write_bytes(b"")
    with pytest.raises(ContractError, match="unreadable") as info:
        validate_dataset(str(tmp_path))
    assert info.value.file == str(empty) and info.value.column is None


def test_truncated_file(tmp_path, rng):
    path = tmp_path / "a.parquet"
    write(object_table(300, rng), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ContractError, match="unreadable") as info:
        validate_dataset(str(tmp_path))
    assert info.value.file == str(path)


def test_corrupt_data_pages(tmp_path, rng):
    """The footer reads but the column data is garbage: named as unreadable, not a crash."""
    path = tmp_path / "a.parquet"
    pq.write_table(object_table(300, rng), path, compression="zstd")
    data = bytearray(path.read_bytes())
    data[4:2000] = bytes(1996)
    path.write_bytes(bytes(data))
    with pytest.raises(ContractError, match="unreadable") as info:
        validate_dataset(str(tmp_path))
    assert info.value.file == str(path)


def test_zero_row_file_is_legal(tmp_path, rng):
    write(object_table(30, rng), tmp_path / "a.parquet")
    pq.write_table(object_table(0, rng), tmp_path / "b.parquet")
    report = validate_dataset(str(tmp_path))
    assert (report.files, report.rows, report.problems.flagged_rows) == (2, 30, 0)


def test_no_parquet_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Parquet or FITS table files"):
        validate_dataset(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        validate_dataset(str(tmp_path / "absent"))


def test_magnitudes_in_flux_columns(tmp_path, rng):
    table = object_table(200, rng)
    mags = rng.normal(24.0, 1.2, 200).astype(np.float32)
    table = table.set_column(table.schema.get_field_index("i_cModelFlux"), "i_cModelFlux", [mags])
    write(table, tmp_path / "s.parquet")
    with pytest.raises(ContractError, match="look like AB magnitudes") as info:
        validate_dataset(str(tmp_path))
    assert info.value.column == "i_cModelFlux"


def test_faint_noisy_fluxes_are_not_mistaken_for_magnitudes(tmp_path, rng):
    """A deep sample near the detection limit has fluxes of tens of nJy, and negative ones."""
    table = object_table(500, rng)
    faint = mag_to_flux(rng.uniform(27.0, 28.5, 500)) + rng.normal(0, 8, 500)
    table = table.set_column(table.schema.get_field_index("r_cModelFlux"), "r_cModelFlux", [faint])
    write(table, tmp_path / "s.parquet")
    validate_dataset(str(tmp_path))


@pytest.mark.parametrize(
    ("column", "value"), [(C.ra, 361.0), (C.ra, -0.5), (C.dec, 90.5), (C.dec, -1.6e3)]
)
def test_coordinates_out_of_range(tmp_path, rng, column, value):
    table = object_table(50, rng)
    values = table[column].to_numpy().copy()
    values[17] = value
    table = table.set_column(table.schema.get_field_index(column), column, [values])
    write(table, tmp_path / "s.parquet")
    with pytest.raises(ContractError, match="coordinates must be ICRS degrees") as info:
        validate_dataset(str(tmp_path))
    assert info.value.column == column


def _declaring(table: pa.Table, column: str, unit: str) -> pa.Table:
    """``table`` with ``column``'s field metadata declaring ``unit`` (as FITS TUNIT gives)."""
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i).with_metadata({"unit": unit}), table[i])


@pytest.mark.parametrize(
    ("column", "unit"),
    [(C.ra, "rad"), (C.dec, "arcsec"), ("g_cModelFlux", "uJy"), ("g_cModelFluxErr", "Jy")],
)
def test_a_declared_unit_other_than_the_contract_s_is_refused(tmp_path, rng, column, unit):
    """Radians of an afw table pass the coordinate range check (and land in the wrong sky
    pixel); microjansky pass every flux check (1000 times too faint)."""
    write(_declaring(object_table(50, rng), column, unit), tmp_path / "s.parquet")
    with pytest.raises(ContractError, match=f"declared unit '{unit}' is not") as info:
        check_file_schema(str(tmp_path / "s.parquet"))
    assert info.value.column == column


@pytest.mark.parametrize("unit", ["deg", "degree", "DEG", "degrees", "no-such-unit"])
def test_degrees_however_spelled_and_unknown_units_pass(tmp_path, rng, unit):
    table = _declaring(_declaring(object_table(50, rng), C.ra, unit), "r_cModelFlux", "nJy")
    write(table, tmp_path / "s.parquet")
    validate_dataset(str(tmp_path))


def test_per_row_problem_counts_on_a_hand_made_table(tmp_path):
    nan, inf = np.nan, np.inf
    bands = ("g", "r")
    #        row: 0     1     2      3     4     5      6
    g_flux = [10.0, nan, -5.0, 2e12, nan, 1.0, 3.0]
    g_err = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, inf]
    r_flux = [10.0, 20.0, inf, 1.0, None, 2.0, 3.0]
    r_err = [1.0, nan, 1.0, -1.0, 1.0, 1.0, 1.0]
    ra = [1.0, 2.0, nan, 4.0, 5.0, 6.0, 7.0]
    z = [0.5, nan, 11.0, -0.1, 1.0, 2.0, 3.0]
    table = pa.table(
        {
            C.object_id: np.arange(7),
            C.ra: ra,
            C.dec: np.zeros(7),
            "g_cModelFlux": g_flux,
            "g_cModelFluxErr": g_err,
            "r_cModelFlux": pa.array(r_flux, pa.float32()),
            "r_cModelFluxErr": r_err,
            C.redshift: z,
        }
    )
    write(table, tmp_path / "s.parquet")
    report = validate_dataset(str(tmp_path), bands=bands, require_labels=True)
    p = report.problems
    assert report.rows == 7
    assert p.nonfinite_coords == 1  # row 2
    assert p.nonfinite_flux == {"g": 2, "r": 2}  # g: rows 1, 4; r: rows 2 (inf), 4 (null)
    assert p.all_bands_missing == 1  # row 4
    assert p.bad_flux_err == {"g": 2, "r": 2}  # g: rows 5 (0), 6 (inf); r: 1 (nan), 3 (-1)
    assert p.absurd_flux == {"g": 1, "r": 0}  # row 3
    assert (p.missing_redshift, p.redshift_out_of_range) == (1, 2)  # row 1; rows 2, 3
    assert p.flagged_rows == 6  # every row but row 0
    text = report.summary()
    assert "6 rows (85.71%)" in text and "g=2  r=2" in text


def test_custom_column_template(tmp_path, rng):
    template = ColumnTemplate(object_id="id", ra="ra", dec="dec", flux="flux_{band}")
    table = object_table(40, rng).rename_columns(
        {C.object_id: "id", C.ra: "ra", C.dec: "dec"}
        | {C.flux.format(band=b): f"flux_{b}" for b in BANDS}
    )
    write(table, tmp_path / "s.parquet")
    assert validate_dataset(str(tmp_path), columns=template).rows == 40


def test_hats_catalog_input_reads_only_the_dataset(tmp_path, rng):
    root = tmp_path / "hats"
    (root / "dataset" / "Norder=0" / "Dir=0").mkdir(parents=True)
    write(object_table(40, rng), root / "dataset" / "Norder=0" / "Dir=0" / "Npix=4.parquet")
    (root / "properties").write_text("obs_collection=x\n")
    pq.write_table(pa.table({"x": [1]}), root / "data_thumbnail.parquet")  # not object rows
    assert validate_dataset(str(root)).files == 1


def cutout_table(rng, dtype: pa.DataType) -> pa.Table:
    return object_table(4, rng).append_column(C.cutout, pa.array([None] * 4, dtype))


@pytest.mark.parametrize(
    ("dtype", "ok"),
    [
        (pa.fixed_shape_tensor(pa.float32(), (6, 8, 8)), True),
        (pa.list_(pa.list_(pa.list_(pa.float32(), 8), 8), 6), True),
        (pa.fixed_shape_tensor(pa.float32(), (5, 8, 8)), False),  # wrong number of bands
        (pa.fixed_shape_tensor(pa.int16(), (6, 8, 8)), False),
        (pa.list_(pa.float32()), False),  # variable shape
    ],
)
def test_cutout_shape(rng, dtype, ok):
    schema = cutout_table(rng, dtype).schema
    if ok:
        check_file_schema("x.parquet", schema, require_cutouts=True)
    else:
        with pytest.raises(ContractError, match="'cutout'"):
            check_file_schema("x.parquet", schema, require_cutouts=True)


def test_cutout_band_order_from_field_metadata(rng):
    """raypz's writers name the cutout axis's bands in the field metadata; another order would
    be read as ugrizy and give wrong PDFs with no flag. Shape and model shape are checked too."""
    dtype = pa.fixed_shape_tensor(pa.float32(), (6, 8, 8))
    schema = cutout_table(rng, dtype).schema
    index = schema.get_field_index(C.cutout)
    for bands, ok in ((b"ugrizy", True), (b"yzirgu", False)):
        tagged = schema.set(index, schema.field(index).with_metadata({b"bands": bands}))
        if ok:
            check_file_schema("x.parquet", tagged, require_cutouts=True)
            continue
        with pytest.raises(ContractError, match=r"x\.parquet: column 'cutout': bands 'yzirgu'"):
            check_file_schema("x.parquet", tagged, require_cutouts=True)
    with pytest.raises(ContractError, match=r"cutouts of shape \(6, 8, 8\), the model reads"):
        check_file_schema("x.parquet", schema, require_cutouts=True, cutout_shape=(6, 16, 16))


def test_cutout_pixel_scale_from_field_metadata(rng):
    """A cutout column that declares its pixel scale must declare the model's (within 0.1%,
    a rounded value); one that declares none, or a model that recorded none, is not checked.
    A declared scale that is no positive number is refused."""
    dtype = pa.fixed_shape_tensor(pa.float32(), (6, 8, 8))
    schema = cutout_table(rng, dtype).schema
    index = schema.get_field_index(C.cutout)

    def declaring(value: bytes) -> pa.Schema:
        return schema.set(index, schema.field(index).with_metadata({b"pixel_scale_arcsec": value}))

    for model in (None, 0.2, 0.20001):
        check_file_schema(
            "x.parquet", declaring(b"0.2"), require_cutouts=True, cutout_pixel_scale=model
        )
    check_file_schema("x.parquet", schema, require_cutouts=True, cutout_pixel_scale=0.168)
    rule = r"x\.parquet: column 'cutout': pixels of 0\.2 arcsec, the model was trained on 0\.168"
    with pytest.raises(ContractError, match=rule):
        check_file_schema(
            "x.parquet", declaring(b"0.2"), require_cutouts=True, cutout_pixel_scale=0.168
        )
    for bad in (b"-0.2", b"0", b"nan", b"fine"):
        with pytest.raises(ContractError, match="is not a positive pixel scale"):
            check_file_schema("x.parquet", declaring(bad), require_cutouts=True)


def test_cutout_written_by_ray_data_read_without_ray(rng):
    """Ray Data stores tensors as a list with the shape in the field's extension metadata."""
    meta = {
        b"ARROW:extension:name": b"ray.data.arrow_tensor_v2",
        b"ARROW:extension:metadata": b"[6, 4, 4]",
    }
    field = pa.field(C.cutout, pa.large_list(pa.float32()), metadata=meta)
    schema = object_table(1, rng).schema.append(field)
    check_file_schema("x.parquet", schema, require_cutouts=True)


values_of_any_kind = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -0.0, -1.0, 1e13, -1e13, np.nan, np.inf]),
)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40).flatmap(
        lambda n: st.tuples(
            st.just(n),
            arrays(np.float32, (n, 6), elements=values_of_any_kind),
            arrays(np.float64, n, elements=st.sampled_from([10.0, np.nan])),
        )
    )
)
def test_random_values_never_crash_and_every_row_is_counted(n):
    n, values, ra = n
    bands = ("g", "r", "i")
    flux, err = values[:, :3], values[:, 3:]
    table = {C.object_id: np.arange(n), C.ra: ra, C.dec: np.full(n, 5.0)}
    for j, (f, e) in enumerate(zip(C.flux_columns(bands), C.flux_err_columns(bands), strict=True)):
        table[f], table[e] = flux[:, j], err[:, j]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(table), sink)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.parquet")
        with open(path, "wb") as f:
            f.write(sink.getvalue().to_pybytes())
        try:
            p = validate_dataset(path, bands=bands).problems
        except ContractError as err:  # random values may well look like magnitudes
            assert "look like AB magnitudes" in err.rule
            return

    finite = np.isfinite(flux)
    with np.errstate(invalid="ignore"):
        bad_err = finite & ~(np.isfinite(err) & (err > 0))
        absurd = finite & (np.abs(flux) > 1e12)
    for j, b in enumerate(bands):
        assert p.nonfinite_flux[b] == np.count_nonzero(~finite[:, j])
        assert p.bad_flux_err[b] == np.count_nonzero(bad_err[:, j])
        assert p.absurd_flux[b] == np.count_nonzero(absurd[:, j])
    assert p.nonfinite_coords == np.count_nonzero(np.isnan(ra))
    assert p.all_bands_missing == np.count_nonzero(~finite.any(axis=1))
    problem = ~finite | bad_err | absurd
    assert p.flagged_rows == np.count_nonzero(problem.any(axis=1) | np.isnan(ra))


def test_a_path_without_table_files_is_named_by_every_reader(tmp_path):
    """One refusal (tables.require_table_files) for a directory of other files, whichever
    stage reads it; it was written five times, with two wordings and two exception types."""
    from raypz.metrics import read_table as read_eval_table
    from raypz.tables import read_table
    from raypz.train import TrainConfig
    from raypz.train.labelled import has_epoch_columns

    (tmp_path / "notes.txt").write_text("not a table")
    path = str(tmp_path)
    readers = [
        lambda: read_table(path),
        lambda: read_eval_table(path, ["objectId"]),
        lambda: has_epoch_columns(path, TrainConfig()),
    ]
    for read in readers:
        with pytest.raises(FileNotFoundError, match=f"{path}: no Parquet or FITS table files"):
            read()
