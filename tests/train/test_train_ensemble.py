"""Integration test of ensemble training on a local Ray (2 CPUs): simulate, train, load, resume."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raypz import io
from raypz.columns import BANDS
from raypz.evaluation import EvaluationRequest, evaluate_predictions
from raypz.features.transform import flux_arrays, usable_bands
from raypz.models import load_artifact
from raypz.models.artifact import TRAINING_CURVES
from raypz.models.heads import WIDTH_SCALE_KEY
from raypz.pdf import ZGrid
from raypz.predictions import read_predictions
from raypz.schema import ContractError, usable_redshift
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train import VALIDATION_DIR, TrainConfig, is_validation, train_ensemble
from raypz.train.calibration import WIDTH_SCALE_STEP, WIDTH_SCALES
from raypz.train.ensemble import _run_settings
from raypz.train.finished import RESULT_FILE, load_finished
from raypz.train.labelled import train_mask

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def labelled_survey(tmp_path_factory) -> str:
    """~3k labelled deep-field rows in one Parquet file."""
    directory = tmp_path_factory.mktemp("survey")
    table = simulate_shard(SurveyConfig(n_objects=3000, seed=11, field="deep"), 0)
    pq.write_table(table, directory / "part-0.parquet")
    return str(directory)


CONFIG = TrainConfig(
    members=2,
    epochs=2,
    batch_size=128,
    val_fraction=0.2,
    seed=5,
    grid=ZGrid(0.0, 3.5, 351),
    calibration_rows=400,
    trainer="ray_train",  # the production path of large sets (small ones train in tasks)
)


@pytest.fixture(scope="module")
def trained(ray_session, labelled_survey, tmp_path_factory):
    """A 2-member ensemble trained for 2 epochs on the small survey (one Ray Train run each)."""
    out = str(tmp_path_factory.mktemp("model") / "model")
    return out, train_ensemble(labelled_survey, out, CONFIG, name="test")


def test_artifact_metrics_and_validation_predictions(trained):
    out, result = trained
    artifact = load_artifact(out)
    assert artifact.model_hash == result.model_hash
    assert len(artifact.states) == 2
    assert [m["epochs_run"] for m in result.members] == [2, 2]
    for member in result.members:
        assert member["history"]["epoch"] == [0, 1] and member["resumed_at"] == []
        assert member["best_val_loss"] == min(member["history"]["val_loss"])
    meta = json.loads(io.read_bytes(io.join(out, "model.json")))
    metrics = meta["metrics"]
    assert metrics["split"] == "validation" and metrics["n_scored"] > 300
    assert metrics["split_also_chose"] == [
        "each member's best epoch (the state kept)",
        "the width scale",
    ]
    for key in ("sigma_mad", "crps_mean", "pit_ks", "coverage_68", "eta_0.15"):
        assert np.isfinite(metrics["overall"][key]), key
    assert metrics["mag_i"]["bins"], "magnitude-binned validation metrics"
    # 2 CPUs: one is left to Ray Data, the other holds both members' 0.5-CPU workers at once
    assert meta["training"]["resources"] == {
        "use_gpu": False,
        "cpus_per_worker": 0.5,
        "most_concurrent_members": 2,
        "trainer": "ray_train",
    }
    scale = metrics["calibration"]["width_scale"]
    # the coarse search's range, widened by the fine steps around its best (2 epochs leave an
    # MDN wide: 0.44 is seen here)
    reach = 4 * WIDTH_SCALE_STEP
    assert WIDTH_SCALES[0] - reach <= scale <= WIDTH_SCALES[-1] + reach
    for state in artifact.states:  # the calibration travels with the (hashed) weights
        assert float(state[f"head.{WIDTH_SCALE_KEY}"]) == pytest.approx(scale)

    pred = read_predictions(io.join(out, VALIDATION_DIR))
    assert pred.pdf.shape == (metrics["n_rows"], 351)
    assert np.isfinite(pred.pdf).all()
    mass = np.trapezoid(pred.pdf, dx=pred.grid.dz, axis=1)
    assert np.allclose(mass[mass > 0], 1.0, atol=1e-3)
    assert (mass > 0).mean() > 0.99


def test_rerun_loads_finished_members_and_resumes_the_others(trained, labelled_survey, capsys):
    """Rerunning the same command loads a finished member's stored result without starting Ray
    Train, and resumes a member whose result is missing (as if the driver died between its
    last checkpoint and that file) from its Ray Train run; the progress line counts both."""
    out, result = trained
    runs = sorted(Path(out, "_checkpoints").glob("test-member*"))
    assert [r.name[:13] for r in runs] == ["test-member00", "test-member01"]
    loaded, resumed = (r / RESULT_FILE for r in runs)
    loaded_dir = {p: p.stat().st_mtime_ns for p in runs[0].rglob("*")}
    resumed.unlink()
    capsys.readouterr()
    again = train_ensemble(labelled_survey, out, CONFIG, name="test")
    assert [m["epochs_run"] for m in again.members] == [2, 2]
    assert [m["history"] for m in again.members] == [m["history"] for m in result.members]
    assert again.model_hash == result.model_hash
    assert "train: 4/4 epochs (100%)" in capsys.readouterr().out
    # the loaded member's Ray Train run was not touched; the resumed one stored its result
    assert {p: p.stat().st_mtime_ns for p in runs[0].rglob("*")} == loaded_dir
    assert loaded.exists() and resumed.exists()


def test_training_curves_are_written_and_linked_by_the_report(trained, labelled_survey, tmp_path):
    out, _ = trained
    curves = io.read_bytes(io.join(out, TRAINING_CURVES))
    assert curves.startswith(b"\x89PNG")
    request = EvaluationRequest(
        predictions=io.join(out, VALIDATION_DIR),
        truth=labelled_survey,
        report=str(tmp_path / "report"),
        name="ensemble",
        model=out,
    )
    evaluate_predictions(request)
    assert (tmp_path / "report" / "ensemble" / TRAINING_CURVES).read_bytes() == curves
    assert f"(ensemble/{TRAINING_CURVES})" in (tmp_path / "report" / "report.md").read_text()


def test_small_sets_train_members_in_tasks_and_a_rerun_skips_them(
    ray_session, labelled_survey, tmp_path
):
    """The default trainer of a small catalog set: one Ray task per member (no Ray Train);
    rerunning loads the finished members instead of training them again."""
    config = dataclasses.replace(CONFIG, trainer="auto", epochs=3)
    out = str(tmp_path / "model")
    first = train_ensemble(labelled_survey, out, config, name="tasks")
    meta = load_artifact(out).meta
    assert meta["training"]["resources"]["trainer"] == "tasks"
    assert meta["training"]["resources"]["most_concurrent_members"] == 2  # no CPU kept for data
    assert [m["history"]["epoch"] for m in first.members] == [[0, 1, 2]] * 2
    assert meta["metrics"]["n_scored"] > 300
    again = train_ensemble(labelled_survey, out, config, name="tasks")
    assert again.model_hash == first.model_hash
    assert [m["history"] for m in again.members] == [m["history"] for m in first.members]

    # the same command with --pretrain into the same directory: the members start from the
    # pre-trained weights under a transform fitted on both tables, so none is reused
    # that is another model: refused, unless asked to replace the one there
    sim = tmp_path / "sim.parquet"
    pq.write_table(simulate_shard(SurveyConfig(n_objects=1000, seed=12, field="deep"), 0), sim)
    with pytest.raises(FileExistsError, match=r"model\.json: a model trained on other data"):
        train_ensemble(labelled_survey, out, config, name="tasks", pretrain=str(sim))
    assert load_artifact(out).model_hash == first.model_hash
    stale = tmp_path / "model" / "member-02.safetensors"  # as if the old model had 3 members
    stale.write_bytes(b"old")
    tuned = train_ensemble(
        labelled_survey, out, config, name="tasks", pretrain=str(sim), replace=True
    )
    assert load_artifact(out).meta["training"]["pretrain"]["path"] == str(sim)
    assert not stale.exists()
    for before, after in zip(first.members, tuned.members, strict=True):
        assert after["history"] != before["history"]

    # each member was pre-trained on its own, seeded like the member: two starts, not one
    runs = sorted(Path(out, "_checkpoints").glob("tasks-pretrain*"))
    assert [r.name[:16] for r in runs] == ["tasks-pretrain00", "tasks-pretrain01"]
    starts = [load_finished(str(r))[0] for r in runs]
    assert any(not torch.equal(starts[0][k], v) for k, v in starts[1].items())
    # one shared pre-training when asked: member 0's (the same seed), started from by both
    shared = dataclasses.replace(config, pretrain_each_member=False)
    one = str(tmp_path / "shared")
    train_ensemble(labelled_survey, one, shared, name="tasks", pretrain=str(sim))
    [run] = Path(one, "_checkpoints").glob("tasks-pretrain*")
    assert run.name == runs[0].name  # the same run: switching the mode reuses member 0's
    start = load_finished(str(run))[0]
    assert all(torch.equal(start[k], v) for k, v in starts[0].items())


def test_run_settings_find_models_from_before_pretrain_each_member():
    """Runs and model.json files written before ``pretrain_each_member`` existed lack it:
    without pre-training they are still this config's (the field changes nothing there),
    with pre-training they shared one; a pre-training's own id ignores what it does not read."""
    now = TrainConfig().to_dict()
    before = {k: v for k, v in now.items() if k != "pretrain_each_member"}
    assert _run_settings(before, pretrained=False) == _run_settings(now, pretrained=False)
    assert _run_settings(before, pretrained=True) != _run_settings(now, pretrained=True)
    shared = TrainConfig(pretrain_each_member=False).to_dict()
    assert _run_settings(before, pretrained=True) == _run_settings(shared, pretrained=True)
    other = TrainConfig(members=7, finetune_lr_factor=0.1, pretrain_each_member=False).to_dict()
    assert _run_settings(other, True, pretraining=True) == _run_settings(now, True, True)
    assert _run_settings(other, True) != _run_settings(now, True)


