"""n(z) of a whole HATS PDF catalog (raypz.metrics.catalog_nz, jobs/nz.py) against a direct
numpy stacking of every decoded PDF."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raypz import compact
from raypz import flags as fl
from raypz.catalog import (
    PixelHistogram,
    finalize_catalog,
    plan_partitions,
    split_by_partition,
    with_healpix29,
    write_partition,
)
from raypz.metrics import bin_index, nz_stacks
from raypz.metrics.catalog_nz import NZConfig, catalog_nz, partition_sums
from raypz.metrics.nz_file import read_nz, write_nz
from raypz.pdf import SUMMARY_COLUMNS, ZGrid, summarize
from raypz.predictions import Z_GRID_KEY, read_predictions

REPO = Path(__file__).resolve().parents[2]
GRID = ZGrid(0.0, 3.0, 151)
EDGES = (0.1, 0.4, 0.8, 1.2, 1.6, 2.0, 2.6, 2.9)
"""Main peaks lie in [0.05, 2.3): rows below 0.1 fall outside, the last bin stays empty."""
N_ROWS = 2400
N_NO_PDF = 30
FLAGGED_WITH_PDF = 0  # row flagged NO_PDF that still carries a PDF: the flag wins
NULL_UNFLAGGED = 1  # row with a null pdf and no flag: left out as well


def _pdf_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two-peaked PDFs (N, G) float32: a main peak in z in [0.05, 2.3) and a weaker one."""
    z = rng.uniform(0.05, 2.3, n)
    other = rng.uniform(0.05, 2.9, n)
    pdf = np.exp(-0.5 * ((GRID.values - z[:, None]) / (0.04 * (1 + z[:, None]))) ** 2)
    pdf += 0.3 * np.exp(-0.5 * ((GRID.values - other[:, None]) / 0.1) ** 2)
    return pdf.astype(np.float32)


def _catalog_rows(seed: int) -> pa.Table:
    """Catalog rows as inference writes them: summaries, flags, compact pdf + pdf_start.

    The first rows carry special cases: a NO_PDF row that kept a PDF, an unflagged row with a
    null PDF; then N_NO_PDF rows without a PDF (null summaries), as inference leaves them.
    """
    rng = np.random.default_rng(seed)
    pdf = _pdf_rows(rng, N_ROWS)
    no_pdf = np.zeros(N_ROWS, bool)
    no_pdf[[FLAGGED_WITH_PDF, *range(2, 2 + N_NO_PDF)]] = True
    pdf[2 : 2 + N_NO_PDF] = 0.0
    pdf[NULL_UNFLAGGED] = 0.0
    stats = summarize(pdf, GRID)
    stats["z_mode"][NULL_UNFLAGGED] = stats["z_median"][NULL_UNFLAGGED] = 0.5
    start, values = compact.encode(pdf)
    null = np.zeros(N_ROWS, bool)
    null[2 : 2 + N_NO_PDF] = True
    cols: dict[str, pa.Array] = {
        "objectId": pa.array(np.arange(N_ROWS, dtype=np.int64) + 1000),
        "coord_ra": pa.array(rng.uniform(20.0, 23.0, N_ROWS)),
        "coord_dec": pa.array(rng.uniform(-1.5, 1.5, N_ROWS)),
    }
    for name in SUMMARY_COLUMNS:
        cols[name] = pa.array(stats[name].astype(np.float32), mask=null)
    cols["flags"] = pa.array(np.where(no_pdf, fl.NO_PDF, 0).astype(np.int32))
    cols["pdf_start"] = pa.array(start, pa.uint16())
    cols["pdf"] = values
    return pa.table(cols)


def write_pdf_catalog(rows: pa.Table, root: str, max_rows: int = 300) -> str:
    """``rows`` as a HATS PDF catalog at ``root`` (raypz.catalog's writer, in-process)."""
    rows = with_healpix29(rows, "coord_ra", "coord_dec")
    histogram = PixelHistogram.from_healpix29(rows["_healpix_29"].to_numpy(), order=10)
    plan = plan_partitions(histogram, max_rows_per_partition=max_rows)
    metadata = {Z_GRID_KEY.decode(): json.dumps(GRID.to_dict())}
    for norder, npix, piece in split_by_partition(rows, plan):
        write_partition(root, norder, npix, piece, metadata)
    finalize_catalog(root, "photoz_nz_test", "coord_ra", "coord_dec", plan=plan)
    return root


