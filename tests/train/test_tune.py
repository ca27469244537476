"""jobs/tune_ensemble.py: a small ASHA search on a simulated labelled table (in the session's
Ray), its outputs, its rerun, and jobs/train_ensemble.py --config reading what it wrote."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypz.models import CatalogNetConfig, ImageNetConfig
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train import TrainConfig
from raypz.train.tune import (
    BEST_CONFIG,
    EXPERIMENT,
    METRIC,
    SEARCH_JSON,
    SEARCH_SPACE,
    TRIALS_CSV,
    TRIALS_MD,
    apply_params,
)

JOBS = Path(__file__).resolve().parents[2] / "jobs"
TRIALS = 4
EPOCHS = 3


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_job", JOBS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tune_job():
    return _job("tune_ensemble")


@pytest.fixture(scope="module")
def train_job():
    return _job("train_ensemble")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("labelled") / "train.parquet"
    pq.write_table(simulate_shard(SurveyConfig(n_objects=2000, seed=5, field="deep"), 0), path)
    return str(path)


def _argv(labelled: str, output: Path | str, *extra: str) -> list[str]:
    return [
        "--train", labelled, "--output", str(output), "--trials", str(TRIALS),
        "--epochs", str(EPOCHS), "--grace-period", "1", "--reduction-factor", "2",
        "--checkpoint-every", "2", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def search(ray_session, tune_job, labelled, tmp_path_factory):
    """The job run once: (its output directory, its argv, what it printed)."""
    import contextlib
    import io

    output = tmp_path_factory.mktemp("tune") / "out"
    argv = _argv(labelled, output)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert tune_job.main(argv) == 0
    return output, argv, printed.getvalue()


def test_search_writes_the_best_config_and_every_trial(search):
    output, _, printed = search
    best = TrainConfig.from_dict(json.loads((output / BEST_CONFIG).read_text()))
    trials = pd.read_csv(output / TRIALS_CSV)
    assert len(trials) == TRIALS and trials["trial"].is_unique
    assert list(trials["rank"]) == list(range(1, TRIALS + 1))
    assert set(trials["status"]) <= {"finished", "stopped"} and "finished" in set(trials["status"])
    assert (trials["epochs"] >= 1).all() and (trials["epochs"] <= EPOCHS).all()
    # the best trial has the lowest validation score that any trial reported in any epoch
    reported = pd.concat(
        pd.read_csv(p) for p in sorted((output / EXPERIMENT).glob("*/progress.csv"))
    )
    assert set(reported["trial_id"]) == set(trials["trial"])
    top = trials.iloc[0]
    assert top[METRIC] == pytest.approx(reported["val_nll"].min())
    assert top[METRIC] == pytest.approx(trials[METRIC].min())
    assert top["status"] == "finished" and top["sigma_mad"] > 0 and top["crps"] > 0
    # best_config.json is the default base with the best trial's sampled settings
    params = json.loads((output / EXPERIMENT / top["trial"] / "params.json").read_text())
    assert set(params) == set(SEARCH_SPACE)
    assert best == apply_params(TrainConfig(epochs=EPOCHS), params)
    assert best.net.hidden == (params["width"],) * params["depth"]
    assert best.lr == pytest.approx(top["lr"]) and best.epochs == EPOCHS
    table = (output / TRIALS_MD).read_text()
    assert table.count("\n") == TRIALS + 2 and "| crps |" in table.splitlines()[0]
    assert json.loads((output / SEARCH_JSON).read_text())["best_trial"]["trial"] == top["trial"]
    assert "tune done: 4 trials" in printed and str(output / BEST_CONFIG) in printed


def test_best_config_is_the_base_of_train_ensemble(search, train_job):
    output, _, _ = search
    best = TrainConfig.from_dict(json.loads((output / BEST_CONFIG).read_text()))
    argv = ["--train", "t", "--output", "o", "--config", str(output / BEST_CONFIG)]
    args = train_job.parse_args([*argv, "--members", "1", "--epochs", "1"])
    assert train_job.config_from_args(args) == dataclasses.replace(best, members=1, epochs=1)
    assert train_job.config_from_args(train_job.parse_args(argv)) == best


def test_rerun_continues_the_finished_search_and_a_changed_one_is_refused(search, tune_job, capsys):
    output, argv, _ = search
    before = pd.read_csv(output / TRIALS_CSV)
    assert tune_job.main(argv) == 0
    assert "(resumed)" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(output / TRIALS_CSV), before)
    with pytest.raises(FileExistsError, match="other settings"):
        tune_job.main([*argv, "--patience", "2"])


def test_an_experiment_raypz_did_not_start_is_not_continued(search, tune_job, tmp_path):
    """Continuing a Tune experiment unpickles its tuner.pkl; one without this search's
    search.json (planted, or another tool's) was continued, and a crafted tuner.pkl ran code."""
    import shutil

    output, argv, _ = search
    foreign = tmp_path / "foreign"
    shutil.copytree(output / EXPERIMENT, foreign / EXPERIMENT)
    argv = [*argv[: argv.index("--output") + 1], str(foreign), *argv[argv.index("--output") + 2 :]]
    with pytest.raises(FileExistsError, match="holds a Tune experiment that raypz did not start"):
        tune_job.main(argv)
    assert not (foreign / SEARCH_JSON).exists()


def test_a_search_on_s3_keeps_its_results_and_experiment_there(
    ray_session, tune_job, labelled, s3_root, capsys
):
    """Tune gets raypz's S3 filesystem (endpoint and upload settings from the environment),
    as the members of train_ensemble do: with Ray's own, the first upload failed."""
    from raypz import io as rio

    output = f"{s3_root}/tune"
    argv = _argv(labelled, output, "--trials", "2")  # the last --trials counts
    assert tune_job.main(argv) == 0
    best = json.loads(rio.read_bytes(f"{output}/{BEST_CONFIG}"))
    assert TrainConfig.from_dict(best).epochs == EPOCHS
    fs, inner = rio.resolve(f"{output}/{EXPERIMENT}")
    assert fs.get_file_info(inner).type.name == "Directory"
    assert tune_job.main(argv) == 0 and "(resumed)" in capsys.readouterr().out


def test_resume_needs_an_existing_search(ray_session, tune_job, labelled, tmp_path):
    with pytest.raises(SystemExit, match="no Tune experiment"):
        tune_job.main([*_argv(labelled, tmp_path / "none"), "--resume"])


def test_a_table_training_would_refuse_is_refused_before_any_trial(labelled, tmp_path):
    """Each trial failed inside on its own, and the search ended in 'no trial reported a
    score' after their tracebacks."""
    from raypz.schema import ContractError
    from raypz.train.tune import run_search

    table = pq.read_table(labelled)
    z = pa.array(np.full(table.num_rows, -99.0), table.schema.field("redshift").type)
    pq.write_table(table.set_column(table.schema.get_field_index("redshift"), "redshift", z),
                   tmp_path / "unlabelled.parquet")  # fmt: skip
    with pytest.raises(ContractError, match="column 'redshift': no usable label"):
        run_search(str(tmp_path / "unlabelled.parquet"), str(tmp_path / "search"))
    assert not (tmp_path / "search").exists()


def test_tune_flags_leave_the_searched_fields_to_the_search(tune_job, tmp_path):
    argv = ["--train", "t", "--output", "o"]
    base, settings = tune_job.configs_from_args(tune_job.parse_args(argv))
    assert base == TrainConfig() and settings.trials == 16 and settings.time_budget_s is None
    for searched in (["--lr", "0.1"], ["--hidden", "8"], ["--dae-weight", "1"]):
        with pytest.raises(SystemExit):
            tune_job.parse_args([*argv, *searched])
    path = tmp_path / "base.json"
    path.write_text(json.dumps({"members": 3, "net": {"head": "binned"}}))
    base, _ = tune_job.configs_from_args(
        tune_job.parse_args([*argv, "--config", str(path), "--epochs", "7"])
    )
    assert base == TrainConfig(members=3, epochs=7, net=CatalogNetConfig(head="binned"))


def test_config_file_is_the_base_of_the_flags(train_job, tmp_path):
    argv = ["--train", "t", "--output", "o", "--config"]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"lr": 1e-3, "net": {"hidden": [64, 32]}, "calibrate": False}))
    config = train_job.config_from_args(
        train_job.parse_args([*argv, str(partial), "--lr", "5e-4", "--dropout", "0.1"])
    )
    assert config == TrainConfig(
        lr=5e-4, calibrate=False, net=CatalogNetConfig(hidden=(64, 32), dropout=0.1)
    )
    # a model.json gives the config its model was trained with; an image model keeps --inputs
    image = TrainConfig(image=ImageNetConfig(fusion=True), members=2)
    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps({"training": {"config": image.to_dict()}}))
    args = train_job.parse_args([*argv, str(model_json)])
    assert args.inputs == "fusion" and train_job.config_from_args(args) == image
    for bad in ({"no_such_field": 1}, [1, 2]):
        partial.write_text(json.dumps(bad))
        with pytest.raises(SystemExit, match="--config"):
            train_job.parse_args([*argv, str(partial)])
    with pytest.raises(SystemExit, match="--config"):
        train_job.parse_args([*argv, str(tmp_path / "missing.json")])


def test_help(tune_job, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tune_job.build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--trials" in out and "--time-budget-s" in out and "--config" in out


def test_the_concurrency_limit_reaches_the_search_algorithm():
    """Given to TuneConfig beside a search algorithm, Tune ignored it (with a warning) and
    ran as many trials at once as the cluster held."""
    from raypz.train.tune import TuneSettings, tune_config

    config = tune_config(TrainConfig(), TuneSettings(max_concurrent_trials=2))
    assert config.search_alg.max_concurrent == 2 and config.max_concurrent_trials is None
    assert tune_config(TrainConfig(), TuneSettings()).search_alg.max_concurrent == 0  # no limit