def test_training_rows_that_teach_nothing_are_counted(
    ray_session, labelled_survey, tmp_path, capsys
):
    """Rows without a usable redshift, or without a usable band, stream through every epoch
    with weight 0: each member counts them, model.json records it and the run says so."""
    table = pq.read_table(next(Path(labelled_survey).glob("*.parquet")))
    config = dataclasses.replace(CONFIG, trainer="auto", members=1, epochs=1)
    c = config.columns
    columns = {name: table[name].to_numpy().copy() for name in table.column_names}
    columns[c.redshift][:60] = np.nan
    for name in c.flux_columns(BANDS):
        columns[name][60:100] = np.nan
    data = tmp_path / "holes"
    data.mkdir()
    pq.write_table(pa.table(columns), data / "part-0.parquet")
    usable, _ = usable_bands(*flux_arrays(columns, c))
    teaches = usable_redshift(columns[c.redshift]) & usable.any(axis=1)
    in_train = train_mask(columns[c.object_id], config, fold=None)
    expected = int((in_train & ~teaches).sum())
    assert expected > 60  # most of the 100 rows fall in the training split

    result = train_ensemble(str(data), str(tmp_path / "model"), config, name="holes")
    assert [m["unused_rows"] for m in result.members] == [expected]
    said = capsys.readouterr().out
    assert f"train: {expected} training rows of {data} (the most of any member)" in said
    meta = load_artifact(str(tmp_path / "model")).meta
    assert meta["members"][0]["unused_rows"] == expected


