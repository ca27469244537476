"""Private Ray nodes for tests that need a real cluster: job submission, node failures.

Each node is a ``ray start --block`` in its own process session, on loopback, with its own
``--temp-dir`` and free ports (the test session's own Ray holds the default agent ports), so a
test can stop or kill exactly its nodes: never ``ray stop``, other Ray instances may be running
as the same user.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def private_env(token_dir: str) -> dict[str, str]:
    """This process's environment for private nodes and their clients: token auth with a new
    token under ``token_dir``, no drain wait on stop, ``python`` = this interpreter."""
    token = Path(token_dir, "auth_token")
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        RAY_DATA_DISABLE_PROGRESS_BARS="1",
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
        RAY_gcs_server_port_wait_time_s="120",  # a node's tries to reach the GCS (Ray: 20 x 1 s)
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    return env


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports (all held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def ray_cli() -> str:
    """The `ray` script of this interpreter (not whatever `ray` is first on PATH)."""
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


def session_pids(sid: int) -> list[int]:
    out = []
    for pid in _all_pids():
        st = _stat(pid)
        if st and st[0] != "Z" and st[2] == sid:
            out.append(pid)
    return out


def descendants(root: int) -> set[int]:
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


def cmdline(pid: int) -> str:
    try:
        raw = Path("/proc", str(pid), "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def node_pids(proc: subprocess.Popen) -> set[int]:
    """Every process of the node started by ``proc``: its session and its descendants."""
    return set(session_pids(proc.pid)) | descendants(proc.pid)


def kill_node(proc: subprocess.Popen) -> list[int]:
    """SIGKILL a whole node at once (a lost machine); the pids killed."""
    pids = sorted(node_pids(proc))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return pids


def left_after(
    find: Callable[[], Collection[int]], timeout_s: float, poll_s: float = 0.2
) -> Collection[int]:
    """``find()`` (processes still alive) asked again until it finds none or ``timeout_s``
    passes; its last answer. A signalled process takes a moment to exit and be reaped."""
    deadline = time.monotonic() + timeout_s
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(poll_s)
    return left


def stop_node(proc: subprocess.Popen) -> list[int]:
    """SIGTERM the node's ``ray start --block``, then SIGKILL what is left; pids left alive."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=45)
    for pid in left_after(lambda: node_pids(proc) - {proc.pid}, 10, poll_s=0.5):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    return list(left_after(lambda: session_pids(proc.pid), 15))


