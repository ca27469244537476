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

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from ray_nodes import (
    assert_catalog_matches_predictor,
    log_tail,
    replicate_survey,
    session_pids,
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


def _finished_so_far(root: Path, expected: list[int], seen: dict[Path, tuple[int, int]]) -> int:
    """Input files whose rows are all staged, from the fragments' names and footers (cheap:
    each fragment is read once, into ``seen``; they are renamed into place complete)."""
    for fragment in root.rglob("src*.parquet"):
        if fragment not in seen:
            with contextlib.suppress(OSError):  # deleted while listed
                source = int(fragment.name[3:].split("-")[0])  # src000012-<uuid>
                seen[fragment] = (source, pq.read_metadata(fragment).num_rows)
    staged = [0] * len(expected)
    for source, n in seen.values():
        staged[source] += n
    return sum(s == n for s, n in zip(staged, expected, strict=True))


def test_killed_job_rerun_is_exactly_once(tmp_path, small_survey, slow_model):
    survey = tmp_path / "survey"
    rows = replicate_survey(small_survey, survey, N_FILES, shards_per_file=2)
    files = io.list_parquet_files(str(survey))  # the job's input file numbering
    expected = [pq.read_metadata(f).num_rows for f in files]
    out = tmp_path / "catalog"
    root = staging.staging_root(str(out))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # an embedded Ray
    env["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    observed: dict[str, object] = {"rows": rows, "files": N_FILES}

    log1 = tmp_path / "killed.log"
    t0 = time.monotonic()
    with log1.open("w") as log:
        proc = subprocess.Popen(
            _job(survey, slow_model, out), env=env, cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        seen: dict[Path, tuple[int, int]] = {}
        while time.monotonic() - t0 < JOB_S and proc.poll() is None:
            if _finished_so_far(Path(root), expected, seen):
                break
            time.sleep(0.02)
        alive = proc.poll() is None
        if alive:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the whole embedded Ray
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    observed["s_to_kill"] = round(time.monotonic() - t0, 1)
    assert alive, f"the job was not running when it was to be killed:\n{log_tail(log1)}"
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while (left := session_pids(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes of the killed job still alive: {left}"

    # What the kill left: the predict stage under way, some files finished, others not.
    assert not (out / "raypz_run_summary.json").exists()
    done, partial = staging.finished_sources(root, expected, "objectId")
    observed["finished_at_kill"] = sorted(done)
    observed["fragments_of_unfinished_files"] = len(partial)
    assert 1 <= len(done) < N_FILES, f"not killed mid-predict: {observed}"

    log2 = tmp_path / "rerun.log"
    t1 = time.monotonic()
    with log2.open("w") as log:
        rerun = subprocess.run(
            _job(survey, slow_model, out), env=env, cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT, timeout=JOB_S,
        )  # fmt: skip
    observed["rerun_s"] = round(time.monotonic() - t1, 1)
    print("kill and rerun observed:", json.dumps(observed))
    assert rerun.returncode == 0, f"the rerun failed:\n{log_tail(log2)}"

    summary = json.loads((out / "raypz_run_summary.json").read_text())
    assert summary["rows_in"] == summary["rows_out"] == rows
    assert summary["sources"] == N_FILES
    assert summary["sources_skipped"] == len(done)  # finished files were not predicted again
    redone = sum(n for i, n in enumerate(expected) if i not in done)
    assert sum(n["rows"] for n in summary["rows_by_node"].values()) == redone
    assert sum(summary["rows_by_device"].values()) == redone
    assert not Path(root).exists()  # staging removed once the catalog is complete
    assert assert_catalog_matches_predictor(out, survey, slow_model) == rows