def test_an_output_of_other_files_or_inside_the_table_is_refused_before_training(
    ray_session, labelled_survey, tmp_path
):
    other = tmp_path / "catalog"
    other.mkdir()
    (other / "properties").write_text("obs_collection=theirs\n")
    with pytest.raises(FileExistsError, match=r"catalog: not empty \(properties\)"):
        train_ensemble(labelled_survey, str(other), CONFIG)
    assert [p.name for p in other.iterdir()] == ["properties"]
    inside = f"{labelled_survey}/model"
    with pytest.raises(ValueError, match="outside its training table"):
        train_ensemble(labelled_survey, inside, CONFIG)
    assert not io.is_file(io.join(inside, "model.json"))



def test_a_table_without_validation_labels_is_refused_before_training(
    ray_session, labelled_survey, tmp_path
):
    """Its validation loss would be 0 every epoch: early stopping would keep the first epoch's
    weights without a word."""
    table = pq.read_table(labelled_survey)
    z = table["redshift"].to_numpy().copy()
    z[is_validation(table["objectId"].to_numpy(), CONFIG.val_fraction)] = np.nan
    table = table.set_column(table.schema.get_field_index("redshift"), "redshift", pa.array(z))
    pq.write_table(table, tmp_path / "unlabelled_validation.parquet")
    with pytest.raises(ValueError, match=r"unlabelled_validation\.parquet: no row of the valid"):
        train_ensemble(str(tmp_path / "unlabelled_validation.parquet"), str(tmp_path / "m"), CONFIG)
    assert not (tmp_path / "m" / "model.json").exists()


@pytest.mark.parametrize("breakage", ["u flux all NaN", "every error 0"])
def test_a_band_no_row_measured_is_refused_before_training(
    ray_session, labelled_survey, tmp_path, breakage
):
    """A transform fitted without a band's measurements put every object that has one far
    from the training set (all 3000 flagged far_from_training); with every error 0 the job
    died inside the training reference, naming no file or rule."""
    table = pq.read_table(labelled_survey)
    names = ["u_cModelFlux"] if breakage.startswith("u") else [
        f"{b}_cModelFluxErr" for b in "ugrizy"
    ]  # fmt: skip
    for name in names:
        value = np.nan if breakage.startswith("u") else 0.0
        column = pa.array(np.full(table.num_rows, value), table.schema.field(name).type)
        table = table.set_column(table.schema.get_field_index(name), name, column)
    pq.write_table(table, tmp_path / "broken.parquet")
    with pytest.raises(ContractError, match="no row measured band u") as info:
        train_ensemble(str(tmp_path / "broken.parquet"), str(tmp_path / "m"), CONFIG)
    assert info.value.column == "u_cModelFlux" and info.value.file.endswith("broken.parquet")
    assert not (tmp_path / "m" / "model.json").exists()


