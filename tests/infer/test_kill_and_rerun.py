"""A real interruption: jobs/infer_lsst.py killed (SIGKILL to its process group) mid-run, rerun.

Slow (three embedded-Ray runs over a simulated survey): run with ``pytest -m slow``;
``RAYPZ_KILL_TEST_ROWS`` sets the survey size (default 200,000). The rerun must finish without
predicting the input files the killed run had finished, and give the same rows and PDFs as an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from raypz import io
from raypz.infer import staging
from raypz.predictions import read_predictions
from raypz.sim import SurveyConfig
from raypz.sim.survey import write_shard

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _job(survey: Path, model: str, out: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "jobs" / "infer_lsst.py"),
        "--input", str(survey),
        "--model", model,
        "--output", str(out),
        "--validate", "schema",
        "--batch-size", "4096",
    ]  # fmt: skip


def test_killed_job_rerun_equals_uninterrupted_run(tmp_path, artifact_fitter):
    rows = int(os.environ.get("RAYPZ_KILL_TEST_ROWS", "200000"))
    survey = tmp_path / "survey"
    survey.mkdir()
    config = SurveyConfig(n_objects=rows, seed=21, rows_per_shard=max(1, rows // 8))
    for i in range(config.n_shards):
        write_shard(config, i, str(survey))
    import pyarrow.dataset as pads

    model = artifact_fitter(
        str(tmp_path / "model"), pads.dataset(survey, format="parquet").head(20_000)
    )
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}

    reference = tmp_path / "reference"
    subprocess.run(_job(survey, model, reference), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _job(survey, model, killed),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    files = io.list_parquet_files(str(survey))  # the job's input file numbering
    expected = [pq.read_metadata(f).num_rows for f in files]
    root = staging.staging_root(str(killed))
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if staging.finished_sources(root, expected, "objectId")[0]:  # one file fully staged
                break
        except OSError:  # a fragment renamed or deleted while listed
            pass
        time.sleep(0.2)
    assert proc.poll() is None, "the job finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the whole embedded Ray
    proc.wait()
    assert not (killed / "raypz_run_summary.json").exists()

    done = subprocess.run(_job(survey, model, killed), check=True, env=env, capture_output=True)
    summary = json.loads((killed / "raypz_run_summary.json").read_text())
    print(done.stdout.decode()[-2000:])
    assert summary["sources_skipped"] >= 1
    assert summary["rows_out"] == rows

    a, b = read_predictions(str(reference)), read_predictions(str(killed))
    ia, ib = np.argsort(a.object_id), np.argsort(b.object_id)
    assert len(np.unique(b.object_id)) == rows
    np.testing.assert_array_equal(a.object_id[ia], b.object_id[ib])
    np.testing.assert_allclose(a.pdf[ia], b.pdf[ib], atol=1e-6)
