"""Integration: a domain-adversarial CNN + catalog fusion network trained with Ray Train on
simulated deep-field cutouts (wide field as target), then run by the inference pipeline over
the wide field's cutout shards and read back with lsdb."""

from __future__ import annotations

import dataclasses
import json

import lsdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from raypz import flags as fl
from raypz import io
from raypz.features.cutouts import CutoutStretch, cutout_array
from raypz.infer import CatalogPredictor, InferConfig, run_inference
from raypz.models import ImageNetConfig, load_artifact
from raypz.pdf import ZGrid
from raypz.schema import ContractError
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train import TrainConfig, train_ensemble
from raypz.train.labelled import train_mask
from raypz.train.members import predict_members

pytestmark = pytest.mark.timeout(400)

CONFIG = TrainConfig(
    members=1,
    epochs=2,
    batch_size=128,
    val_fraction=0.2,
    seed=3,
    grid=ZGrid(0.0, 3.5, 351),
    calibration_rows=300,
    image=ImageNetConfig(
        stem_channels=8, blocks=(16, 16), hidden=(32,), fusion=True, domain_adapt=True
    ),
    # the worker leaves 0.5 of the session's 2 CPUs to the streams of rows and target rows: a
    # 1-CPU task among them (Ray Data's V2 Parquet reader lists files in one) waited forever
    cpus_per_worker=1.5,
)


def _field(directory, n: int, seed: int, field: str) -> str:
    config = SurveyConfig(n_objects=n, seed=seed, field=field, cutouts=True, cutout_size=16)
    pq.write_table(simulate_shard(config, 0), directory / "part-0.parquet")
    return str(directory)


@pytest.fixture(scope="module")
def fields(tmp_path_factory) -> tuple[str, str]:
    """Labelled deep field (1500 rows) and wide field (800 rows), 16x16 cutouts."""
    deep = _field(tmp_path_factory.mktemp("deep"), 1500, 21, "deep")
    wide = _field(tmp_path_factory.mktemp("wide"), 800, 22, "wide")
    return deep, wide


@pytest.fixture(scope="module")
def dann_model(ray_session, fields, tmp_path_factory):
    deep, wide = fields
    out = str(tmp_path_factory.mktemp("model") / "dann")
    return out, train_ensemble(deep, out, CONFIG, name="dann", target=wide)


def test_domain_adaptation_needs_a_target(fields, tmp_path):
    with pytest.raises(ValueError, match="target"):
        train_ensemble(fields[0], str(tmp_path / "m"), CONFIG)


def test_image_artifact_records_inputs_architecture_and_adaptation(dann_model, fields):
    out, result = dann_model
    artifact = load_artifact(out)
    meta = json.loads(io.read_bytes(io.join(out, "model.json")))
    assert meta["kind"] == "image" and meta["architecture"]["name"] == "ImageNet"
    assert meta["architecture"]["config"]["domain_adapt"] is True
    assert meta["training"]["target"] == {"path": fields[1]}
    assert artifact.cutouts.shape == (6, 16, 16) and artifact.cutouts.column == "cutout"
    assert artifact.cutouts.pixel_scale_arcsec == 0.2  # declared by the cutout column
    assert all(s > 0 for s in artifact.cutouts.sigma_njy)
    # the stretch is fitted on the training rows' cutouts, never the validation split's
    table = pq.read_table(fields[0], columns=["objectId", "cutout"])
    raw, usable = cutout_array(table["cutout"])
    fit = train_mask(table["objectId"].to_numpy(), CONFIG, None) & usable
    assert artifact.cutouts.sigma_njy == CutoutStretch.fit(raw[fit]).sigma_njy
    assert result.members[0]["epochs_run"] == 2
    assert np.isfinite(result.members[0]["history"]["domain_loss"]).all()
    assert any(k.startswith("domain.") for k in artifact.states[0]), "classifier is saved"
    metrics = meta["metrics"]
    assert metrics["n_scored"] > 200 and np.isfinite(metrics["overall"]["crps_mean"])


