"""Integration: cutouts apart from the object table (issue 15).

A fusion CNN is trained with Ray Train on a deep field whose cutouts are Parquet cutout shards
apart from the object shards (``train_ensemble(..., cutouts=STORE)``), then run by the
inference pipeline over the same wide field in the three layouts the simulator writes (cutout
column, Parquet cutout shards, FITS cutout files): the three catalogs must be the same. Then
the join's per-row rules: a missing cutout is a flag, a cutout without an object is counted,
a repeated objectId in a cutout file stops the job before it writes anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from raypz import flags as fl
from raypz.infer import InferConfig, run_inference
from raypz.models import ImageNetConfig, load_artifact
from raypz.pdf import ZGrid
from raypz.predictions import read_predictions
from raypz.schema import ContractError
from raypz.sim import SurveyConfig
from raypz.sim.survey import write_shard
from raypz.train import TrainConfig, train_ensemble

pytestmark = pytest.mark.timeout(400)

CONFIG = TrainConfig(
    members=1,
    epochs=2,
    batch_size=128,
    val_fraction=0.2,
    seed=5,
    grid=ZGrid(0.0, 3.5, 351),
    calibration_rows=200,
    image=ImageNetConfig(stem_channels=8, blocks=(16, 16), hidden=(32,), fusion=True),
)
INFER = InferConfig(max_rows_per_partition=400, image_batch_mb=1)


def _survey(root: Path, layout: str, n: int, seed: int, field: str) -> tuple[str, str | None]:
    """Write a 2-shard survey with 16x16 cutouts in ``layout``; (objects, cutout store)."""
    config = SurveyConfig(
        n_objects=n,
        seed=seed,
        field=field,
        cutouts=True,
        cutout_size=16,
        rows_per_shard=n // 2,
        cutout_layout=layout,
    )
    out = root / layout
    for i in range(config.n_shards):
        write_shard(config, i, str(out))
    return str(out), (str(out / "cutouts") if layout != "column" else None)


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> dict[str, tuple[str, str | None]]:
    """The same 600-row wide field in the three layouts."""
    root = tmp_path_factory.mktemp("wide")
    return {lay: _survey(root, lay, 600, 31, "wide") for lay in ("column", "shards", "fits")}


@pytest.fixture(scope="module")
def fusion_model(ray_session, tmp_path_factory) -> str:
    """A fusion CNN trained on a deep field whose cutouts are Parquet cutout shards."""
    objects, store = _survey(tmp_path_factory.mktemp("deep"), "shards", 1200, 32, "deep")
    out = str(tmp_path_factory.mktemp("model") / "fusion")
    train_ensemble(objects, out, CONFIG, name="fusion", cutouts=store)
    return out


def _sorted(catalog: str):
    pred = read_predictions(catalog, columns=["z_mode", "flags"])
    order = np.argsort(pred.object_id)
    return pred.object_id[order], pred.table.take(pa.array(order)), pred.pdf[order]


def test_three_layouts_give_the_same_catalog(fusion_model, wide, tmp_path):
    artifact = load_artifact(fusion_model)
    assert artifact.cutouts.shape == (6, 16, 16)
    assert artifact.meta["metrics"]["n_scored"] > 100  # validation cutouts came from the store
    results = {}
    for layout, (objects, store) in wide.items():
        out = str(tmp_path / layout)
        summary = run_inference(objects, fusion_model, out, INFER, cutouts=store)
        assert summary.rows_in == summary.rows_out == 600
        assert summary.flagged["no_cutout"] == 0
        if store is not None:
            assert summary.cutouts["matched"] == 600
            assert summary.cutouts["cutouts_without_object"] == 0
        else:
            assert summary.cutouts == {}
        results[layout] = _sorted(out)
    ids, table, pdf = results["column"]
    for layout in ("shards", "fits"):
        other_ids, other_table, other_pdf = results[layout]
        np.testing.assert_array_equal(ids, other_ids)
        np.testing.assert_allclose(
            table["z_mode"].to_numpy(), other_table["z_mode"].to_numpy(), atol=1e-5
        )
        np.testing.assert_array_equal(table["flags"].to_numpy(), other_table["flags"].to_numpy())
        np.testing.assert_allclose(pdf, other_pdf, atol=1e-4)


def _edited_store(source: str, target: Path, edit) -> str:
    """A copy of a Parquet cutout store whose first shard is replaced by ``edit(table)``."""
    shutil.copytree(source, target)
    first = target / "shard-00000.parquet"
    table = pq.read_table(first)
    pq.write_table(edit(table), first)
    return str(target)


def test_missing_and_extra_cutouts_are_flagged_and_counted(fusion_model, wide, tmp_path):
    objects, store = wide["shards"]

    def drop_ten_add_five(table: pa.Table) -> pa.Table:
        kept = table.slice(10)
        extra = table.slice(0, 5).set_column(
            0, table.schema.field(0), pc.add(table["objectId"].slice(0, 5), 10**12)
        )
        return pa.concat_tables([kept, extra])

    edited = _edited_store(store, tmp_path / "store", drop_ten_add_five)
    summary = run_inference(objects, fusion_model, str(tmp_path / "cat"), INFER, cutouts=edited)
    assert summary.rows_out == 600  # no row dropped
    assert summary.flagged["no_cutout"] == 10 and summary.flagged["no_pdf"] == 10
    assert summary.cutouts["without_cutout"] == 10
    assert summary.cutouts["cutouts_without_object"] == 5
    _, table, _ = _sorted(str(tmp_path / "cat"))
    no_cutout = (table["flags"].to_numpy() & fl.NO_CUTOUT) != 0
    assert no_cutout.sum() == 10 and table["z_mode"].null_count == 10


def test_repeated_cutout_id_stops_the_job_naming_the_file(fusion_model, wide, tmp_path):
    objects, store = wide["shards"]
    edited = _edited_store(
        store, tmp_path / "store", lambda t: pa.concat_tables([t, t.slice(3, 1)])
    )
    out = tmp_path / "cat"
    with pytest.raises(ContractError, match=r"shard-00000\.parquet.*objectId") as err:
        run_inference(objects, fusion_model, str(out), INFER, cutouts=edited)
    assert "2 cutouts" in str(err.value)
    assert not out.exists()  # stopped before anything was written (the histogram was)


def test_a_store_that_pairs_with_no_input_file_stops_the_job(fusion_model, wide, tmp_path):
    """Object files renamed after their cutouts were cut: nothing would join, and every row
    would be flagged no_cutout. The job stops before any work, naming the store."""
    objects, store = wide["shards"]
    renamed = tmp_path / "objects"
    renamed.mkdir()
    for i, f in enumerate(sorted(Path(objects).glob("*.parquet"))):
        shutil.copy(f, renamed / f"tract-{i}.parquet")
    out = tmp_path / "cat"
    with pytest.raises(ContractError, match=r"tract-0\.parquet or tract-0\.fits") as err:
        run_inference(str(renamed), fusion_model, str(out), INFER, cutouts=store)
    assert err.value.file == str(Path(store).absolute())
    assert not out.exists()


def _rescaled(table: pa.Table, arcsec: str) -> pa.Table:
    """``table`` whose cutout column's field metadata gives another pixel scale."""
    index = table.schema.get_field_index("cutout")
    field = table.schema.field(index)
    meta = {**field.metadata, b"pixel_scale_arcsec": arcsec.encode()}
    return table.cast(table.schema.set(index, field.with_metadata(meta)))


