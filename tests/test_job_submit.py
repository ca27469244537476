"""End to end: a local Ray head, `ray job submit --working-dir <repo>`, jobs/infer_lsst.py.

The head runs in its own process session (``start_new_session``) with its own ``--temp-dir``,
free ports and its own auth token file, so it neither sees nor disturbs any other Ray on the
machine (the test session's ``ray_session``, or other people's jobs). It is stopped by sending
SIGTERM to its ``ray start --block`` process, which shuts down the processes of that node only;
whatever is left in its session is then killed by pid. ``ray stop`` is never used: it stops
every Ray process of the user on the machine.

Ray job submission needs the dashboard, which needs ``ray[default]`` (aiohttp_cors and
friends); without it the test is skipped with that reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from ray_nodes import private_env, ray_cli, start_head, stop_node

REPO = Path(__file__).resolve().parents[1]
SUBMISSION_ID = "raypz-test-infer"

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to clean up"),
    pytest.mark.skipif(
        importlib.util.find_spec("aiohttp_cors") is None,
        reason="Ray job submission needs the dashboard: pip install 'ray[default]'",
    ),
]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0 and "--block" in log.read_text():
                return
        time.sleep(0.5)
    raise TimeoutError(f"the dashboard did not listen on {port}:\n{log.read_text()}")


def _listen_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a TCP socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        ip_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(ip_hex)[::-1]))
    return found


@contextlib.contextmanager
def local_head() -> Iterator[tuple[str, dict[str, str]]]:
    """A one-node Ray cluster of 2 CPUs on loopback; yields (dashboard URL, client env)."""
    # A short path: Ray's Unix sockets live under the temp dir (107-byte limit).
    temp_dir = tempfile.mkdtemp(prefix="rpz", dir="/tmp")
    env = private_env(temp_dir)
    log = Path(temp_dir, "ray_start.log")
    args = [
        "--num-cpus", "2",
        "--include-dashboard", "true",
        "--dashboard-host", "127.0.0.1",
    ]  # fmt: skip
    proc = None
    try:
        proc, ports = start_head(args, ("--port", "--dashboard-port"), env, log, temp_dir, 90)
        dash_port = ports["--dashboard-port"]
        _wait_for_port(dash_port, proc, log, timeout_s=90)
        assert _listen_addresses(dash_port) == {"127.0.0.1"}, "dashboard must bind loopback only"
        yield f"http://127.0.0.1:{dash_port}", env
    finally:
        left = stop_node(proc) if proc is not None else []
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the test's Ray head still alive: {left}"


def _flags(**kwargs: str) -> list[str]:
    """``--max-rows-per-partition 2000`` style arguments from keyword arguments."""
    return [x for k, v in kwargs.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def test_ray_job_submit_runs_inference_end_to_end(small_survey, small_model, tmp_path):
    output = tmp_path / "catalog"
    args = _flags(
        input=small_survey,
        model=small_model,
        output=output,
        max_rows_per_partition=2000,
        concurrency=1,  # one predictor actor: the machine running the tests is small
    )
    entrypoint = ["python", "jobs/infer_lsst.py", *args]
    t0 = time.monotonic()
    with local_head() as (address, env):
        t_head = time.monotonic() - t0
        client = [ray_cli(), "job"]
        style = ["--address", address, "--log-style", "record", "--log-color", "false"]
        submission = ["--submission-id", SUBMISSION_ID, "--working-dir", str(REPO)]
        for _attempt in range(12):  # a loaded machine starts the job agent late
            submit = subprocess.run(
                [*client, "submit", *style, *submission, "--", *entrypoint],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=240,
            )
            logs = submit.stdout + submit.stderr
            if "No available agent to submit job" not in logs:
                break
            time.sleep(5)
        assert submit.returncode == 0, logs[-6000:]
        status = subprocess.run(
            [*client, "status", *style, SUBMISSION_ID],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        said = status.stdout + status.stderr
        assert f"Job '{SUBMISSION_ID}' succeeded" in said, said
        # a relative output would land in Ray's temporary copy of the working dir and be lost
        relative = [
            *entrypoint[: -len(args)],
            *_flags(input=small_survey, model=small_model),
            "--output",
            "catalog",
        ]
        refused = subprocess.run(
            [*client, "submit", *style, "--working-dir", str(REPO), "--", *relative],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0, said
        assert "'catalog' is relative, and this job runs in Ray's temporary copy" in said, said
        token = Path(env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        t_job = time.monotonic() - t0 - t_head
    t_all = time.monotonic() - t0
    print(f"head up {t_head:.1f} s, job submit+run {t_job:.1f} s, total with stop {t_all:.1f} s")

    # Every input object exactly once in the catalog written by the job.
    ids = pads.dataset(output / "dataset", format="parquet").to_table(["objectId"])["objectId"]
    ids = ids.to_numpy()
    expected = pads.dataset(small_survey, format="parquet").to_table(["objectId"])["objectId"]
    assert len(ids) == len(np.unique(ids)) == 3000
    assert set(ids.tolist()) == set(expected.to_numpy().tolist())
    summary = json.loads((output / "raypz_run_summary.json").read_text())
    assert summary["rows_in"] == summary["rows_out"] == 3000
    # The job joined the cluster it was submitted to (no embedded Ray of its own).
    assert "ray: joined the Ray cluster at" in logs
    # No credential reaches the job's log.
    assert token not in logs
    if os.environ.get("AWS_SECRET_ACCESS_KEY"):
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in logs