def start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``ray start --block ARGS`` in its own session, logging to ``log``."""
    ports = free_ports(6)
    cmd = [
        ray_cli(), "start", "--block", *args,
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


def wait_started(proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()}")
        if "--block" in log.read_text():  # printed once the node is up
            return
        time.sleep(0.5)
    raise TimeoutError(f"ray start did not come up:\n{log.read_text()}")


def ray_logs_tail(temp_dir: str, n: int = 3000) -> str:
    """The ends of the GCS's and raylet's logs of the node whose ``--temp-dir`` is
    ``temp_dir`` (what says why a node did not come up)."""
    logs = Path(temp_dir, "session_latest", "logs")
    parts = []
    for name in ("gcs_server.out", "gcs_server.err", "raylet.out", "raylet.err"):
        if text := log_tail(logs / name, n).strip():
            parts.append(f"--- {logs / name}\n{text}")
    return "\n".join(parts) or f"(no Ray logs under {logs})"


def start_node_up(
    make_args: Callable[[], list[str]],
    env: dict[str, str],
    log: Path,
    timeout_s: float,
    watch: tuple[str, ...] = (),
    attempts: int = 3,
) -> subprocess.Popen:
    """``ray start --block ARGS`` (:func:`start_node`, ARGS from ``make_args()``) and wait
    until the node is up.

    A node that does not come up is stopped and started again, up to ``attempts`` times, with
    new ARGS (new ports: a killed GCS's port may be held in TIME_WAIT, and :func:`start_node`
    picks the others): on a loaded 2-core machine a raylet's first registration with the GCS
    can miss ``ray start``'s fixed 30 s (seen once in CI: "Timed out while waiting for GCS to
    become available"), which is not what any test here is about. Each failure prints its
    log and the Ray logs of the temp dirs ``watch`` (pytest shows them with the failure);
    the last one raises with them.
    """
    for attempt in range(1, attempts + 1):
        proc = start_node(make_args(), env, log)
        try:
            wait_started(proc, log, timeout_s)
            return proc
        except (RuntimeError, TimeoutError) as err:
            left = stop_node(proc)
            said = f"{err}\n" + "\n".join(ray_logs_tail(d) for d in watch)
            if attempt == attempts or left:
                raise RuntimeError(
                    f"no Ray node came up in {attempt} attempts; processes left: {left}\n{said}"
                ) from err
            print(f"Ray node start {attempt} of {attempts} failed, retrying:\n{said}")
    raise AssertionError("unreachable")


def start_head(
    args: list[str],
    port_flags: tuple[str, ...],
    env: dict[str, str],
    log: Path,
    temp_dir: str,
    timeout_s: float = 120,
) -> tuple[subprocess.Popen, dict[str, int]]:
    """A head node (``ray start --block --head ARGS --temp-dir TEMP_DIR``), each of
    ``port_flags`` (``--port``, ...) given a free port, chosen again for each attempt of
    :func:`start_node_up`; returns the process and the ports it got, by flag."""
    chosen: dict[str, int] = {}

    def make_args() -> list[str]:
        chosen.update(zip(port_flags, free_ports(len(port_flags)), strict=True))
        ports = [x for flag, port in chosen.items() for x in (flag, str(port))]
        return ["--head", *ports, *args, "--temp-dir", temp_dir]

    proc = start_node_up(make_args, env, log, timeout_s, watch=(temp_dir,))
    return proc, dict(chosen)


@dataclass
class PrivateCluster:
    """A private head (see :func:`private_cluster`) and the worker nodes added to it.

    Attributes:
        address: the head's GCS address (``RAY_ADDRESS`` of a driver that joins).
        env: environment of the nodes and of their clients (:func:`private_env`).
        logs: directory of the nodes' logs.
        nodes: ``ray start --block`` processes, the head first.
        temp_dirs: their ``--temp-dir`` directories, removed at the end.
    """

    address: str
    env: dict[str, str]
    logs: Path
    nodes: list[subprocess.Popen] = field(default_factory=list)
    temp_dirs: list[str] = field(default_factory=list)

    def add_node(self, args: list[str]) -> subprocess.Popen:
        """Start a worker node (``ray start --address ADDRESS ARGS``) and wait until it is up."""
        temp_dir = tempfile.mkdtemp(prefix="rpzw", dir="/tmp")  # short: Unix socket paths
        self.temp_dirs.append(temp_dir)
        log = self.logs / f"node{len(self.nodes)}.log"
        proc = start_node_up(
            lambda: ["--address", self.address, *args, "--temp-dir", temp_dir],
            self.env,
            log,
            timeout_s=120,
            watch=(self.temp_dirs[0], temp_dir),
        )
        self.nodes.append(proc)
        return proc

    def wait_cpus(self, cpus: float, timeout_s: float) -> None:
        """Wait until ``ray status`` shows ``cpus`` CPUs in the cluster."""
        deadline = time.monotonic() + timeout_s
        said = ""
        while time.monotonic() < deadline:
            status = subprocess.run(
                [ray_cli(), "status", "--address", self.address],
                env=self.env,
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
def private_cluster(
    tmp: Path, head_args: list[str], extra_env: dict[str, str] | None = None
) -> Iterator[PrivateCluster]:
    """A head node on loopback (``ray start --head HEAD_ARGS``, no dashboard, a private auth
    token); every node of the cluster is stopped at the end, and none may leave a process.
    ``extra_env`` is added to the environment of every node and client (e.g. Ray settings)."""
    head_dir = tempfile.mkdtemp(prefix="rpzh", dir="/tmp")
    cluster = PrivateCluster(
        "",  # once the head is up: its GCS port is chosen per start attempt
        {**private_env(head_dir), **(extra_env or {})},
        tmp,
        temp_dirs=[head_dir],
    )
    try:
        head, ports = start_head(
            ["--include-dashboard", "false", *head_args],
            ("--port", "--ray-client-server-port"),
            cluster.env,
            tmp / "head.log",
            head_dir,
        )
        cluster.address = f"127.0.0.1:{ports['--port']}"
        cluster.nodes.append(head)
        yield cluster
    finally:
        left = [pid for p in reversed(cluster.nodes) for pid in stop_node(p)]
        for temp_dir in cluster.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the test's Ray nodes still alive: {left}"


def log_tail(path: Path, n: int = 4000) -> str:
    """The last ``n`` characters of a job's or node's log ("" when it was never written), for
    assertion messages."""
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def replicate_survey(small_survey: str, out: Path, n_files: int, shards_per_file: int = 1) -> int:
    """``n_files`` files of ``shards_per_file`` x 1000 rows: replicas of ``small_survey``'s
    shards with shifted objectIds; returns their rows."""
    out.mkdir()
    shards = [pq.read_table(f) for f in sorted(Path(small_survey).glob("*.parquet"))]
    rows = 0
    for i in range(n_files):
        parts = []
        for j in range(i * shards_per_file, (i + 1) * shards_per_file):
            table = shards[j % len(shards)]
            shift = (j // len(shards)) * 10**12  # ids are code*1e15 + shard*1e8 + row
            ids = pa.array(table["objectId"].to_numpy() + shift, pa.int64())
            parts.append(
                table.set_column(table.schema.get_field_index("objectId"), "objectId", ids)
            )
        table = pa.concat_tables(parts)
        pq.write_table(table, out / f"part-{i:03d}.parquet")
        rows += table.num_rows
    return rows


def ray_process_pids(title: str, busy: bool = False) -> list[int]:
    """Live Ray worker processes of this test process's own Ray (its descendants) whose title
    (``ray::...``) contains ``title``; with ``busy``, only those executing a task now (Ray
    appends the method, e.g. ``.submit``, to the title)."""
    pids = []
    for pid in descendants(os.getpid()):
        cmd = cmdline(pid)
        if cmd.startswith("ray::") and title in cmd and (not busy or cmd.endswith(".submit")):
            pids.append(pid)
    return pids


@contextlib.contextmanager
def kill_once_in_background(
    find: Callable[[], list[int]],
    ready: Callable[[], bool] = lambda: True,
    timeout_s: float = 600.0,
    poll_s: float = 0.05,
) -> Iterator[list[int]]:
    """While the ``with`` block runs, a thread SIGKILLs the first pid ``find`` returns once
    ``ready()`` holds; yields the list that receives the killed pid (empty if none was
    found). The thread stops with the block: it never kills in a later test.

    A pid that exits before the kill, or a file ``ready`` reads that is renamed away, is not
    an error: the thread looks again.
    """
    killed: list[int] = []
    stop = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not killed and not stop.is_set():
            with contextlib.suppress(OSError):
                pids = find() if ready() else []
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
            stop.wait(poll_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join(timeout=30)


def walk_files(root: Path, pattern: str = "*") -> list[Path]:
    """Files under ``root`` whose names match ``pattern``, while a job may be renaming and
    deleting there: unlike ``Path.rglob`` (FileNotFoundError when a directory vanishes during
    the walk), vanished directories are skipped."""
    return [
        Path(top, name)
        for top, _, names in os.walk(root)
        for name in fnmatch.filter(names, pattern)
    ]


def assert_catalog_matches_predictor(catalog: Path, survey: Path, model: str) -> int:
    """Assert that the PDF catalog of a run over ``survey`` holds every input row exactly once,
    with the PDFs, summaries and flags of ``CatalogPredictor`` run in-process over the same
    rows (what an uninterrupted run stores); returns the rows.

    PDFs are compared as their stored levels (:mod:`raypz.compact`), within one level: the
    actors predict in other batch sizes than this process, and float sums may differ in the
    last bit.
    """
    import numpy as np
    import pyarrow.dataset as pads

    from raypz import compact
    from raypz.infer.predictor import CatalogPredictor
    from raypz.pdf import SUMMARY_COLUMNS

    predictor = CatalogPredictor(model, "cpu")
    source = pads.dataset(survey, format="parquet")
    expected = pa.concat_tables(
        predictor(batch) for batch in source.to_batches(columns=predictor.input_columns)
    )
    got = pads.dataset(catalog / "dataset", format="parquet").to_table(expected.column_names)
    cols = predictor.columns
    ids = got[cols.object_id].to_numpy()
    assert len(np.unique(ids)) == len(ids) == expected.num_rows, "rows lost or duplicated"
    expected, got = expected.sort_by(cols.object_id), got.sort_by(cols.object_id)
    for name in (cols.object_id, "flags"):
        np.testing.assert_array_equal(got[name].to_numpy(), expected[name].to_numpy(), name)
    for name in (cols.ra, cols.dec, *SUMMARY_COLUMNS):
        np.testing.assert_allclose(
            got[name].to_numpy(zero_copy_only=False),
            expected[name].to_numpy(zero_copy_only=False),
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )
    levels = [
        compact.levels(t["pdf_start"].to_numpy(), t["pdf"], predictor.artifact.grid.n).astype(int)
        for t in (got, expected)
    ]
    assert np.abs(levels[0] - levels[1]).max() <= 1, "PDFs differ from the in-process predictor"
    return expected.num_rows


def staged_so_far(
    root: Path, expected: list[int], seen: dict[Path, tuple[int, int]]
) -> tuple[int, int]:
    """(input files whose rows are all staged, input files staged in part) under an inference
    run's staging ``root``, from the fragments' names and footers (cheap: each fragment is read
    once, into ``seen``; they are renamed into place complete)."""
    for fragment in walk_files(root, "src*.parquet"):
        if fragment not in seen:
            with contextlib.suppress(OSError):  # deleted while listed
                source = int(fragment.name[3:].split("-")[0])  # src000012-<uuid>
                seen[fragment] = (source, pq.read_metadata(fragment).num_rows)
    staged = [0] * len(expected)
    for source, n in seen.values():
        staged[source] += n
    pairs = list(zip(staged, expected, strict=True))
    return sum(s == n for s, n in pairs), sum(0 < s < n for s, n in pairs)


def embedded_ray_env() -> dict[str, str]:
    """This process's environment for a job that starts its own embedded Ray (no
    ``RAY_ADDRESS``), without Ray Data's progress bars."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    return env