def test_cutouts_of_another_pixel_scale_stop_the_job(fusion_model, wide, tmp_path):
    """A CNN learns sizes in pixels: cutouts of HSC's 0.168" pixels through a model trained on
    LSST's 0.2" gave confident, wrong PDFs with no flag. The scale the training store declared
    is in the model; a store file, a store manifest or a cutout column that declares another
    stops the job before it writes anything, naming what said it."""
    assert load_artifact(fusion_model).cutouts.pixel_scale_arcsec == 0.2
    objects, store = wide["shards"]
    edited = _edited_store(store, tmp_path / "store", lambda t: _rescaled(t, "0.168"))
    out = tmp_path / "cat"
    rule = r"column 'cutout': pixels of 0\.168 arcsec, the model was trained on 0\.2 arcsec"
    with pytest.raises(ContractError, match=rf"shard-00000\.parquet: {rule}"):
        run_inference(objects, fusion_model, str(out), INFER, cutouts=edited)
    assert not out.exists()

    objects, store = wide["fits"]
    copy = tmp_path / "fits_store"
    shutil.copytree(store, copy)
    marker = copy / "_cutout_store.json"
    manifest = json.loads(marker.read_text())
    marker.write_text(json.dumps({**manifest, "pixel_scale_arcsec": 0.168}))
    with pytest.raises(ContractError, match=r"_cutout_store\.json: pixels of 0\.168 arcsec"):
        run_inference(objects, fusion_model, str(out), INFER, cutouts=str(copy))
    assert not out.exists()

    objects, _ = wide["column"]
    column = tmp_path / "column"
    column.mkdir()
    for f in sorted(Path(objects).glob("*.parquet")):
        pq.write_table(_rescaled(pq.read_table(f), "0.168"), column / f.name)
    with pytest.raises(ContractError, match=rf"shard-00000\.parquet: {rule}"):
        run_inference(str(column), fusion_model, str(out), INFER)
    assert not out.exists()
