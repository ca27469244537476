"""A Ray worker node lost mid-job: every input objectId must still appear exactly once.

Three Ray nodes on this machine, each a ``ray start --block`` in its own process session with
its own ``--temp-dir``, free ports and a private auth token (``tests/ray_nodes.py``; ``ray
stop`` is never used, other Ray clusters of the same user may run here):

    head       --num-cpus 0   the GCS and the job's driver (it attaches to the head node)
    worker x2  --num-cpus 1   each holds one predictor actor (0.75 CPU) and read tasks

The head holds no CPU, so both predictor actors start on worker nodes, at about the same time
(a head with CPUs got the first actor seconds before the others, which on this 2-core machine
could finish the input before an actor on another node ever ran). The GCS health-checks nodes
every second (Ray's default: every 3 s) and gives up on one after 5 failed checks: a lost node
is noticed in ~5 s instead of ~15 s, and a slow live node still has 10 s to answer each check.

``jobs/infer_lsst.py`` runs as a plain driver with ``RAY_ADDRESS`` set, so it joins the cluster,
over 4 input files of 2000 rows with a model of 3 members with 1024-wide layers, so that its
actors are busy through the predict stage. Once some rows are staged and a predictor actor is
seen executing a batch (its process title ends in ``.submit``), the worker node it runs on (its
``ray start``, raylet, agents and every worker process) is SIGKILLed, as a lost machine would
be; the test asserts that this actor was among the processes killed and that rows were still
left to predict. Either the job then finishes on the other worker node, or (if it stops
making progress or fails) the same command is run again, which must finish it through the
restart logic of :mod:`raypz.infer.staging`. Which of the two happened is printed (run with
``-s``). Either way the catalog must hold every input row once, with the PDFs the predictor
gives in-process. About a minute on 2 idle cores.
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

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from ray_nodes import (
    assert_catalog_matches_predictor,
    cmdline,
    descendants,
    kill_node,
    left_after,
    log_tail,
    private_cluster,
    replicate_survey,
    walk_files,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to find pids"),
]

N_FILES = 4  # of 2000 rows: each file is a task of the first pass, in a worker of its own
BUSY_S = 240.0  # no predictor busy on the worker node by then: the job is stuck
STALL_S = 60.0  # no new file under OUTPUT and the driver alive this long: the job is stuck
RERUN_S = 240.0
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000"}  # GCS checks of nodes (Ray: 3000)


@pytest.fixture(scope="module")
def wide_model(artifact_fitter, small_survey, tmp_path_factory) -> str:
    """An artifact of 3 members with 1024-wide layers: predictor calls of ~0.1 s, not ms."""
    table = pads.dataset(small_survey, format="parquet").to_table()
    path = str(tmp_path_factory.mktemp("wide_model"))
    return artifact_fitter(path, table, members=3, epochs=1, hidden=(1024, 1024))


def _busy_predictors(node: subprocess.Popen) -> list[int]:
    """Predict-stage actors of that node executing a batch (titled ``...).submit``)."""
    return [
        pid
        for pid in descendants(node.pid)
        if (cmd := cmdline(pid)).startswith("ray::")
        and "_PredictStage" in cmd
        and cmd.endswith(".submit")
    ]


@contextlib.contextmanager
def three_nodes(tmp: Path) -> Iterator[tuple[str, dict[str, str], list[subprocess.Popen]]]:
    """A head without CPUs and two worker nodes of 1 CPU on loopback; yields (GCS address,
    env, worker nodes)."""
    with private_cluster(tmp, ["--num-cpus", "0"], FAST_NODE_DEATH) as cluster:
        # add_node returns once the node is registered with the GCS (``ray start`` waits)
        workers = [cluster.add_node(["--num-cpus", "1"]) for _ in range(2)]
        yield cluster.address, cluster.env, workers


def _files_under(path: Path) -> int:
    return len(walk_files(path))


def _staged_rows(output: Path) -> int:
    rows = 0
    for fragment in walk_files(output / "_staging", "src*.parquet"):
        with contextlib.suppress(OSError):  # renamed or deleted while listed
            rows += pq.read_metadata(fragment).num_rows
    return rows


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (not zombies)."""
    left = []
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path("/proc", str(pid), "stat").read_text()
            if stat[stat.rindex(")") + 2] != "Z":
                left.append(pid)
    return left


def test_worker_node_killed_mid_job_every_object_once(small_survey, wide_model, tmp_path):
    survey = tmp_path / "survey"
    rows = replicate_survey(small_survey, survey, N_FILES, shards_per_file=2)
    output = tmp_path / "catalog"
    job = [
        sys.executable, str(REPO / "jobs" / "infer_lsst.py"),
        "--input", str(survey),
        "--model", wide_model,
        "--output", str(output),
        "--validate", "schema",
        "--batch-size", "500",
        "--max-rows-per-partition", "20000",
    ]  # fmt: skip
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    observed: dict[str, object] = {"rows": rows, "files": N_FILES}

    t0 = time.monotonic()
    with three_nodes(tmp_path) as (address, env, workers):
        observed["s_cluster_up"] = round(time.monotonic() - t0, 1)
        job_env = {**env, "RAY_ADDRESS": address}
        with log1.open("w") as out:
            driver = subprocess.Popen(
                job, env=job_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            # Wait for rows staged and a predictor actor on a worker node executing a batch.
            t_start = time.monotonic()
            busy: list[int] = []
            staged = 0
            while time.monotonic() - t_start < BUSY_S and driver.poll() is None and not busy:
                time.sleep(0.05)
                if staged := _staged_rows(output):
                    for worker in workers:
                        if busy := _busy_predictors(worker):
                            break
            assert driver.poll() is None, f"the job ended before the kill:\n{log_tail(log1)}"
            assert busy, f"no predictor seen busy in {BUSY_S} s:\n{log_tail(log1)}"
            killed = kill_node(worker)
            t_kill = time.monotonic()
            observed["s_to_kill"] = round(t_kill - t_start, 1)
            observed["killed_pids"] = len(killed)
            observed["staged_rows_at_kill"] = staged
            assert set(busy) <= set(killed), (busy, killed)
            assert 0 < staged < rows, f"not killed mid-predict: {observed}"
            left = left_after(lambda: _alive(killed), 15)
            assert not left, f"processes of the killed node alive: {left}"

            # Let the job finish on the other worker node, as long as it makes progress.
            seen, t_progress = _files_under(output), time.monotonic()
            while driver.poll() is None and time.monotonic() - t_progress < STALL_S:
                time.sleep(0.5)
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
    if "rerun_rc" not in observed:  # the pool was planned with both worker nodes
        assert summary["actor_pool"]["slots_now"] == 2, summary["actor_pool"]
    # rows predicted by the run that wrote the summary, each counted once where it finally ran:
    # all of them, or those of the files a rerun did not skip
    predicted = sum(n["rows"] for n in summary["rows_by_node"].values())
    assert predicted == rows - 2000 * summary["sources_skipped"]
    if "rerun_rc" not in observed:
        assert summary["sources_skipped"] == 0
    assert assert_catalog_matches_predictor(output, survey, wide_model) == rows
