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
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to find pids"),
]

STALL_S = 150.0  # no new file under OUTPUT and the driver alive this long: the job is stuck
RERUN_S = 360.0


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports (all held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _ray_cli() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        pytest.skip("the `ray` command line is not installed")
    return found


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session id) of a live process, from /proc/PID/stat."""
    try:
        stat = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # comm may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[3])


def _all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _session_pids(sid: int) -> list[int]:
    out = []
    for pid in _all_pids():
        st = _stat(pid)
        if st and st[0] != "Z" and st[2] == sid:
            out.append(pid)
    return out


def _descendants(root: int) -> set[int]:
    """``root`` and every live process below it (parent chain through /proc)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st and st[0] != "Z":
            children.setdefault(st[1], []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _cmdline(pid: int) -> str:
    try:
        raw = Path("/proc", str(pid), "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _node_pids(proc: subprocess.Popen) -> set[int]:
    """Every process of the node started by ``proc``: its session and its descendants."""
    return set(_session_pids(proc.pid)) | _descendants(proc.pid)


def _busy_predictors(proc: subprocess.Popen) -> list[int]:
    """Predict-stage actors of that node executing a batch (titled ``...).submit``)."""
    return [
        pid
        for pid in _descendants(proc.pid)
        if (cmd := _cmdline(pid)).startswith("ray::")
        and "_PredictStage" in cmd
        and cmd.endswith(".submit")
    ]


def _kill_node(proc: subprocess.Popen) -> list[int]:
    """SIGKILL a whole node at once (a lost machine); the pids killed."""
    pids = sorted(_node_pids(proc))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return pids


def _stop_node(proc: subprocess.Popen) -> list[int]:
    """SIGTERM the node's ``ray start --block``, then SIGKILL what is left; pids left alive."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=45)
    deadline = time.monotonic() + 10
    while (left := _node_pids(proc) - {proc.pid}) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    time.sleep(0.5)
    return _session_pids(proc.pid)


def _start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``ray start --block ARGS`` in its own session, logging to ``log``."""
    ports = _free_ports(6)
    cmd = [
        _ray_cli(), "start", "--block", *args,
        "--node-ip-address", "127.0.0.1",
        "--object-store-memory", str(200 * 1024**2),
        "--node-manager-port", str(ports[0]),
        "--object-manager-port", str(ports[1]),
        "--metrics-export-port", str(ports[2]),
        "--dashboard-agent-listen-port", str(ports[3]),
        "--dashboard-agent-grpc-port", str(ports[4]),
        "--runtime-env-agent-port", str(ports[5]),
        "--disable-usage-stats",
    ]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_started(proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()}")
        if "--block" in log.read_text():  # printed once the node is up
            return
        time.sleep(0.5)
    raise TimeoutError(f"ray start did not come up:\n{log.read_text()}")


def _wait_cluster_cpus(address: str, env: dict[str, str], cpus: float, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    said = ""
    while time.monotonic() < deadline:
        status = subprocess.run(
            [_ray_cli(), "status", "--address", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        said = status.stdout + status.stderr
        if f"/{cpus:.1f} CPU" in said:
            return
        time.sleep(2)
    raise TimeoutError(f"the cluster never showed {cpus} CPUs:\n{said}")


@contextlib.contextmanager
def two_nodes(tmp: Path) -> Iterator[tuple[str, dict[str, str], subprocess.Popen]]:
    """A head (1 CPU) and a worker node (2 CPUs) on loopback; yields (GCS address, env, worker)."""
    head_dir = tempfile.mkdtemp(prefix="rpzh", dir="/tmp")  # short: Unix socket paths
    worker_dir = tempfile.mkdtemp(prefix="rpzw", dir="/tmp")
    token = Path(head_dir, "auth_token")
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        RAY_DATA_DISABLE_PROGRESS_BARS="1",
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    gcs_port, client_port = _free_ports(2)
    address = f"127.0.0.1:{gcs_port}"
    procs: list[subprocess.Popen] = []
    try:
        head_log = tmp / "head.log"
        head = _start_node(
            [
                "--head", "--port", str(gcs_port), "--num-cpus", "1",
                "--include-dashboard", "false",
                "--ray-client-server-port", str(client_port),
                "--temp-dir", head_dir,
            ],
            env,
            head_log,
        )  # fmt: skip
        procs.append(head)
        _wait_started(head, head_log, timeout_s=120)
        worker_log = tmp / "worker.log"
        worker = _start_node(
            ["--address", address, "--num-cpus", "2", "--temp-dir", worker_dir],
            env,
            worker_log,
        )
        procs.append(worker)
        _wait_started(worker, worker_log, timeout_s=120)
        _wait_cluster_cpus(address, env, 3.0, timeout_s=120)
        yield address, env, worker
    finally:
        left = [pid for p in reversed(procs) for pid in _stop_node(p)]
        shutil.rmtree(head_dir, ignore_errors=True)
        shutil.rmtree(worker_dir, ignore_errors=True)
        assert not left, f"processes of the test's Ray nodes still alive: {left}"


def _survey(small_survey: str, out: Path, n_files: int) -> int:
    """``n_files`` files of 1000 rows: replicas of ``small_survey`` with shifted objectIds."""
    out.mkdir()
    shards = [pq.read_table(f) for f in sorted(Path(small_survey).glob("*.parquet"))]
    rows = 0
    for i in range(n_files):
        table = shards[i % len(shards)]
        shift = (i // len(shards)) * 10**12  # ids are code*1e15 + shard*1e8 + row
        ids = pa.array(table["objectId"].to_numpy() + shift, pa.int64())
        table = table.set_column(table.schema.get_field_index("objectId"), "objectId", ids)
        pq.write_table(table, out / f"part-{i:03d}.parquet")
        rows += table.num_rows
    return rows


def _files_under(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def test_worker_node_killed_mid_job_every_object_once(small_survey, small_model, tmp_path):
    n_files = int(os.environ.get("RAYPZ_NODE_FAIL_FILES", "30"))
    survey = tmp_path / "survey"
    rows = _survey(small_survey, survey, n_files)
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
                # With 3 actors of ~0.83 CPU, at most one fits the head: the others are on the
                # worker node during the predict stage, whether or not their titles are seen.
                if len(staged) >= 10:
                    break
                time.sleep(0.1)
            assert driver.poll() is None, f"the job ended before the kill:\n{_tail(log1)}"
            observed["busy_predictor_seen_on_worker"] = bool(busy)
            observed["staged_at_kill"] = len(list((output / "_staging").rglob("src*.parquet")))
            observed["s_to_kill"] = round(time.monotonic() - t_start, 1)
            killed = _kill_node(worker)
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
    print("run 1 log tail:\n", _tail(log1, 3000))
    if log2.exists():
        print("rerun log tail:\n", _tail(log2, 3000))
    final_rc = observed.get("rerun_rc", observed["run1_rc"])
    assert final_rc == 0, f"job failed: {observed}\n{_tail(log1)}\n{_tail(log2)}"

    summary = json.loads((output / "raypz_run_summary.json").read_text())
    assert summary["rows_in"] == summary["rows_out"] == rows
    ids = pads.dataset(output / "dataset", format="parquet").to_table(["objectId"])["objectId"]
    ids = ids.to_numpy()
    expected = pads.dataset(survey, format="parquet").to_table(["objectId"])["objectId"]
    expected = expected.to_numpy()
    assert len(ids) == len(np.unique(ids)) == rows
    np.testing.assert_array_equal(np.sort(ids), np.sort(expected))