@pytest.fixture(scope="module")
def pdf_catalog(tmp_path_factory) -> str:
    return write_pdf_catalog(_catalog_rows(7), str(tmp_path_factory.mktemp("nz") / "photoz"))


def direct_stacking(root: str, column: str, edges=EDGES) -> tuple[np.ndarray, np.ndarray]:
    """Every PDF decoded in this process, binned and averaged: (B, G) stacks, (B,) counts."""
    pred = read_predictions(root, columns=[column, "flags"])
    has = ((pred.table["flags"].to_numpy() & fl.NO_PDF) == 0) & pred.pdf.any(axis=1)
    z = pred.table[column].to_numpy(zero_copy_only=False)
    idx = np.where(has, bin_index(z, edges), -1)
    n_bins = len(edges) - 1
    stacks = np.zeros((n_bins, GRID.n))
    for b in range(n_bins):
        if (idx == b).any():
            stacks[b] = pred.pdf[idx == b].astype(np.float64).mean(axis=0)
    return stacks, np.bincount(idx[idx >= 0], minlength=n_bins)


@pytest.mark.parametrize(("point", "scheduler"), [("mode", "threads"), ("median", "synchronous")])
def test_stacks_equal_a_direct_numpy_stacking(pdf_catalog, point, scheduler):
    config = NZConfig(edges=EDGES, point_estimate=point, scheduler=scheduler, split_every=3)
    result = catalog_nz(pdf_catalog, config)
    expected, counts = direct_stacking(pdf_catalog, f"z_{point}")
    assert result.partitions > 3  # a real tree of merges (split_every=3)
    np.testing.assert_array_equal(result.totals.counts, counts)
    np.testing.assert_allclose(result.stack, expected, rtol=0, atol=1e-6)
    assert result.grid == GRID
    # the same as raypz.metrics.nz's own stacking of the rows that have a PDF
    pred = read_predictions(pdf_catalog, columns=[f"z_{point}", "flags"])
    has = ((pred.table["flags"].to_numpy() & fl.NO_PDF) == 0) & pred.pdf.any(axis=1)
    z = pred.table[f"z_{point}"].to_numpy(zero_copy_only=False)[has]
    st = nz_stacks(pred.pdf[has], GRID, z, z, EDGES)
    np.testing.assert_allclose(result.stack, st.stack, rtol=0, atol=1e-6)


def test_float_list_pdfs_count_once_whatever_their_stored_mass():
    """A catalog from elsewhere may store float-list PDFs that do not integrate to 1: each
    row is normalised before it is summed, as in raypz.metrics.nz."""
    pdf = np.zeros((2, GRID.n))
    pdf[0, 40] = pdf[1, 60] = 1.0 / GRID.dz
    frame = pd.DataFrame({"z_mode": [0.4, 0.6], "flags": [0, 0], "pdf": list(pdf)})
    heavy = frame.assign(pdf=[pdf[0], 9.0 * pdf[1]])
    sums = partition_sums(frame, "z_mode", (0.0, 1.0), GRID).sums
    np.testing.assert_allclose(partition_sums(heavy, "z_mode", (0.0, 1.0), GRID).sums, sums)
    np.testing.assert_allclose(sums[0], pdf.sum(axis=0))


def test_rows_without_a_pdf_are_left_out_and_counted(pdf_catalog):
    totals = catalog_nz(pdf_catalog, NZConfig(edges=EDGES)).totals
    # N_NO_PDF null rows, one flagged row that kept its PDF, one unflagged null row
    assert totals.no_pdf == N_NO_PDF + 2
    assert totals.rows == N_ROWS
    assert totals.counts.sum() + totals.no_pdf + totals.outside == N_ROWS
    assert totals.outside > 0  # z_mode below 0.1
    # had the flagged row been stacked, its bin would count one more
    rows = _catalog_rows(7)
    z_flagged = rows["z_mode"][FLAGGED_WITH_PDF].as_py()
    b = int(bin_index(np.array([z_flagged]), EDGES)[0])
    assert b >= 0
    assert counts_ignoring_flags(pdf_catalog)[b] == totals.counts[b] + 1


