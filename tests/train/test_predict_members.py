"""Each member's predictions alone (raypz.train.members.predict_members, jobs/predict_members.py):
one table per member, every input row, and the input checked like inference's."""

from __future__ import annotations

import glob

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypz.predictions import read_predictions
from raypz.schema import ContractError
from raypz.train.members import predict_members


@pytest.fixture(scope="module")
def one_shard(small_survey) -> pa.Table:
    return pq.read_table(sorted(glob.glob(f"{small_survey}/*.parquet"))[0])


def test_every_member_predicts_every_row(small_model, one_shard, tmp_path):
    pq.write_table(one_shard, tmp_path / "objects.parquet")
    paths = predict_members(small_model, str(tmp_path / "objects.parquet"), str(tmp_path / "m"))
    assert len(paths) == 2
    ids = one_shard["objectId"].to_numpy()
    pdfs = []
    for path in paths:
        pred = read_predictions(path)
        np.testing.assert_array_equal(np.sort(pred.object_id), np.sort(ids))
        has = pred.pdf.any(axis=1)
        assert has.mean() > 0.9
        mass = pred.pdf[has].astype(np.float64) @ pred.grid.trapezoid_weights
        np.testing.assert_allclose(mass, 1.0, atol=1e-4)
        pdfs.append(pred.pdf)
    assert not np.allclose(pdfs[0], pdfs[1])  # two members, two networks


@pytest.mark.parametrize("broken", ["duplicated ids", "magnitudes"])
def test_input_that_breaks_the_contract_is_refused(small_model, one_shard, tmp_path, broken):
    """Rows repeated were predicted twice, and magnitudes as if they were fluxes in nJy."""
    table = one_shard
    if broken == "duplicated ids":
        table = pa.concat_tables([table, table.slice(0, 10)])
    else:
        i = table.schema.get_field_index("r_cModelFlux")
        mags = 31.4 - 2.5 * np.log10(np.clip(table["r_cModelFlux"].to_numpy(), 1.0, None))
        table = table.set_column(i, table.schema.field(i), pa.array(mags.astype(np.float32)))
    pq.write_table(table, tmp_path / "objects.parquet")
    with pytest.raises(ContractError):
        predict_members(small_model, str(tmp_path / "objects.parquet"), str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("scale", "calibrate_on", "rule"),
    [(float("nan"), None, "finite number > 0"), (0.0, None, "finite number > 0"),
     (0.5, "train", "not both")],
)  # fmt: skip
def test_width_scale_must_be_positive_and_alone(small_model, tmp_path, scale, calibrate_on, rule):
    with pytest.raises(ValueError, match=rule):
        predict_members(
            small_model, str(tmp_path), str(tmp_path / "m"), width_scale=scale,
            calibrate_on=calibrate_on,
        )  # fmt: skip
