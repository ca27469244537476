"""DDP across two Ray nodes (gloo on CPU): one worker per node, losses as with one worker.

Two private Ray nodes on loopback (``tests/ray_nodes.py``: own session, temp dir, ports and
token each; never ``ray stop``), each with 2 logical CPUs and one unit of the custom resource
``ddp_node``. ``tests/train/ddp_driver.py`` joins them as its own driver process and trains one
member twice with the production loop, at the same time: one worker at batch B = 256, and two
DDP workers at B/2 that each ask for ``ddp_node: 1``, so Ray must put them on different nodes
(0.5 CPU per worker leaves CPUs to Ray Data). 8000 simulated deep-field rows, 3 epochs.

What makes the two runs comparable: the same data, seed, learning rate and schedule, the same
global batch and so the same number of optimiser steps, the same initial weights (rank 0 is
seeded like the single worker and DDP broadcasts its weights), and the mean of the two workers'
half-batch gradients equals the full-batch gradient. What still differs: each DDP worker
shuffles its own half of the rows and normalises with its own half-batch BatchNorm statistics
(no SyncBatchNorm; with the default 512 rows per worker that costs nothing, at 128 it makes the
training-mode loss slightly worse), so the two runs are two draws of the same training.

Tolerance: 0.2 nats on the final epoch's training loss and on the validation loss (a
mixture-density NLL near 0, so absolute, not relative). Measured on this 2-core machine over 4
seeds: |DDP - single| 0.02-0.07 (train; DDP always a little worse, the BatchNorm effect) and
0.03-0.09 (validation), while the single-worker runs themselves spread by 0.16 (train) and 0.11
(validation) between seeds; a given seed repeats its numbers exactly. Errors it catches: a loss
summed instead of averaged over the workers doubles the NLL (|diff| ~0.45); per-worker batches
not halved halve the steps (0.3-0.5 higher, measured in-process). Rows are checked exactly:
every training row once per epoch over both workers (Ray Data's equal split may drop one row
per epoch).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ray_nodes import private_env, start_head, start_node_up, stop_node

from raypz.sim import SurveyConfig, simulate_shard

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("ddp_driver.py")

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to clean up"),
]

LOSS_TOLERANCE = 0.2
"""Largest |DDP - single| of the final training loss and of the validation loss, in nats."""
EPOCHS = 3


@contextlib.contextmanager
def two_nodes(tmp: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A head and a second node, 2 CPUs and ``ddp_node: 1`` each; yields (address, env)."""
    dirs = [tempfile.mkdtemp(prefix=p, dir="/tmp") for p in ("rpzd", "rpze")]  # short paths
    env = private_env(dirs[0])
    common = ["--num-cpus", "2", "--resources", json.dumps({"ddp_node": 1})]
    procs: list[subprocess.Popen] = []
    try:
        head_args = ["--include-dashboard", "false", *common]
        ports = ("--port", "--ray-client-server-port")
        head, port = start_head(head_args, ports, env, tmp / "node0.log", dirs[0], timeout_s=90)
        procs.append(head)
        address = f"127.0.0.1:{port['--port']}"
        worker_args = ["--address", address, *common, "--temp-dir", dirs[1]]
        log = tmp / "node1.log"
        procs.append(start_node_up(lambda: worker_args, env, log, 90, watch=tuple(dirs)))
        yield address, env
    finally:
        left = [pid for p in reversed(procs) for pid in stop_node(p)]
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        assert not left, f"processes of the test's Ray nodes still alive: {left}"


def test_ddp_workers_on_two_nodes_match_one_worker(tmp_path):
    t0 = time.monotonic()
    data = tmp_path / "survey"
    data.mkdir()
    table = simulate_shard(SurveyConfig(n_objects=8000, seed=11, field="deep"), 0)
    pq.write_table(table, data / "part-0.parquet")
    log = tmp_path / "driver.log"
    seconds = {}
    with two_nodes(tmp_path) as (address, env), log.open("w") as out:
        seconds["nodes_up"] = time.monotonic() - t0
        run = subprocess.run(
            [sys.executable, str(DRIVER), "--data", str(data), "--storage",
             str(tmp_path / "ckpt"), "--epochs", str(EPOCHS)],
            env={**env, "RAY_ADDRESS": address}, cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT, timeout=240,
        )  # fmt: skip
        seconds["driver"] = time.monotonic() - t0 - seconds["nodes_up"]
    said = log.read_text(errors="replace")
    assert run.returncode == 0, said[-6000:]
    result = json.loads(said.split("RESULT ", 1)[1].splitlines()[0])
    single, ddp = result["single"], result["ddp"]
    seconds["total"] = time.monotonic() - t0
    print(
        "DDP on two nodes:",
        json.dumps(
            {
                "seconds": {k: round(v, 1) for k, v in seconds.items()},
                **{
                    name: {k: r[k] for k in ("train_loss", "val_loss", "train_rows", "fit_seconds")}
                    for name, r in (("single", single), ("ddp", ddp))
                },
                "ddp_worker_nodes": ddp["worker_nodes"],
            }
        ),
    )

    # (a) one worker per node: rank 0 gathers every rank's node id
    assert len(single["worker_nodes"]) == 1
    assert len(ddp["worker_nodes"]) == 2
    assert len(set(ddp["worker_nodes"])) == 2, ddp["worker_nodes"]
    assert set(ddp["worker_nodes"]) == set(result["nodes"])
    assert "ddp_node" in result["refused_3_workers"], "3 workers on 2 x ddp_node must be refused"

    # (b) the same training: all rows once per epoch over both workers, the same loss
    assert ddp["epoch"] == single["epoch"] == EPOCHS - 1
    assert 0 <= single["train_rows"] - ddp["train_rows"] <= EPOCHS, (single, ddp)
    for key in ("train_loss", "val_loss"):
        diff = abs(ddp[key] - single[key])
        assert diff <= LOSS_TOLERANCE, f"{key}: DDP {ddp[key]:.4f}, single {single[key]:.4f}"
