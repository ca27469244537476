"""A node that joins mid-run gets predictor actors: the pool of ``jobs/infer_lsst.py`` grows.

A private head on loopback with 1 CPU holds one 0.75-CPU predictor actor (and 0.25 CPU for the
read tasks beside it), so the elastic pool starts with one actor. ``jobs/infer_lsst.py`` runs as
a plain driver with ``RAY_ADDRESS`` set and ``--max-actors 2``. Once the first pass is done (its
histogram saved, milliseconds before the pool is planned), a second node joins; the head has no
room for another actor, so the one Ray Data adds when its single actor is busy runs there. The
run summary must then count rows predicted on two nodes, and the catalog must hold every input
objectId once.

Timing on this 2-core machine, and what the sizes below are chosen for:

- Ray Data sees a new node at the next refresh of its autoscaling coordinator (every 20 s in
  Ray 2.60, sooner when its resource request changes), and a predictor actor takes ~15 s to
  start (torch, the model): the second actor may start ~35 s after the first one, so one actor
  alone must have work for well over that. The model has wide layers (~0.3-0.5 s per 1000
  rows; a small one predicts ~20000 rows/s), which makes the work long without making the
  merge slow;
- Ray Data hands actors whole blocks and makes blocks of at least 1 MiB (~7500 rows here): the
  input is 200000 rows (~27 blocks, 60-100 s for one actor), so that blocks are left when the
  second actor starts (with 120000 rows one actor once finished them all 34 s after the node
  joined, before the second one started);
- the second node has 2 logical CPUs: on a 2-CPU cluster Ray Data's budget for the actor pool
  (half the CPUs are reserved among its operators) can lack 0.75 CPU while reads run.

Nodes are ``ray start --block`` processes in their own sessions with their own ``--temp-dir``
(``tests/ray_nodes.py``); ``ray stop`` is never used.
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

import numpy as np
import pyarrow.dataset as pads
import pytest
from ray_nodes import log_tail, private_cluster, replicate_survey, walk_files

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="private Ray nodes"),
]

N_FILES = 200  # of 1000 rows
JOB_S = 240.0


@pytest.fixture(scope="module")
def slow_model(artifact_fitter, small_survey, tmp_path_factory) -> str:
    """An artifact of 3 members with 2048-wide layers (~0.4 s per 1000 rows on one thread)."""
    table = pads.dataset(small_survey, format="parquet").to_table()
    path = str(tmp_path_factory.mktemp("slow_model"))
    return artifact_fitter(path, table, members=3, epochs=1, hidden=(2048, 2048))


def _staged(output: Path) -> int:
    return len(walk_files(output / "_staging", "src*.parquet"))


def _wait_first_pass(driver: subprocess.Popen, output: Path, log: Path) -> float:
    """Seconds until the job saved its first-pass histogram (it must still be running then)."""
    histogram = output / "_staging" / "_histogram.parquet"
    t0 = time.monotonic()
    while time.monotonic() - t0 < JOB_S and driver.poll() is None and not histogram.exists():
        time.sleep(0.05)
    assert driver.poll() is None, f"the job ended before its first pass was seen:\n{log_tail(log)}"
    assert histogram.exists(), f"no first pass in {JOB_S} s:\n{log_tail(log)}"
    return time.monotonic() - t0


def test_pool_grows_onto_a_node_that_joins_mid_run(small_survey, slow_model, tmp_path):
    t_start = time.monotonic()
    survey = tmp_path / "survey"
    rows = replicate_survey(small_survey, survey, N_FILES)
    output = tmp_path / "catalog"
    job = [
        sys.executable, str(REPO / "jobs" / "infer_lsst.py"),
        "--input", str(survey),
        "--model", slow_model,
        "--output", str(output),
        "--validate", "schema",
        "--batch-size", "1000",
        "--max-rows-per-partition", "50000",
        "--max-actors", "2",
    ]  # fmt: skip
    log = tmp_path / "job.log"
    observed: dict[str, object] = {"rows": rows}

    with private_cluster(tmp_path, ["--num-cpus", "1"]) as cluster:
        with log.open("w") as out:
            driver = subprocess.Popen(
                job, env={**cluster.env, "RAY_ADDRESS": cluster.address}, cwd=REPO,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            observed["s_to_first_pass"] = round(_wait_first_pass(driver, output, log), 1)
            t_join = time.monotonic()
            cluster.add_node(["--num-cpus", "2"])
            observed["s_node_start"] = round(time.monotonic() - t_join, 1)
            observed["staged_when_node_up"] = _staged(output)
            observed["rc"] = driver.wait(timeout=JOB_S)
            observed["s_job_after_join"] = round(time.monotonic() - t_join, 1)
        finally:
            if driver.poll() is None:  # its session is only the driver itself
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=30)
    observed["s_total"] = round(time.monotonic() - t_start, 1)
    print("elastic pool observed:", json.dumps(observed))
    assert observed["rc"] == 0, f"job failed:\n{log_tail(log)}"

    summary = json.loads((output / "raypz_run_summary.json").read_text())
    print("summary:", json.dumps({k: summary[k] for k in ("rows_by_node", "actor_pool")}))
    assert summary["rows_in"] == summary["rows_out"] == rows
    pool = summary["actor_pool"]
    assert (pool["slots_now"], pool["initial_size"], pool["max_size"]) == (1, 1, 2)
    by_node = summary["rows_by_node"]
    assert len(by_node) == 2, f"rows predicted on {len(by_node)} node(s): {by_node}"
    assert all(n["rows"] > 0 for n in by_node.values()), by_node
    assert sum(n["rows"] for n in by_node.values()) == rows
    assert summary["rows_by_device"] == {"cpu": rows}

    ids = pads.dataset(output / "dataset", format="parquet").to_table(["objectId"])["objectId"]
    expected = pads.dataset(survey, format="parquet").to_table(["objectId"])["objectId"]
    assert len(ids) == len(np.unique(ids.to_numpy())) == rows
    np.testing.assert_array_equal(np.sort(ids.to_numpy()), np.sort(expected.to_numpy()))
