"""One writer per output: a lease that a running job holds on the directory it writes.

Two runs into one output (an operator who resubmits after Ctrl-C on ``ray job submit``, which
does not stop the job; two people sharing a bucket) each passed the rerun checks while the
other had written nothing, then mixed their partitions or members: a catalog half one model's,
labelled the other's. A job now holds ``OUTPUT/_lease.json`` while it writes (owner token,
host, pid, job, start and heartbeat times in UTC) and a second job into the same output is
refused, naming the holder, while the lease is live:

* its holder refreshes the heartbeat every :data:`HEARTBEAT_S`; silence for :data:`STALE_S`
  ends it (a node that died);
* on the holder's own host, a lease whose process is gone ends at once (a job killed with
  SIGKILL is rerun at once, as the restart rules promise).

Claiming writes the lease, waits :data:`CONFIRM_S` and reads it back: of two jobs that claim
within a moment both write, and the one whose token is not read back is refused (object
stores have no atomic create-if-absent). A job ends its lease when it finishes or fails, and
removes the output directory again when the lease made it and the job left it empty (a job
refused before writing leaves nothing behind).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from types import TracebackType

import pyarrow.fs as pafs

from raypz import io
from raypz.io import LEASE_FILE

HEARTBEAT_S = 20.0
"""How often a holder refreshes its lease."""

STALE_S = 120.0
"""A lease whose heartbeat is older than this has no live holder."""

CONFIRM_S = 1.0
"""Wait between writing a claim and reading it back, on object storage (a URI)."""

LOCAL_CONFIRM_S = 0.2
"""The same on a local or shared filesystem, where a read follows a write at once."""


class OutputLease:
    """A context manager that holds ``OUTPUT/_lease.json`` for ``job`` while it writes.

    Entering raises :class:`FileExistsError` naming the holder when another live run holds
    the lease; leaving (normally or by an exception) removes it.

    Args:
        output: the directory the job writes (local or URI).
        job: what the job is, for the holder's description ("raypz inference").
    """

    def __init__(self, output: str, job: str) -> None:
        self.output = output
        self.path = io.join(output, LEASE_FILE)
        self.job = job
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._started = _now()

    def __enter__(self) -> OutputLease:
        fs, inner = io.resolve(self.output)
        kind = fs.get_file_info(inner).type
        if kind == pafs.FileType.File:
            raise FileExistsError(f"{self.output}: a file; {self.job} writes a directory there")
        self._made_output = kind == pafs.FileType.NotFound
        held = read_lease(self.path)
        if held is not None and is_live(held):
            raise FileExistsError(_refusal(self.path, held))
        self._write()
        time.sleep(CONFIRM_S if "://" in self.output else LOCAL_CONFIRM_S)
        back = read_lease(self.path)
        if back is None or back.get("token") != self.token:  # another run claimed at once
            raise FileExistsError(_refusal(self.path, back or {}))  # its lease and directory
        self._beat.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._beat.is_alive():
            self._beat.join()
        held = read_lease(self.path)
        fs, inner = io.resolve(self.output)
        if held is not None and held.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(io.resolve(self.path)[1])
        left = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
        if self._made_output and not left:
            fs.delete_dir(inner)  # refused before it wrote: leave no trace

    def _write(self) -> None:
        body = {
            "token": self.token,
            "job": self.job,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self._started,
            "heartbeat": _now(),
        }
        io.write_bytes_atomic(self.path, json.dumps(body, indent=2).encode())

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):  # a storage hiccup: the next beat retries
                if not self.beat():
                    return

    def beat(self) -> bool:
        """Refresh the heartbeat; False, writing nothing, when another run holds the lease
        now (this process was silent for :data:`STALE_S`, paused or cut off, and the other
        run took the output over): rewriting it would take it back from a live holder."""
        held = read_lease(self.path)
        if held is not None and held.get("token") != self.token:
            print(
                f"warning: {self.path}: the lease was taken over by {_refusal_holder(held)} "
                f"after {STALE_S:g} s without a heartbeat from this run; stop one of them",
                file=sys.stderr,
                flush=True,
            )
            return False
        self._write()
        return True


def read_lease(path: str) -> dict | None:
    """The lease at ``path``, or None when there is none (or it is not a lease: unreadable
    JSON counts as none, as a half-written one cannot be: leases are written whole)."""
    try:
        held = json.loads(io.read_bytes(path))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return held if isinstance(held, dict) else None


def is_live(held: dict, now: float | None = None) -> bool:
    """Whether a lease still has a running holder: a heartbeat within :data:`STALE_S` and,
    on this host, a process of its pid."""
    try:
        beat = datetime.fromisoformat(str(held["heartbeat"])).timestamp()
    except (KeyError, ValueError):
        return False
    if (time.time() if now is None else now) - beat > STALE_S:
        return False
    if held.get("host") == socket.gethostname():
        return _process_exists(int(held.get("pid", -1)))
    return True


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _refusal_holder(held: dict) -> str:
    """Who holds a lease, for messages."""
    return (
        f"{held.get('job', 'a raypz job')} (pid {held.get('pid', '?')} on "
        f"{held.get('host', '?')}, started {held.get('started', '?')}, last heartbeat "
        f"{held.get('heartbeat', '?')})"
    )


def _refusal(path: str, held: dict) -> str:
    who = _refusal_holder(held)
    return (
        f"{path}: this output is being written by another run, {who}; wait for it to end, "
        f"or stop it (a lease whose holder is gone ends within {STALE_S:g} s)"
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
