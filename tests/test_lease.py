"""One writer per output (:mod:`raypz.lease`): a live lease refuses a second run; a lease
whose holder is gone (a dead process on this host, a silent one elsewhere) is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from raypz import lease
from raypz.lease import LEASE_FILE, OutputLease, read_lease


def _plant(output, host: str, pid: int, age_s: float) -> None:
    """A lease of another run, ``age_s`` seconds after its last heartbeat."""
    output.mkdir(parents=True, exist_ok=True)
    beat = (datetime.now(timezone.utc) - timedelta(seconds=age_s)).isoformat(timespec="seconds")
    body = {"token": "other", "job": "raypz inference", "host": host, "pid": pid,
            "started": beat, "heartbeat": beat}  # fmt: skip
    (output / LEASE_FILE).write_text(json.dumps(body))


def test_a_live_lease_refuses_a_second_run_and_ends_with_its_holder(tmp_path):
    out = tmp_path / "catalog"
    with OutputLease(str(out), "raypz inference"):
        held = read_lease(str(out / LEASE_FILE))
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        rule = rf"being written by another run, raypz inference \(pid {os.getpid()} on "
        with pytest.raises(FileExistsError, match=rule), OutputLease(str(out), "raypz inference"):
            pass
        assert read_lease(str(out / LEASE_FILE))["token"] == held["token"], "kept"
    assert not out.exists(), "a directory the lease made and nothing filled is removed"
    out.mkdir()
    (out / "partition.parquet").write_bytes(b"x")
    with OutputLease(str(out), "raypz inference"):
        pass
    assert sorted(p.name for p in out.iterdir()) == ["partition.parquet"]


def test_leases_of_gone_holders_are_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    here = socket.gethostname()
    cases = [  # (host, pid, seconds since its heartbeat, live?)
        (here, int(dead.stdout), 1, False),  # killed on this host: at once
        (here, os.getpid(), 1, True),
        ("node-7", 12345, 30, True),  # another node, heartbeat recent
        ("node-7", 12345, lease.STALE_S + 30, False),  # another node gone silent
    ]
    for i, (host, pid, age, live) in enumerate(cases):
        out = tmp_path / f"out{i}"
        _plant(out, host, pid, age)
        if live:
            refused = pytest.raises(FileExistsError, match=f"pid {pid} on {host}")
            with refused, OutputLease(str(out), "raypz training"):
                pass
            continue
        with OutputLease(str(out), "raypz training"):
            assert read_lease(str(out / LEASE_FILE))["pid"] == os.getpid()
        assert not (out / LEASE_FILE).exists()


def test_the_holder_refreshes_its_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.3)
    out = tmp_path / "model"
    with OutputLease(str(out), "raypz training"):
        first = read_lease(str(out / LEASE_FILE))["heartbeat"]
        deadline = time.monotonic() + 10
        while read_lease(str(out / LEASE_FILE))["heartbeat"] == first:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.2)


def test_a_holder_whose_lease_was_taken_over_does_not_take_it_back(tmp_path, monkeypatch, capsys):
    """A run silent for STALE_S (paused, cut off) lost its lease to another; its next
    heartbeat rewrote the lease, and both wrote on, each thinking it held the output."""
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.2)
    out = tmp_path / "catalog"
    with OutputLease(str(out), "raypz inference") as held:
        _plant(out, "node-7", 12345, 0)  # the run that took the output over
        deadline = time.monotonic() + 10
        while held._beat.is_alive():
            assert time.monotonic() < deadline, "the heartbeat went on"
            time.sleep(0.1)
        assert read_lease(str(out / LEASE_FILE))["token"] == "other"
    assert read_lease(str(out / LEASE_FILE))["token"] == "other", "left to its holder"
    err = capsys.readouterr().err
    assert "the lease was taken over by raypz inference (pid 12345 on node-7" in err


def test_an_output_holding_only_the_lease_counts_as_empty(tmp_path):
    """A heartbeat is written to a hidden temporary name and renamed: an output checked while
    one is being written was refused as not empty."""
    from raypz import io

    with OutputLease(str(tmp_path), "test"):
        (tmp_path / f".{LEASE_FILE}.tmp-0123abcd").write_text("{}")
        io.require_empty(str(tmp_path), "test")
        (tmp_path / "part-0.parquet").write_text("")
        with pytest.raises(FileExistsError, match="not empty"):
            io.require_empty(str(tmp_path), "test")