def counts_ignoring_flags(root: str) -> np.ndarray:
    """Rows per bin of every row with a decodable PDF, whatever its flags."""
    pred = read_predictions(root, columns=["z_mode"])
    z = pred.table["z_mode"].to_numpy(zero_copy_only=False)
    idx = np.where(pred.pdf.any(axis=1), bin_index(z, EDGES), -1)
    return np.bincount(idx[idx >= 0], minlength=len(EDGES) - 1)


def test_empty_bins_have_zero_count_and_no_curve(pdf_catalog):
    edges = (*EDGES, 3.0)  # nothing peaks in [2.6, 2.9) or [2.9, 3.0)
    result = catalog_nz(pdf_catalog, NZConfig(edges=edges))
    assert result.totals.counts[-2:].tolist() == [0, 0]
    assert not result.stack[-2:].any()
    trapezoid = np.full(GRID.n, GRID.dz)
    trapezoid[[0, -1]] /= 2
    np.testing.assert_allclose(result.stack[:-2] @ trapezoid, 1.0, atol=1e-9)


def test_bad_settings_are_refused(pdf_catalog):
    for edges in [(0.5,), (0.0, 1.0, 1.0), (0.0, float("nan"))]:
        with pytest.raises(ValueError, match="edges"):
            NZConfig(edges=edges)
    with pytest.raises(ValueError, match="split_every"):
        NZConfig(split_every=1)
    with pytest.raises(ValueError, match=r"point_estimate must be one of .*'nope'"):
        NZConfig(point_estimate="nope")  # when made, before any catalog is read
    with pytest.raises(ValueError, match="not a HATS catalog"):  # e.g. the object table
        catalog_nz(f"{pdf_catalog}/dataset")
    with pytest.raises(ValueError, match="a file; give the root directory"):
        catalog_nz(f"{pdf_catalog}/properties")


def test_an_unfinished_catalog_is_named_as_such(pdf_catalog, tmp_path):
    """It was called "not a HATS catalog ... give the catalog root", which it was."""
    import shutil

    copy = tmp_path / "photoz"
    shutil.copytree(pdf_catalog, copy)
    for name in ("properties", "hats.properties"):
        (copy / name).unlink()
    (copy / "dataset" / "_common_metadata").unlink()  # finalize had not written it yet
    with pytest.raises(ValueError, match="unfinished inference run"):
        catalog_nz(str(copy))


def test_a_sample_in_one_corner_reads_only_the_partitions_beside_it(pdf_catalog, monkeypatch):
    """An evaluation of a spec-z sample read every partition of the catalog to find its rows;
    partitions that neither hold nor border a sample position are skipped now, with the same
    rows kept and the skipped rows counted (from the footers)."""
    import pyarrow.parquet as pq

    from raypz import io

    whole = read_predictions(pdf_catalog)
    ra, dec = (whole.table[c].to_numpy() for c in ("coord_ra", "coord_dec"))
    corner = np.flatnonzero((ra < 20.5) & (dec < -1.0))
    ids = whole.object_id[corner]
    read, real = [], pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda f, *a, **k: read.append(f) or real(f, *a, **k))
    shifted = (ra[corner] + 0.9 / 3600, dec[corner])  # a spec-z position, 0.9 arcsec off
    near = read_predictions(pdf_catalog, only_ids=ids, near=shifted)
    files = io.list_parquet_files(pdf_catalog)
    assert 0 < len(read) < len(files) / 3, (len(read), len(files))
    monkeypatch.undo()
    every = read_predictions(pdf_catalog, only_ids=ids)
    np.testing.assert_array_equal(near.object_id, every.object_id)
    np.testing.assert_array_equal(near.pdf, every.pdf)
    assert near.n_not_kept == every.n_not_kept == N_ROWS - ids.size
    nan = (np.append(shifted[0], np.nan), np.append(shifted[1], 0.0))  # no partition to tell
    assert read_predictions(pdf_catalog, only_ids=ids, near=nan).n_not_kept == N_ROWS - ids.size