def test_member_predictions_refuse_an_image_model(dann_model, fields, tmp_path):
    """jobs/predict_members.py joins no cutouts: it says so instead of failing inside."""
    with pytest.raises(ValueError, match="an image model"):
        predict_members(dann_model[0], fields[1], str(tmp_path / "members"))


def test_predictor_flags_rows_without_cutouts(dann_model, fields):
    out, _ = dann_model
    table = pads.dataset(fields[1], format="parquet").head(6)
    cut = table["cutout"].combine_chunks()
    mask = pa.array([False, True, False, False, False, False])
    storage = pa.FixedSizeListArray.from_arrays(cut.storage.flatten(), 6 * 16 * 16, mask=mask)
    table = table.set_column(
        table.schema.get_field_index("cutout"),
        "cutout",
        pa.ExtensionArray.from_storage(cut.type, storage),
    )
    result = CatalogPredictor(out, device="cpu")(table)
    flags = result["flags"].to_numpy()
    assert flags[1] & fl.NO_CUTOUT and flags[1] & fl.NO_PDF
    assert result["z_median"].is_null().to_pylist() == [False, True, False, False, False, False]
    assert not np.any(flags[[0, 2, 3, 4, 5]] & fl.NO_CUTOUT)


def test_inference_over_cutout_shards_to_lsdb(dann_model, fields, tmp_path):
    out, _ = dann_model
    wide = fields[1]
    catalog = str(tmp_path / "catalog")
    config = InferConfig(max_rows_per_partition=500, image_batch_mb=1)
    assert config.rows_per_batch((6, 16, 16)) == 2**20 // (4 * 6 * 16 * 16)
    summary = run_inference(wide, out, catalog, config)
    assert summary.rows_in == summary.rows_out == 800
    assert summary.flagged["no_cutout"] == 0 and summary.flagged["no_pdf"] == 0
    frame = lsdb.open_catalog(catalog).compute()
    ids = pads.dataset(wide, format="parquet").to_table(["objectId"])["objectId"].to_numpy()
    assert sorted(frame["objectId"]) == sorted(ids)
    assert frame["z_median"].notna().all()


@pytest.fixture(scope="module")
def wide_24px(tmp_path_factory) -> str:
    """A small wide field with 24 x 24 cutouts (the models here read 16 x 16)."""
    config = SurveyConfig(n_objects=60, seed=23, field="wide", cutouts=True, cutout_size=24)
    directory = tmp_path_factory.mktemp("wide24")
    pq.write_table(simulate_shard(config, 0), directory / "part-0.parquet")
    return str(directory)


def test_cutouts_of_another_size_are_refused_before_inference(dann_model, wide_24px, tmp_path):
    """Checked from the footers, as a store's are: it failed in the actors mid-stream, naming
    no file, and left the staging behind."""
    out = tmp_path / "catalog"
    with pytest.raises(
        ContractError,
        match=r"part-0\.parquet: column 'cutout': cutouts of shape "
        r"\(6, 24, 24\), the model reads \(6, 16, 16\)",
    ):
        run_inference(wide_24px, dann_model[0], str(out), InferConfig())
    assert not out.exists()


@pytest.mark.parametrize("role", ["pretrain", "target"])
def test_cutouts_of_another_size_are_refused_before_training(
    ray_session, fields, wide_24px, tmp_path, role
):
    """A pre-training table or a domain-adaptation target whose cutouts differ from the
    training table's: it failed inside Ray Train's workers after the first epoch."""
    deep, _ = fields
    config = (
        CONFIG
        if role == "target"
        else dataclasses.replace(
            CONFIG, image=dataclasses.replace(CONFIG.image, domain_adapt=False)
        )
    )
    with pytest.raises(
        ContractError,
        match=r"part-0\.parquet: column 'cutout': cutouts of shape "
        r"\(6, 24, 24\)",
    ):
        train_ensemble(deep, str(tmp_path / "model"), config, **{role: wide_24px})
    assert not (tmp_path / "model" / "_checkpoints").exists()
