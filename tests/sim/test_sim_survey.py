"""simulate_survey on a local Ray: shards equal to in-process ones, resume, and the CLI."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from raypz import io
from raypz.job_errors import run_job
from raypz.schema import validate_dataset
from raypz.sim import SurveyConfig, simulate_shard, simulate_survey, survey

ROOT = Path(__file__).resolve().parents[2]


def _load_cli():
    spec = importlib.util.spec_from_file_location(
        "simulate_survey_cli", ROOT / "jobs" / "simulate_survey.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ray_task_shards_equal_in_process_shards(ray_session, tmp_path):
    config = SurveyConfig(n_objects=500, seed=21, rows_per_shard=200, epochs=True)
    paths = simulate_survey(config, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == [f"shard-0000{i}.parquet" for i in range(3)]
    for i, path in enumerate(paths):
        written = pq.read_table(path)
        assert written.equals(simulate_shard(config, i), check_metadata=True)
    mtimes = [os.path.getmtime(p) for p in paths]
    os.remove(paths[1])
    assert simulate_survey(config, str(tmp_path)) == paths
    assert [os.path.getmtime(p) for i, p in enumerate(paths) if i != 1] == mtimes[::2]
    assert pq.read_table(paths[1]).equals(simulate_shard(config, 1))
    other = r"other settings: epochs True \(now False\), seed 21 \(now 22\); choose"
    with pytest.raises(FileExistsError, match=other):  # which settings differ, not a dump
        simulate_survey(SurveyConfig(n_objects=500, seed=22, rows_per_shard=200), str(tmp_path))
    # shards without their manifest (copied in, or a manifest deleted) are not another run's
    # finished shards: a rerun would keep them and write the others with its own config
    os.remove(tmp_path / survey.MANIFEST)
    with pytest.raises(FileExistsError, match=r"not empty \(shard-00000\.parquet, "):
        simulate_survey(SurveyConfig(n_objects=500, seed=22, rows_per_shard=200), str(tmp_path))
    assert pq.read_table(paths[0]).equals(simulate_shard(config, 0), check_metadata=True)
    assert not (tmp_path / survey.MANIFEST).exists()


def test_cutouts_read_back_through_ray_data(ray_session, tmp_path):
    import ray

    config = SurveyConfig(n_objects=40, seed=5, cutouts=True, cutout_size=16)
    simulate_survey(config, str(tmp_path))
    assert validate_dataset(str(tmp_path), require_labels=True, require_cutouts=True).rows == 40
    dataset = ray.data.read_parquet(str(tmp_path))
    batch = {
        "cutout": np.concatenate([b["cutout"] for b in dataset.iter_batches(batch_format="numpy")])
    }
    expected = simulate_shard(config, 0)["cutout"].combine_chunks().to_numpy_ndarray()
    assert batch["cutout"].shape == (40, 6, 16, 16)
    np.testing.assert_array_equal(batch["cutout"], expected)


class _DiskFullError(Exception):
    pass


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_shard_that_fails_midway_leaves_no_file_a_rerun_would_keep(
    where, tmp_path, request, monkeypatch
):
    """An error after the first batch (cutouts come in batches): nothing is left under the
    shard's name, locally or on an object store, so a rerun writes the shard again."""
    real = survey.iter_shard_batches

    def fail_after_one_batch(config, index):
        yield next(real(config, index))
        raise _DiskFullError

    monkeypatch.setattr(survey, "iter_shard_batches", fail_after_one_batch)
    out = str(tmp_path) if where == "local" else f"{request.getfixturevalue('s3_root')}/midway"
    config = SurveyConfig(n_objects=3000, seed=1, cutouts=True, cutout_size=8)
    with pytest.raises(_DiskFullError):
        survey.write_shard(config, 0, out)
    assert not io.is_file(io.join(out, survey.shard_name(0)))
    assert not list(tmp_path.iterdir())  # no temporary file either


