"""A real interruption: jobs/infer_lsst.py killed (SIGKILL to its process group) mid-run, rerun.

The job runs with its embedded Ray over 4 input files of 2000 rows, with a slow model (3
members, 2048-wide layers, ~0.5 s per 1000 rows on this 2-core machine), one predictor actor
(a second one would only add its start-up to each run) and batches of 250 rows, so that its
predict stage lasts several seconds and stages each file in 8 fragments.
As soon as one input file is fully staged, the driver and the whole embedded Ray are SIGKILLed.
The test asserts that the kill hit the run in its predict stage: the job was alive, some input
files finished and others not, no summary written. The same command then runs again: it must
skip exactly the files the killed run finished, predict only the others' rows, and write a
catalog with every input objectId once, whose PDFs, summaries and flags are those the predictor
gives in-process (what an uninterrupted run stores). About a minute on 2 idle cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from ray_nodes import (
    assert_catalog_matches_predictor,
    assert_rerun_finished_the_rest,
    kill_job_when,
    replicate_survey,
    rerun_job,
    staged_so_far,
)

from raypz import io
from raypz.infer import staging

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to find pids"),
]

N_FILES = 4  # of 2000 rows: each file is a task of the first pass, in a worker of its own
JOB_S = 180.0  # either run taking longer is stuck


@pytest.fixture(scope="module")
def slow_model(artifact_fitter, small_survey, tmp_path_factory) -> str:
    """An artifact of 3 members with 2048-wide layers: a predict stage of seconds, not ms."""
    table = pads.dataset(small_survey, format="parquet").to_table()
    path = str(tmp_path_factory.mktemp("slow_model"))
    return artifact_fitter(path, table, members=3, epochs=1, hidden=(2048, 2048))


def _job(survey: Path, model: str, out: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "jobs" / "infer_lsst.py"),
        "--input", str(survey),
        "--model", model,
        "--output", str(out),
        "--validate", "schema",
        "--batch-size", "250",
        "--concurrency", "1",
    ]  # fmt: skip


def test_killed_job_rerun_is_exactly_once(tmp_path, small_survey, slow_model):
    survey = tmp_path / "survey"
    rows = replicate_survey(small_survey, survey, N_FILES, shards_per_file=2)
    files = io.list_parquet_files(str(survey))  # the job's input file numbering
    expected = [pq.read_metadata(f).num_rows for f in files]
    out = tmp_path / "catalog"
    root = Path(staging.staging_root(str(out)))
    observed: dict[str, object] = {"rows": rows, "files": N_FILES}
    job = _job(survey, slow_model, out)
    seen: dict[Path, tuple[int, int]] = {}

    def one_file_staged() -> bool:
        return staged_so_far(root, expected, seen)[0] > 0

    observed["s_to_kill"] = kill_job_when(
        job, REPO, tmp_path / "killed.log", one_file_staged, JOB_S
    )

    # What the kill left: the predict stage under way, some files finished, others not.
    assert not (out / "raypz_run_summary.json").exists()
    done, partial = staging.finished_sources(str(root), expected, "objectId")
    observed["finished_at_kill"] = sorted(done)
    observed["fragments_of_unfinished_files"] = len(partial)
    assert 1 <= len(done) < N_FILES, f"not killed mid-predict: {observed}"

    observed["rerun_s"] = rerun_job(job, REPO, tmp_path / "rerun.log", JOB_S)
    assert_rerun_finished_the_rest(out, expected, done, observed)
    assert assert_catalog_matches_predictor(out, survey, slow_model) == rows