def test_labels_that_are_all_one_value_are_refused_before_training(labelled_survey, tmp_path):
    """A constant redshift column (a placeholder, or the wrong column) trained a spike at that
    value for every object, with perfect validation metrics."""
    table = pq.read_table(labelled_survey)
    name = "redshift"
    z = np.where(np.arange(table.num_rows) % 7 == 0, -99.0, 0.5)  # placeholders are not labels
    table = table.set_column(
        table.schema.get_field_index(name), name, pa.array(z, table.schema.field(name).type)
    )
    pq.write_table(table, tmp_path / "constant.parquet")
    with pytest.raises(ContractError, match=r"every usable label is z = 0\.5") as info:
        train_ensemble(str(tmp_path / "constant.parquet"), str(tmp_path / "m"), CONFIG)
    assert info.value.column == name and info.value.file.endswith("constant.parquet")
    assert not (tmp_path / "m" / "model.json").exists()


def test_labels_beyond_the_grid_are_counted_before_training(labelled_survey, capsys):
    from raypz.train.ensemble import _warn_beyond_grid
    from raypz.train.labelled import read_labelled

    rows = read_labelled(labelled_survey, CONFIG)
    _warn_beyond_grid(labelled_survey, rows, CONFIG)
    assert "beyond the z grid" not in capsys.readouterr().out
    rows.z[:7] = CONFIG.grid.z_max + 1.5
    _warn_beyond_grid(labelled_survey, rows, CONFIG)
    assert f"7 of {rows.z.size} labels lie beyond the z grid's end" in capsys.readouterr().out


def test_kfold_members_split_the_training_rows_and_are_scored_on_the_held_out_split(
    ray_session, labelled_survey, tmp_path
):
    """k-fold members train on different folds, but the validation split is held out of all of
    them, so the calibration and model.json's metrics score the deployed mean PDF on rows that
    no member saw (not each member on its own fold, which fits the width to single members)."""
    config = dataclasses.replace(CONFIG, trainer="auto", kfold=2)
    out = str(tmp_path / "model")
    result = train_ensemble(labelled_survey, out, config, name="kfold")
    assert [m["fold"] for m in result.members] == [0, 1]
    ids = pq.read_table(labelled_survey, columns=["objectId"])["objectId"].to_numpy()
    held_out = is_validation(ids, config.val_fraction)
    metrics = load_artifact(out).meta["metrics"]
    assert metrics["split"] == "validation" and metrics["n_rows"] == held_out.sum()
    pred = read_predictions(io.join(out, VALIDATION_DIR))
    assert sorted(pred.object_id) == sorted(ids[held_out])
    assert 0.5 <= metrics["calibration"]["width_scale"] <= 1.5


def test_a_training_into_a_model_another_run_is_writing_is_refused(labelled_survey, tmp_path):
    """Two trainings into one directory both passed the output checks (no model.json yet)
    and left one run's model with the other's stray member files; now the second is refused
    at once."""
    from raypz.lease import OutputLease

    out = tmp_path / "model"
    with OutputLease(str(out), "raypz training"):
        with pytest.raises(FileExistsError, match=r"being written by another run, raypz "
                           r"training \(pid "):
            train_ensemble(labelled_survey, str(out), CONFIG, name="second")
        assert [p.name for p in out.iterdir()] == ["_lease.json"]


def test_a_model_name_that_is_a_path_is_refused(labelled_survey, tmp_path):
    """The name starts the checkpoint directories: ``../../x`` wrote outside the output."""
    for bad in ("../../escape/x", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(ValueError, match="model name"):
            train_ensemble(labelled_survey, str(tmp_path / "m"), CONFIG, name=bad)
    assert not (tmp_path / "m").exists() and not (tmp_path.parent / "escape").exists()


def test_a_refused_input_leaves_the_model_it_would_replace_whole(
    trained, labelled_survey, tmp_path
):
    """--replace removed the old model before the new table's labels were checked: a refused
    input cost the model. A table without one usable label is named as such, not as a
    validation split that is too small."""
    out, _ = trained
    model = tmp_path / "model"
    shutil.copytree(out, model)
    before = sorted(p.name for p in model.iterdir())
    table = pq.read_table(labelled_survey)
    z = pa.array(np.full(table.num_rows, -99.0), table.schema.field("redshift").type)
    table = table.set_column(table.schema.get_field_index("redshift"), "redshift", z)
    pq.write_table(table, tmp_path / "unlabelled.parquet")
    with pytest.raises(ContractError, match=r"column 'redshift': no usable label in 3000 rows"):
        train_ensemble(str(tmp_path / "unlabelled.parquet"), str(model), CONFIG, replace=True)
    assert sorted(p.name for p in model.iterdir()) == before
    assert load_artifact(str(model)).model_hash == load_artifact(out).model_hash
