"""A Ray worker node lost mid-job: every input objectId must still appear exactly once.

Two Ray nodes on this machine, each a ``ray start --block`` in its own process session with
its own ``--temp-dir``, free ports and a private auth token (as in ``tests/test_job_submit.py``;
``ray stop`` is never used, other Ray clusters of the same user may run here):

    head     --num-cpus 1   (the job's driver attaches to it: Ray prefers the head node)
    worker   --num-cpus 2   joins with ``--address``; SIGKILLed with all its descendants

``jobs/infer_lsst.py`` runs as a plain driver with ``RAY_ADDRESS`` set, so it joins the cluster.
Once a predictor actor on the worker node is executing a batch and fragments are staged, the
worker node (its ``ray start``, raylet, agents and every worker process) is SIGKILLed, as a
lost machine would be. Either the job then finishes on the head alone, or (if it stops making
progress or fails) the same command is run again, which must finish it through the restart
logic of :mod:`raypz.infer.staging`. Which of the two happened is printed (run with ``-s``).

Slow: ``pytest -m slow tests/infer/test_node_failure.py``. ``RAYPZ_NODE_FAIL_FILES`` sets the
number of 1000-row input files (default 30).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from ray_nodes import (
    cmdline,
    descendants,
    kill_node,
    log_tail,
    private_cluster,
    replicate_survey,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to find pids"),
]

STALL_S = 150.0  # no new file under OUTPUT and the driver alive this long: the job is stuck
RERUN_S = 360.0


def _busy_predictors(proc: subprocess.Popen) -> list[int]:
    """Predict-stage actors of that node executing a batch (titled ``...).submit``)."""
    return [
        pid
        for pid in descendants(proc.pid)
        if (cmd := cmdline(pid)).startswith("ray::")
        and "_PredictStage" in cmd
        and cmd.endswith(".submit")
    ]


@contextlib.contextmanager
def two_nodes(tmp: Path) -> Iterator[tuple[str, dict[str, str], subprocess.Popen]]:
    """A head (1 CPU) and a worker node (2 CPUs) on loopback; yields (GCS address, env, worker)."""
    with private_cluster(tmp, ["--num-cpus", "1"]) as cluster:
        worker = cluster.add_node(["--num-cpus", "2"])
        cluster.wait_cpus(3.0, timeout_s=120)
        yield cluster.address, cluster.env, worker


def _files_under(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def test_worker_node_killed_mid_job_every_object_once(small_survey, small_model, tmp_path):
    n_files = int(os.environ.get("RAYPZ_NODE_FAIL_FILES", "30"))
    survey = tmp_path / "survey"
    rows = replicate_survey(small_survey, survey, n_files)
    output = tmp_path / "catalog"
    job = [
        sys.executable, str(REPO / "jobs" / "infer_lsst.py"),
        "--input", str(survey),
        "--model", small_model,
        "--output", str(output),
        "--validate", "schema",
        "--batch-size", "200",
        "--max-rows-per-partition", "20000",
    ]  # fmt: skip
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    observed: dict[str, object] = {"rows": rows, "files": n_files}

    with two_nodes(tmp_path) as (address, env, worker):
        job_env = {**env, "RAY_ADDRESS": address}
        with log1.open("w") as out:
            driver = subprocess.Popen(
                job, env=job_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            # Wait for a predictor on the worker node to be busy with fragments already staged.
            t_start = time.monotonic()
            deadline = t_start + 300
            busy: list[int] = []
            while time.monotonic() < deadline and driver.poll() is None:
                staged = list((output / "_staging").rglob("src*.parquet"))
                busy = busy or _busy_predictors(worker)
                # Actors of 0.75 CPU: one fits the head (1 CPU), two the worker: two of the three
                # are on the worker node during the predict stage, whether or not titles are seen.
                if len(staged) >= 10:
                    break
                time.sleep(0.1)
            assert driver.poll() is None, f"the job ended before the kill:\n{log_tail(log1)}"
            observed["busy_predictor_seen_on_worker"] = bool(busy)
            observed["staged_at_kill"] = len(list((output / "_staging").rglob("src*.parquet")))
            observed["s_to_kill"] = round(time.monotonic() - t_start, 1)
            killed = kill_node(worker)
            t_kill = time.monotonic()
            observed["killed_pids"] = len(killed)

            # Let the job finish on the head alone, as long as it makes progress.
            seen, t_progress = _files_under(output), time.monotonic()
            while driver.poll() is None and time.monotonic() - t_progress < STALL_S:
                time.sleep(1)
                if (now := _files_under(output)) != seen:
                    seen, t_progress = now, time.monotonic()
            observed["run1_rc"] = driver.poll()
            observed["run1_s_after_kill"] = round(time.monotonic() - t_kill, 1)
        finally:
            if driver.poll() is None:  # stuck: kill the driver (its session is only itself)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=30)

        if observed["run1_rc"] != 0:
            # Not recovered by itself: the same command again must finish the job exactly once.
            t_rerun = time.monotonic()
            with log2.open("w") as out:
                rerun = subprocess.run(
                    job, env=job_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                    timeout=RERUN_S,
                )  # fmt: skip
            observed["rerun_rc"] = rerun.returncode
            observed["rerun_s"] = round(time.monotonic() - t_rerun, 1)

    print("node failure observed:", json.dumps(observed))
    print("run 1 log tail:\n", log_tail(log1, 3000))
    if log2.exists():
        print("rerun log tail:\n", log_tail(log2, 3000))
    final_rc = observed.get("rerun_rc", observed["run1_rc"])
    assert final_rc == 0, f"job failed: {observed}\n{log_tail(log1)}\n{log_tail(log2)}"

    summary = json.loads((output / "raypz_run_summary.json").read_text())
    assert summary["rows_in"] == summary["rows_out"] == rows
    ids = pads.dataset(output / "dataset", format="parquet").to_table(["objectId"])["objectId"]
    ids = ids.to_numpy()
    expected = pads.dataset(survey, format="parquet").to_table(["objectId"])["objectId"]
    expected = expected.to_numpy()
    assert len(ids) == len(np.unique(ids)) == rows
    np.testing.assert_array_equal(np.sort(ids), np.sort(expected))