def test_ray_scheduler_gives_the_same_stacks(ray_session, pdf_catalog):
    config = NZConfig(edges=EDGES, scheduler="ray")
    on_ray = catalog_nz(pdf_catalog, config)
    local = catalog_nz(pdf_catalog, NZConfig(edges=EDGES))
    np.testing.assert_array_equal(on_ray.totals.counts, local.totals.counts)
    np.testing.assert_allclose(on_ray.stack, local.stack, rtol=0, atol=1e-12)


def _job():
    spec = importlib.util.spec_from_file_location("job_nz", REPO / "jobs" / "nz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_job_writes_parquet_and_png(pdf_catalog, tmp_path, capsys):
    out = tmp_path / "nz"
    argv = ["--catalog", pdf_catalog, "--output", str(out), "--bins", *map(str, EDGES)]
    assert _job().main(argv) == 0
    grid, table, run = read_nz(str(out / "nz.parquet"))
    expected, counts = direct_stacking(pdf_catalog, "z_mode")
    assert grid == GRID
    assert table.column_names == ["bin", "z_lo", "z_hi", "count", "mean_z", "nz"]
    assert table["z_lo"].to_pylist() == list(EDGES[:-1])
    assert table["count"].to_pylist() == counts.tolist()
    nz = np.array(table["nz"].to_pylist())
    np.testing.assert_allclose(nz, expected, rtol=0, atol=1e-6)
    assert np.isnan(table["mean_z"][len(EDGES) - 2].as_py())  # the empty last bin
    assert (run["rows"], run["no_pdf"], run["point_estimate"]) == (N_ROWS, N_NO_PDF + 2, "mode")
    assert (out / "nz.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "n(z) done:" in printed and "no PDF (left out)" in printed and "empty" in printed


def test_job_runs_from_the_command_line_on_a_process_pool(pdf_catalog, tmp_path):
    out = tmp_path / "nz"
    cmd = [sys.executable, str(REPO / "jobs" / "nz.py"), "--catalog", pdf_catalog]
    cmd += ["--output", str(out), "--scheduler", "processes", "--workers", "2"]
    cmd += ["--point-estimate", "median", "--bins", *map(str, EDGES)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _, table, _ = read_nz(str(out / "nz.parquet"))
    expected, _ = direct_stacking(pdf_catalog, "z_median")
    np.testing.assert_allclose(np.array(table["nz"].to_pylist()), expected, rtol=0, atol=1e-6)
    assert "n(z) done:" in done.stdout


def test_job_refuses_bad_bins(pdf_catalog, tmp_path):
    with pytest.raises(SystemExit, match="edges"):
        _job().main(["--catalog", pdf_catalog, "--output", str(tmp_path), "--bins", "1", "0"])


@pytest.mark.parametrize(
    ("flags", "rule"),
    [
        (["--num-cpus", "1"], "the threads scheduler runs no Ray"),
        (["--scheduler", "processes", "--verbose"], "the processes scheduler runs no Ray"),
        (["--scheduler", "ray", "--workers", "2"], "the ray scheduler has none"),
        (["--scheduler", "synchronous", "--workers", "2"], "the synchronous scheduler has none"),
    ],
)
def test_job_refuses_flags_its_scheduler_would_ignore(pdf_catalog, tmp_path, flags, rule):
    """--num-cpus did not limit the default thread pool, nor --workers Ray's tasks."""
    with pytest.raises(SystemExit, match=rule):
        _job().main(["--catalog", pdf_catalog, "--output", str(tmp_path / "nz"), *flags])
    assert not (tmp_path / "nz").exists()


def test_catalog_and_output_on_s3(s3_root, pdf_catalog):
    root = write_pdf_catalog(_catalog_rows(7), f"{s3_root}/nz/photoz")
    result = catalog_nz(root, NZConfig(edges=EDGES))
    write_nz(result, f"{s3_root}/nz/out")
    _, table, run = read_nz(f"{s3_root}/nz/out/nz.parquet")
    expected, counts = direct_stacking(pdf_catalog, "z_mode")
    assert table["count"].to_pylist() == counts.tolist() and run["catalog"] == root
    np.testing.assert_allclose(np.array(table["nz"].to_pylist()), expected, rtol=0, atol=1e-6)
