"""Malformed inputs end to end: a clear error before any work, or rows kept, flagged, counted.

The contract checks themselves (each broken rule, truncated and corrupt files, duplicated ids
across shards, wrong cutout shapes) are tested in tests/test_schema.py; here the same cases
are run through the jobs' entry points, and the per-row cases through the predictor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from raypz import flags as fl
from raypz import io
from raypz.columns import BANDS, DEFAULT_COLUMNS
from raypz.features import FeatureTransform
from raypz.infer import CatalogPredictor, InferConfig, run_inference
from raypz.schema import ContractError

C = DEFAULT_COLUMNS


def _first_file(small_survey: str) -> pa.Table:
    return pq.read_table(io.list_parquet_files(small_survey)[0])


def _input_dir(tmp_path: Path, table: pa.Table) -> Path:
    """An input directory holding ``table`` as its one shard, ``shard-0.parquet``."""
    bad = tmp_path / "input"
    bad.mkdir()
    pq.write_table(table, bad / "shard-0.parquet")
    return bad


@pytest.mark.parametrize(
    ("breakage", "column", "rule"),
    [
        ("drop y band (artifact bands not in input)", "y_cModelFlux", "missing"),
        ("fluxes as strings", "r_cModelFlux", "type"),
    ],
)
def test_inference_stops_before_any_work_on_a_broken_contract(
    small_survey, small_model, tmp_path, breakage, column, rule
):
    table = _first_file(small_survey)
    if breakage.startswith("drop"):
        table = table.drop_columns(["y_cModelFlux", "y_cModelFluxErr"])
    else:
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, table[column].cast(pa.string()))
    bad = _input_dir(tmp_path, table)
    out = tmp_path / "catalog"
    with pytest.raises(ContractError) as info:
        run_inference(str(bad), small_model, str(out), InferConfig())
    assert info.value.column == column and str(bad / "shard-0.parquet") in str(info.value)
    assert rule in str(info.value)
    assert not out.exists()  # nothing written, nothing to clean up


def test_rerun_into_a_catalog_of_other_inputs_is_refused(tmp_path, small_survey, small_model):
    out = tmp_path / "catalog"
    out.mkdir()
    other = '{"fingerprint": "another run", "model_id": "catalog-0123456789ab", "sources": 3}'
    (out / "raypz_run_summary.json").write_text(other)
    with pytest.raises(FileExistsError, match="other inputs, another model") as info:
        run_inference(small_survey, small_model, str(out), InferConfig(validate="schema"))
    assert "model 'catalog-0123456789ab' (now '" in str(info.value)  # what differs, where known
    assert "input files" not in str(info.value)  # the same 3 files
    assert (out / "raypz_run_summary.json").read_text() == other


def test_per_row_problems_become_flags_and_no_row_is_dropped(small_survey, small_model):
    predictor = CatalogPredictor(small_model, device="cpu")
    table = _first_file(small_survey).slice(0, 8).select(predictor.input_columns)
    cols = {n: table[n].to_numpy().copy() for n in table.column_names}
    cols["g_cModelFlux"][0] = np.nan  # one band missing
    for b in BANDS:  # all bands NaN
        cols[f"{b}_cModelFlux"][1] = np.nan
    cols["r_cModelFluxErr"][2] = 0.0  # zero error
    cols["i_cModelFluxErr"][3] = -1.0  # negative error
    cols["z_cModelFlux"][4] = np.inf  # infinite flux
    cols["u_cModelFlux"][5] = 1e14  # absurd flux (10 mag brighter than any galaxy)
    out = predictor(pa.table(cols))
    flags = out["flags"].to_numpy()
    assert out.num_rows == 8
    expected = {
        0: fl.BAND_MISSING,
        1: fl.NO_PDF,
        2: fl.NONFINITE_INPUT,
        3: fl.NONFINITE_INPUT,
        4: fl.NONFINITE_INPUT,
        5: fl.ABSURD_FLUX,
    }
    for row, bit in expected.items():
        assert flags[row] & bit, (row, fl.FLAG_NAMES.get(bit))
    assert [out["pdf"][i].is_valid for i in range(8)] == [True, False, *[True] * 6]


finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(-1e5, 1e6),
)


@settings(max_examples=60, deadline=None)
@given(
    flux=arrays(np.float64, (16, len(BANDS)), elements=finite_or_not),
    err=arrays(np.float64, (16, len(BANDS)), elements=finite_or_not),
)
def test_feature_transform_never_crashes_or_drops_rows(flux, err):
    rng = np.random.default_rng(0)
    train_flux = 10 ** rng.uniform(1, 4, (200, len(BANDS)))
    transform = FeatureTransform.fit(train_flux, np.full_like(train_flux, 30.0))
    x, flags = transform.transform_fluxes(flux, err)
    assert x.shape == (16, transform.n_features) and flags.shape == (16,)
    assert np.all(np.isfinite(x))
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(flux) & np.isfinite(err) & (err > 0) & (np.abs(flux) <= 1e12)
    assert np.array_equal((flags & fl.NO_PDF) != 0, ~usable.any(axis=1))
    assert np.array_equal((flags & fl.BAND_MISSING) != 0, ~usable.all(axis=1))


def test_a_hats_input_lists_only_its_dataset_files(tmp_path, small_survey):
    """A HATS object catalog's rows are its dataset/ files only: a Parquet file beside them is
    no input (inference over HATS input: tests/infer/test_hats_input.py)."""
    root = tmp_path / "objects"
    (root / "dataset" / "Norder=0" / "Dir=0").mkdir(parents=True)
    table = _first_file(small_survey)
    pq.write_table(table, root / "dataset" / "Norder=0" / "Dir=0" / "Npix=1.parquet")
    (root / "properties").write_text("obs_collection=objects\n")
    pq.write_table(pa.table({"x": [1]}), root / "stray.parquet")  # ignored: not in dataset/
    files = io.list_parquet_files(str(root))
    assert files == [str(root / "dataset" / "Norder=0" / "Dir=0" / "Npix=1.parquet")]


def test_rows_without_a_sky_position_stop_the_job_before_prediction(
    ray_session, small_survey, small_model, tmp_path
):
    table = _first_file(small_survey)
    ra = table["coord_ra"].to_numpy().copy()
    ra[7] = np.nan
    table = table.set_column(table.schema.get_field_index("coord_ra"), "coord_ra", pa.array(ra))
    bad = _input_dir(tmp_path, table)
    out = tmp_path / "catalog"
    with pytest.raises(ContractError, match="without a valid sky position") as info:
        run_inference(str(bad), small_model, str(out), InferConfig(validate="schema"))
    assert info.value.column == "coord_ra/coord_dec" and "shard-0.parquet" in info.value.file
    assert not list(out.rglob("src*.parquet"))  # nothing was predicted


def test_a_repeated_id_stops_a_schema_validated_run_before_prediction(
    ray_session, small_survey, small_model, tmp_path
):
    """validate="schema" reads no rows up front; the first pass still checks each file's ids,
    since merging would keep one of two equal (position, objectId) rows and the run would fail
    only at the end, on every rerun."""
    table = _first_file(small_survey)
    table = pa.concat_tables([table, table.slice(3, 1)])  # row 3 exported twice
    bad = _input_dir(tmp_path, table)
    out = tmp_path / "catalog"
    with pytest.raises(ContractError, match="is duplicated") as info:
        run_inference(str(bad), small_model, str(out), InferConfig(validate="schema"))
    assert info.value.column == C.object_id and "shard-0.parquet" in info.value.file
    assert not list(out.rglob("src*.parquet"))  # nothing was predicted


def test_a_catalog_inside_its_input_or_an_empty_path_is_refused(
    ray_session, small_survey, small_model, tmp_path
):
    """Inside the input, a rerun would read the finished partitions as object rows; an empty
    path would write into the current directory."""
    for out in (small_survey, f"{small_survey}/photoz"):
        with pytest.raises(ValueError, match="outside the input"):
            run_inference(small_survey, small_model, out, InferConfig(validate="schema"))
    assert not Path(small_survey, "photoz").exists()
    with pytest.raises(ValueError, match="empty path"):
        run_inference(small_survey, small_model, "", InferConfig(validate="schema"))


def test_a_pool_no_node_of_a_local_ray_can_hold_stops_the_job(
    ray_session, small_survey, small_model, tmp_path, monkeypatch
):
    """The session's Ray is local (one node, no RAY_ADDRESS): an actor of more CPUs than the
    node has, or a GPU actor on a machine without one, would wait forever."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for config in (InferConfig(cpus_per_actor=3), InferConfig(device="cuda")):
        out = tmp_path / config.device
        with pytest.raises(ValueError, match=r"fits no node now.*wait forever"):
            run_inference(small_survey, small_model, str(out), config)
        assert not list(out.rglob("*.parquet"))  # no prediction was staged


def test_evaluating_against_a_truth_of_other_objects_is_refused(small_survey, tmp_path):
    from raypz.evaluation import EvaluationRequest, evaluate_predictions
    from raypz.pdf import ZGrid
    from raypz.predictions import predictions_table

    grid = ZGrid(0.0, 3.0, 31)
    pdf = np.full((3, grid.n), 1.0 / 3.0, dtype=np.float32)
    pred = tmp_path / "pred.parquet"
    pq.write_table(predictions_table(np.array([-1, -2, -3]), pdf, grid), pred)
    request = EvaluationRequest(str(pred), small_survey, str(tmp_path / "report"))
    with pytest.raises(ValueError, match="no objectId in common"):
        evaluate_predictions(request)
    assert not (tmp_path / "report").exists()
