"""End to end: object shards -> Ray Data inference -> HATS catalog, read with pyarrow, lsdb, qp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lsdb
import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from raypz import io
from raypz.infer import SUMMARY_FILE, InferConfig, run_inference, staging
from raypz.infer import pipeline as pipeline_module
from raypz.predictions import decode_pdfs, read_predictions, to_qp_ensemble

CONFIG = InferConfig(max_rows_per_partition=800, batch_size=1024, keep_staging=True)


@pytest.fixture(scope="module")
def catalog(ray_session, small_survey, small_model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("photoz") / "catalog")
    summary = run_inference(small_survey, small_model, out, CONFIG)
    return out, summary


def _input_ids(small_survey: str) -> np.ndarray:
    return (
        pads.dataset(small_survey, format="parquet").to_table(["objectId"])["objectId"].to_numpy()
    )


def test_every_input_object_appears_exactly_once(catalog, small_survey):
    out, summary = catalog
    ids = pads.dataset(f"{out}/dataset", format="parquet").to_table(["objectId"])["objectId"]
    ids = ids.to_numpy()
    assert len(ids) == len(np.unique(ids))
    assert set(ids) == set(_input_ids(small_survey))
    assert summary.rows_in == summary.rows_out == len(ids) == 3000
    stored = json.loads(Path(out, SUMMARY_FILE).read_text())
    assert stored["rows_out"] == 3000 and stored["sources"] == 3
    stages = ["setup", "first_pass", "main_pass", "merge", "finalize"]
    assert list(stored["stage_seconds"]) == stages
    assert sum(stored["stage_seconds"].values()) <= stored["seconds"] + 0.05
    (node,) = stored["rows_by_node"].values()  # the test session's one local node
    assert node["rows"] == 3000 and stored["rows_by_device"] == {"cpu": 3000}


def test_hats_layout_and_metadata(catalog, small_model):
    out, summary = catalog
    props = dict(
        line.split("=", 1)
        for line in Path(out, "properties").read_text().splitlines()
        if "=" in line
    )
    assert props["dataproduct_type"].strip() == "object"
    assert int(props["hats_nrows"]) == 3000
    assert props["hats_col_ra"].strip() == "coord_ra"
    files = io.list_parquet_files(out)
    assert len(files) == summary.partitions > 1
    for f in files:
        table = pq.read_table(f)
        assert table.num_rows <= CONFIG.max_rows_per_partition
        assert table.column_names[0] == "_healpix_29"
        hp = table["_healpix_29"].to_numpy()
        assert np.all(np.diff(hp.astype(np.int64)) >= 0)
        meta = table.schema.metadata
        assert b"raypz.z_grid" in meta and b"raypz.model_hash" in meta
        assert json.loads(meta[b"raypz.run_config"])["max_rows_per_partition"] == 800
    assert Path(out, "dataset", "_metadata").exists()
    assert Path(out, "partition_info.csv").exists()


def test_lsdb_opens_it_and_cone_search_matches_pyarrow(catalog):
    out, _ = catalog
    # the HATS library's own strict check: properties, partition_info.csv, _metadata and the
    # partition files agree with each other
    from hats.io.validation import is_valid_catalog

    assert is_valid_catalog(out, strict=True, fail_fast=False)
    cat = lsdb.open_catalog(out)
    everything = cat.compute()
    assert len(everything) == 3000
    ra0, dec0 = float(everything["coord_ra"].median()), float(everything["coord_dec"].median())
    cone = cat.cone_search(ra=ra0, dec=dec0, radius_arcsec=1800).compute()
    ra, dec = np.radians(everything["coord_ra"]), np.radians(everything["coord_dec"])
    cos_d = np.sin(dec) * np.sin(np.radians(dec0)) + np.cos(dec) * np.cos(
        np.radians(dec0)
    ) * np.cos(ra - np.radians(ra0))
    inside = np.degrees(np.arccos(np.clip(cos_d, -1, 1))) * 3600 < 1800
    assert 0 < len(cone) == int(inside.sum())
    # an lsdb frame's PDFs decode from its pandas columns, as read_predictions decodes them
    pred = read_predictions(out, columns=["z_mode"])
    frame = everything.sort_values("objectId")
    pdf = decode_pdfs(frame["pdf"], frame["pdf_start"], pred.grid)
    np.testing.assert_array_equal(pdf, pred.pdf[np.argsort(pred.object_id)])
    with pytest.raises(ValueError, match=r"no column\(s\) \['z_mod'\]; it has \["):
        read_predictions(out, columns=["z_mod"])


def test_pdfs_load_into_qp(catalog):
    out, _ = catalog
    pred = read_predictions(out, columns=["z_median"])
    ens = to_qp_ensemble(pred)
    assert ens.npdf == len(pred.object_id) == 3000
    z_median = pred.table["z_median"].to_numpy()[:, None]  # (N, 1): one point per PDF
    np.testing.assert_allclose(ens.cdf(z_median).ravel(), 0.5, atol=0.01)


def _no_validation(monkeypatch, why: str) -> None:
    """Make reading every input row (``--validate full``) fail the test, saying ``why`` it
    should not happen."""

    def validate(*_args) -> None:
        raise AssertionError(why)

    monkeypatch.setattr(pipeline_module, "_validate", validate)


def test_rerun_of_a_finished_job_does_nothing(catalog, small_survey, small_model, monkeypatch):
    out, summary = catalog
    before = {p: p.stat().st_mtime_ns for p in Path(out, "dataset").rglob("*.parquet")}
    _no_validation(monkeypatch, "a finished catalog's input was validated again (every row)")
    again = run_inference(small_survey, small_model, out, CONFIG)
    # the catalog's counts; this run's own figures say it predicted and merged nothing
    assert (again.rows_in, again.rows_out, again.flagged) == (
        summary.rows_in,
        summary.rows_out,
        summary.flagged,
    )
    assert again.sources_skipped == again.sources == summary.sources
    assert (again.partitions_merged, again.rows_by_node, again.rows_by_device) == (0, {}, {})
    assert json.loads(Path(out, SUMMARY_FILE).read_text()) == summary.to_dict()  # kept
    after = {p: p.stat().st_mtime_ns for p in Path(out, "dataset").rglob("*.parquet")}
    assert after == before


def test_interrupted_job_finishes_without_redoing_finished_work(
    catalog, small_survey, small_model, tmp_path
):
    """Copy the finished catalog, then undo what a kill mid-run would not have done yet."""
    out, _ = catalog
    part = tmp_path / "catalog"
    shutil.copytree(out, part)
    root = staging.staging_root(str(part))
    (part / SUMMARY_FILE).unlink()
    (part / "properties").unlink()
    frags = sorted(Path(root).rglob("src000001-*.parquet"))
    assert frags
    for f in frags:  # input file 1 was still being predicted: only it is redone
        f.unlink()
    with pytest.raises(ValueError, match="unfinished inference run"):
        read_predictions(str(part))  # nor is an unfinished catalog read as a whole one
    summary = run_inference(small_survey, small_model, str(part), CONFIG)
    assert (summary.sources_skipped, summary.rows_out) == (2, 3000)
    assert summary.rows_by_device == {"cpu": 1000}  # this run predicted one file's rows only

    (part / SUMMARY_FILE).unlink()
    victim = sorted((part / "dataset").rglob("Npix=*.parquet"))[0]
    victim.unlink()  # killed during the merge: only this partition is redone, nothing predicted
    summary = run_inference(small_survey, small_model, str(part), CONFIG)
    assert (summary.sources_skipped, summary.partitions_merged) == (3, 1)
    assert summary.rows_by_node == {} and summary.actor_pool == {}  # nothing predicted

    original, resumed = read_predictions(out), read_predictions(str(part))
    order_a, order_b = np.argsort(original.object_id), np.argsort(resumed.object_id)
    np.testing.assert_array_equal(original.object_id[order_a], resumed.object_id[order_b])
    np.testing.assert_allclose(original.pdf[order_a], resumed.pdf[order_b], atol=1e-6)


def test_a_rerun_with_other_partitioning_is_refused_and_the_original_one_finishes(
    catalog, small_survey, small_model, tmp_path, monkeypatch
):
    """Fragments are staged by the plan's partitions: a rerun of an interrupted job with
    another --max-rows-per-partition would merge fragments of two plans (overlapping
    partitions, for good), and over a finished catalog it would be skipped silently."""
    from dataclasses import replace

    out, _ = catalog
    with pytest.raises(FileExistsError, match="other partitioning settings"):
        run_inference(small_survey, small_model, out, replace(CONFIG, max_rows_per_partition=400))
    part = tmp_path / "catalog"
    shutil.copytree(out, part)
    (part / SUMMARY_FILE).unlink()
    (part / "properties").unlink()
    for f in Path(staging.staging_root(str(part))).rglob("src000002-*.parquet"):
        f.unlink()
    before = sorted(p.relative_to(part) for p in part.rglob("*"))
    with monkeypatch.context() as patch:
        _no_validation(patch, "the input was validated before the output was refused")
        for other in (
            replace(CONFIG, max_rows_per_partition=400),
            replace(CONFIG, histogram_order=8),
        ):
            with pytest.raises(FileExistsError, match="other partitioning settings"):
                run_inference(small_survey, small_model, str(part), other)
    assert sorted(p.relative_to(part) for p in part.rglob("*")) == before
    summary = run_inference(small_survey, small_model, str(part), CONFIG)
    assert (summary.sources_skipped, summary.rows_out) == (2, 3000)


def test_a_finished_catalog_missing_a_partition_file_is_not_called_complete(
    catalog, small_survey, small_model, tmp_path
):
    out, _ = catalog
    damaged = tmp_path / "catalog"
    shutil.copytree(out, damaged, ignore=shutil.ignore_patterns(staging.STAGING_DIR))
    victim = sorted((damaged / "dataset").rglob("Npix=*.parquet"))[-1]
    victim.unlink()
    lost = r"lacks 1 of the partition files its partition_info\.csv lists \(e\.g\. .*Npix="
    with pytest.raises(FileNotFoundError, match=lost + ".*infer into a new output"):
        run_inference(small_survey, small_model, str(damaged), CONFIG)


def test_an_output_holding_other_files_is_refused_before_any_work(
    small_survey, small_model, tmp_path, monkeypatch
):
    """A foreign catalog there was overwritten partition by partition (or found only after
    every row was predicted, or after every input row was read)."""
    _no_validation(monkeypatch, "the input was validated before the output was refused")
    foreign = tmp_path / "elsewhere"
    (foreign / "dataset" / "Norder=0" / "Dir=0").mkdir(parents=True)
    (foreign / "dataset" / "Norder=0" / "Dir=0" / "Npix=8.parquet").write_bytes(b"theirs")
    (foreign / "properties").write_text("obs_collection=survey_objects\n")
    with pytest.raises(FileExistsError, match=r"not empty \(dataset, properties\)"):
        run_inference(small_survey, small_model, str(foreign), CONFIG)
    assert (foreign / "dataset" / "Norder=0" / "Dir=0" / "Npix=8.parquet").read_bytes() == b"theirs"
    assert sorted(p.name for p in foreign.iterdir()) == ["dataset", "properties"]


def test_s3_input_and_output_with_no_credentials_in_outputs(
    ray_session, small_survey, small_model, s3_root, tmp_path
):
    import os

    fs, _ = io.resolve(s3_root)
    src = io.join(s3_root, "infer-test", "object")
    for f in io.list_parquet_files(small_survey):
        io.write_bytes_atomic(io.join(src, Path(f).name), Path(f).read_bytes())
    out = io.join(s3_root, "infer-test", "photoz")
    summary = run_inference(src, small_model, out, InferConfig(max_rows_per_partition=2000))
    assert summary.rows_out == 3000
    pred = read_predictions(out)
    assert len(np.unique(pred.object_id)) == 3000
    secrets = [os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_ACCESS_KEY_ID"]]
    _, inner = io.resolve(out)
    for info in fs.get_file_info(__import__("pyarrow.fs").fs.FileSelector(inner, recursive=True)):
        if info.is_file:
            blob = io.read_bytes(f"s3://{info.path}")
            assert not any(s.encode() in blob for s in secrets), info.path


def test_fits_object_tables_give_the_catalog_of_their_parquet_twins(
    catalog, small_survey, small_model, tmp_path
):
    """The same shards as FITS binary tables: the same catalog, FITS files as the sources."""
    from raypz.fits import write_fits_table

    for shard in io.list_parquet_files(small_survey):
        table = pq.read_table(shard)
        write_fits_table(table, str(tmp_path / "fits" / Path(shard).with_suffix(".fits").name))
    out = str(tmp_path / "catalog")
    config = InferConfig(max_rows_per_partition=800, batch_size=1024, validate="full")
    summary = run_inference(str(tmp_path / "fits"), small_model, out, config)
    assert (summary.sources, summary.rows_in, summary.rows_out) == (3, 3000, 3000)
    parquet, fits = read_predictions(catalog[0]), read_predictions(out)
    order_a, order_b = np.argsort(parquet.object_id), np.argsort(fits.object_id)
    np.testing.assert_array_equal(parquet.object_id[order_a], fits.object_id[order_b])
    np.testing.assert_allclose(parquet.pdf[order_a], fits.pdf[order_b], atol=1e-6)


def test_a_run_into_a_catalog_being_written_is_refused(small_survey, small_model, tmp_path):
    """Two runs into one output (a resubmit after Ctrl-C on `ray job submit`, which does not
    stop the job) mixed two models' rows in one catalog, labelled with one of them. The
    second is refused before it writes, naming the holder of the output's lease."""
    from raypz.lease import OutputLease

    out = tmp_path / "catalog"
    with OutputLease(str(out), "raypz inference"):
        with pytest.raises(
            FileExistsError,
            match=r"_lease\.json: this output is being written "
            r"by another run, raypz inference \(pid ",
        ):
            run_inference(small_survey, small_model, str(out), CONFIG)
        assert [p.name for p in out.iterdir()] == ["_lease.json"]
    summary = run_inference(small_survey, small_model, str(out), CONFIG)  # the lease ended
    assert summary.rows_out == 3000 and not (out / "_lease.json").exists()


def test_a_catalog_that_lost_a_partition_file_is_not_read_as_complete(catalog, tmp_path):
    """evaluate scored such a catalog on the rows left (3313 of 4000) with exit status 0;
    the only sign was a count of truth rows without prediction."""
    out, _ = catalog
    copy = tmp_path / "catalog"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "_staging")  # as a finished run leaves it (CONFIG keeps staging)
    lost = sorted((copy / "dataset").rglob("Npix=*.parquet"))[0]
    lost.unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"lacks 1 of the partition files its "
        r"partition_info\.csv lists \(e\.g\. .*Npix=",
    ):
        read_predictions(str(copy))