def kill_job_when(
    cmd: list[str], cwd: Path, log: Path, ready: Callable[[], bool], timeout_s: float
) -> float:
    """Run the job ``cmd`` in its own process session and SIGKILL the whole session (the
    driver and its embedded Ray) as soon as ``ready()`` is true; assert that the job was
    still running then, died of the signal and left no process behind. Returns the seconds
    from start to kill."""
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=embedded_ray_env(), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        while time.monotonic() - t0 < timeout_s and proc.poll() is None and not ready():
            time.sleep(0.02)
        alive = proc.poll() is None
        if alive:
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    seconds = round(time.monotonic() - t0, 1)
    assert alive, f"the job was not running when it was to be killed:\n{log_tail(log)}"
    assert proc.returncode == -signal.SIGKILL
    left = left_after(lambda: session_pids(proc.pid), 15)
    assert not left, f"processes of the killed job still alive: {left}"
    return seconds


def rerun_job(cmd: list[str], cwd: Path, log: Path, timeout_s: float) -> float:
    """Run the job ``cmd`` to its end (embedded Ray); assert it succeeded; returns its seconds."""
    t0 = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(
            cmd, env=embedded_ray_env(), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            timeout=timeout_s,
        )  # fmt: skip
    assert done.returncode == 0, f"the rerun failed:\n{log_tail(log)}"
    return round(time.monotonic() - t0, 1)


def assert_rerun_finished_the_rest(
    out: Path, expected: list[int], done: set[int], observed: dict
) -> dict:
    """Assert that the rerun's summary under ``out`` covers every input row, skipped exactly
    the sources finished before the kill (``done``) and predicted exactly the others' rows,
    and that staging is gone; returns the summary. ``observed`` is printed first."""
    print("kill and rerun observed:", json.dumps(observed))
    summary = json.loads((out / "raypz_run_summary.json").read_text())
    rows = sum(expected)
    assert summary["rows_in"] == summary["rows_out"] == rows
    assert summary["sources"] == len(expected)
    assert summary["sources_skipped"] == len(done)  # finished files were not predicted again
    redone = sum(n for i, n in enumerate(expected) if i not in done)
    assert sum(n["rows"] for n in summary["rows_by_node"].values()) == redone
    assert sum(summary["rows_by_device"].values()) == redone
    from raypz.infer import staging

    assert not Path(staging.staging_root(str(out))).exists()  # removed once the catalog is done
    return summary
