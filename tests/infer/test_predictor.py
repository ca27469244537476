"""The in-process (Ray-free) inference path: one Parquet file through CatalogPredictor."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raypz import flags as fl
from raypz import io
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
