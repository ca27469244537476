"""Jobs end on a refused input with one line naming it (exit status 2), not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from raypz.job_errors import REFUSED_EXIT_CODE, run_job
from raypz.schema import ContractError

ROOT = Path(__file__).resolve().parents[1]


def _refuse() -> int:
    raise ContractError("specz/part-0.parquet", "r_cModelFlux", "type string is not float")


def test_a_refusal_is_one_line_and_exit_status_2(capsys, monkeypatch):
    monkeypatch.delenv("RAYPZ_TRACEBACK", raising=False)
    assert run_job(_refuse) == REFUSED_EXIT_CODE == 2
    err = capsys.readouterr().err
    assert err.endswith(
        "error: specz/part-0.parquet: column 'r_cModelFlux': type string is not float\n"
    )
    assert err.count("\n") == 1
    monkeypatch.setenv("RAYPZ_TRACEBACK", "1")
    with pytest.raises(ContractError):
        run_job(_refuse)


def test_other_errors_keep_their_traceback():
    def bug() -> int:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_job(bug)
    assert run_job(lambda: 0) == 0


def test_a_refusal_raised_in_a_ray_task_prints_the_task_s_message(ray_session, capsys, tmp_path):
    import ray

    from raypz.schema import check_file_schema

    (tmp_path / "junk.parquet").write_bytes(b"not parquet")

    def in_a_task() -> int:
        return ray.get(ray.remote(check_file_schema).remote(str(tmp_path / "junk.parquet")))

    assert run_job(in_a_task) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'junk.parquet'}: unreadable" in err
    assert "Traceback" not in err and "ray::" not in err


def test_a_job_on_a_missing_input(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "jobs" / "evaluate.py"),
            "--predictions",
            str(tmp_path / "absent"),
            "--truth",
            str(tmp_path / "absent"),
            "--report",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"evaluate.py: error: {tmp_path / 'absent'}" in done.stderr
    assert "Traceback" not in done.stderr
