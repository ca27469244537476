"""The in-process (Ray-free) inference path: one Parquet file through CatalogPredictor."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from raypz import compact, io, rowops
from raypz import flags as fl
from raypz.infer import CatalogPredictor
from raypz.pdf import SUMMARY_COLUMNS


def _one_file(small_survey: str) -> pa.Table:
    return pq.read_table(io.list_parquet_files(small_survey)[0])


def test_one_output_row_per_input_row_in_order(small_survey, small_model):
    predictor = CatalogPredictor(small_model, device="cpu")
    table = _one_file(small_survey)
    out = predictor(table.select(predictor.input_columns))
    assert out.schema.equals(predictor.schema)
    assert out.num_rows == table.num_rows
    np.testing.assert_array_equal(out["objectId"].to_numpy(), table["objectId"].to_numpy())
    assert out["pdf"].null_count == 0
    z = out["z_median"].to_numpy()
    lo, hi = out["z_lo68"].to_numpy(), out["z_hi68"].to_numpy()
    assert np.all((lo <= z) & (z <= hi))
    empty = predictor(table.select(predictor.input_columns).slice(0, 0))  # an empty file
    assert empty.num_rows == 0 and empty.schema.equals(predictor.schema)


def test_rows_without_usable_bands_are_kept_and_flagged(small_survey, small_model):
    predictor = CatalogPredictor(small_model, device="cpu")
    table = _one_file(small_survey).slice(0, 10).select(predictor.input_columns)
    cols = {name: table[name] for name in table.column_names}
    for name in predictor.artifact.transform.columns.flux_columns():
        values = table[name].to_numpy().copy()
        values[3] = np.nan
        cols[name] = pa.array(values)
    out = predictor(pa.table(cols))
    flags = out["flags"].to_numpy()
    assert out.num_rows == 10
    assert flags[3] & fl.NO_PDF and not (np.delete(flags, 3) & fl.NO_PDF).any()
    assert not out["pdf"][3].is_valid
    for name in SUMMARY_COLUMNS:
        assert out[name].null_count == 1 and not out[name][3].is_valid
    assert pc.all(pc.is_valid(out["z_mode"].filter(pa.array(np.arange(10) != 3)))).as_py()


def test_gpu_kernels_run_on_cpu_give_the_same_catalog(small_survey, small_model, monkeypatch):
    """The predictor's per-object work is one torch code path; on a GPU, raypz.rowops uses plain
    torch kernels where a CPU uses numpy's. Forcing the torch kernels on the CPU runs the GPU
    code path here. Tolerances: every column but ``pdf`` identical; the compact PDFs' levels
    within one quantum (torch's CPU sqrt is not correctly rounded: it differs from numpy's by
    one ulp for ~18% of values, which moves a level whose root ends near .5)."""
    predictor = CatalogPredictor(small_model, device="cpu")
    table = _one_file(small_survey).select(predictor.input_columns)
    cols = {name: table[name] for name in table.column_names}
    flux = predictor.artifact.transform.columns.flux_columns()[0]
    values = table[flux].to_numpy().copy()
    values[::7] = np.nan  # a band missing: masked, still a PDF
    cols[flux] = pa.array(values)
    for name in predictor.artifact.transform.columns.flux_columns():
        values = cols[name].to_numpy().copy()
        values[5] = np.nan  # no band at all: null summaries and PDF
        cols[name] = pa.array(values)
    table = pa.table(cols)
    numpy_kernels = predictor(table)
    monkeypatch.setattr(rowops, "NUMPY_ON_CPU", False)
    torch_kernels = predictor(table)
    assert torch_kernels.drop_columns(["pdf"]).equals(numpy_kernels.drop_columns(["pdf"]))
    assert not numpy_kernels["pdf"][5].is_valid and not torch_kernels["pdf"][5].is_valid
    n_grid = predictor.artifact.grid.n
    a = _levels(numpy_kernels, n_grid)
    b = _levels(torch_kernels, n_grid)
    assert np.abs(a - b).max() <= 1


def test_concurrent_calls_give_the_same_rows(small_survey, small_model):
    """A GPU actor runs several predictor calls at once, in threads (calls_per_gpu_actor)."""
    predictor = CatalogPredictor(small_model, device="cpu")
    table = _one_file(small_survey).select(predictor.input_columns)
    parts = [table.slice(lo, 97) for lo in range(0, table.num_rows, 97)]
    alone = [predictor(part) for part in parts]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(predictor, parts))
    assert all(a.equals(b) for a, b in zip(alone, together, strict=True))


def _levels(catalog: pa.Table, n_grid: int) -> np.ndarray:
    """The compact PDFs' levels on the grid, as signed ints (differences can be negative)."""
    return compact.levels(catalog["pdf_start"], catalog["pdf"], n_grid).astype(int)


def test_a_batch_of_any_form_gives_a_predictions_table(small_survey, small_model, tmp_path):
    """In a notebook: a pandas frame or a dict of columns predicts as an Arrow table does; the
    output, written to Parquet, is a predictions table (the z grid and model hash travel in
    its schema metadata; read_predictions refused it before); a missing input column is a
    ContractError naming it, not pyarrow's KeyError."""
    from raypz.models import load_artifact
    from raypz.predictions import MODEL_HASH_KEY, read_predictions
    from raypz.schema import ContractError

    predictor = CatalogPredictor(small_model, device="cpu")
    table = _one_file(small_survey).slice(0, 200).select(predictor.input_columns)
    out = predictor(table)
    for other in (table.to_pandas(), table.to_pydict()):
        assert predictor(other).equals(out)
    pq.write_table(out, tmp_path / "p.parquet")
    pred = read_predictions(str(tmp_path / "p.parquet"))
    artifact = load_artifact(small_model)
    assert pred.grid == artifact.grid and pred.pdf.shape == (200, artifact.grid.n)
    assert out.schema.metadata[MODEL_HASH_KEY].decode() == artifact.model_hash
    np.testing.assert_array_equal(pred.object_id, table["objectId"].to_numpy())
    with pytest.raises(ContractError, match=r"the batch: column 'y_cModelFlux': missing"):
        predictor(table.drop_columns(["y_cModelFlux"]))