def test_simulated_shards_pass_contract_validation(tmp_path):
    for field in ("deep", "wide"):
        config = SurveyConfig(n_objects=300, seed=6, field=field, rows_per_shard=150, epochs=True)
        for i in range(config.n_shards):
            pq.write_table(simulate_shard(config, i), tmp_path / f"{field}-{i}.parquet")
    report = validate_dataset(str(tmp_path), require_labels=True)
    assert report.files == 4 and report.rows == 600
    assert report.problems.flagged_rows == 0


def test_cli_writes_the_requested_rows(ray_session, tmp_path, capsys):
    cli = _load_cli()
    out = tmp_path / "sim"
    code = cli.main(
        [
            "--n-objects",
            "300",
            "--seed",
            "4",
            "--output",
            str(out),
            "--field",
            "deep",
            "--spec-selection",
            "--rows-per-shard",
            "150",
        ]
    )
    assert code == 0
    assert "300 rows" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.num_rows == 300
    assert set(table["field"].to_pylist()) == {"deep"}
    bad = ["--n-objects", "10", "--seed", "1", "--output", str(out), "--depth", "y20"]
    assert run_job(lambda: cli.main(bad)) == 2  # one "error:" line, as argparse's
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ": error: " in err and "y20" in err


def test_cli_help_lists_every_option(capsys):
    cli = _load_cli()
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--n-objects",
        "--seed",
        "--output",
        "--depth",
        "--field",
        "--cutouts",
        "--cutout-size",
        "--epochs",
        "--max-epochs-per-band",
        "--spec-selection",
        "--rows-per-shard",
        "--mag-limit",
        "--area-deg2",
    ):
        assert flag in text


def test_a_cutout_store_in_the_shards_directory_is_refused(tmp_path):
    """Its files are named like the object shards: they would be overwritten, and the
    directory would be marked as a store that object listings skip."""
    config = SurveyConfig(n_objects=50, seed=1, cutouts=True, cutout_size=8, cutout_layout="shards")
    out = tmp_path / "sim"
    for store in (out, f"{out}/"):
        with pytest.raises(ValueError, match="another directory"):
            simulate_survey(config, str(out), str(store))
    assert not out.exists()


def test_cutout_options_without_cutouts_to_lay_out_are_refused(tmp_path):
    """--cutout-output or --cutout-layout fits without --cutouts ended with no cutouts, no
    store and no word."""
    with pytest.raises(ValueError, match="cutout_layout 'fits' needs cutouts"):
        SurveyConfig(n_objects=50, seed=1, cutout_layout="fits")
    for config in (
        SurveyConfig(n_objects=50, seed=1),
        SurveyConfig(n_objects=50, seed=1, cutouts=True, cutout_size=8),  # in the object shards
    ):
        with pytest.raises(ValueError, match="a cutout store is written only with cutouts in"):
            simulate_survey(config, str(tmp_path / "sim"), str(tmp_path / "store"))
    assert not (tmp_path / "sim").exists() and not (tmp_path / "store").exists()


def test_a_cutout_store_of_another_simulation_is_refused(ray_session, tmp_path):
    """Two simulations given one --cutout-output: the second overwrote the first's cutouts
    without a word, and they joined the first's objects (same objectIds) as wrong galaxies."""
    config = SurveyConfig(n_objects=60, seed=1, cutouts=True, cutout_size=8, cutout_layout="shards")
    store = tmp_path / "cutouts"
    simulate_survey(config, str(tmp_path / "a"), str(store))
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    simulate_survey(config, str(tmp_path / "a2"), str(store))  # the same simulation: kept
    other = dataclasses.replace(config, seed=2)
    with pytest.raises(FileExistsError, match=r"cutouts: a cutout store of another simulation"):
        simulate_survey(other, str(tmp_path / "b"), str(store))
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before
    assert not (tmp_path / "b").exists()  # refused before anything was written
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        simulate_survey(other, str(tmp_path / "b"), str(tmp_path / "full"))
