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


def test_a_stopped_job_says_how_to_resume(capsys, monkeypatch):
    """Ctrl-C, or SIGTERM through exit_on_signal (whatever SystemExit Ray's core worker turns
    it into): one line that says how to go on, and the shell's exit status for the signal.
    Other exits pass through."""
    import signal

    from raypz import job_errors

    def interrupted() -> int:
        raise KeyboardInterrupt

    def terminated() -> int:
        try:
            job_errors.exit_on_signal(signal.SIGTERM, None)
        except SystemExit:
            raise SystemExit(1) from None  # as ray.wait re-raises it

    def exits() -> int:
        raise SystemExit(3)

    monkeypatch.setattr(job_errors, "_SIGNALS_RECEIVED", [])
    with pytest.raises(SystemExit):
        run_job(exits)
    assert run_job(interrupted) == 130
    assert run_job(terminated) == 143
    lines = capsys.readouterr().err.splitlines()
    hint = "rerun the same command to resume where it stopped"
    assert lines[0].endswith(f": stopped (interrupted); {hint}")
    assert lines[1].endswith(f": stopped (SIGTERM); {hint}")


def test_ray_job_stop_ends_a_job_with_the_resume_line(tmp_path):
    """``ray job stop`` sends the driver SIGTERM: a real job, stopped once Ray has started,
    ends with the resume line and status 143 (it ended in Ray's stack dumps)."""
    import signal
    import time

    job = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "jobs" / "simulate_survey.py"),
            "--n-objects",
            "4000000",
            "--seed",
            "1",
            "--rows-per-shard",
            "20000",
            "--num-cpus",
            "1",
            "--output",
            str(tmp_path / "sim"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in job.stdout:  # the job prints its Ray line once Ray runs
        if line.startswith("ray: "):
            break
    time.sleep(1.0)  # in its first ray.wait (~40 s of shard tasks on one CPU)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 143, err
    assert "simulate_survey.py: stopped (SIGTERM); rerun the same command to resume" in err


def test_every_refusal_kind_is_one_line(capsys, tmp_path):
    """Refusals that are no contract breach (an unfinished catalog, an output inside its
    input, a model name that is a path...) printed a traceback and exit status 1."""
    from raypz.predictions import read_predictions
    from raypz.schema import RefusedError

    (tmp_path / "catalog" / "dataset").mkdir(parents=True)  # no properties: unfinished
    (tmp_path / "catalog" / "dataset" / "part.parquet").write_bytes(b"")
    assert run_job(lambda: read_predictions(str(tmp_path / "catalog"))) == 2
    err = capsys.readouterr().err
    assert "a catalog without its properties file" in err and err.count("\n") == 1
    assert issubclass(RefusedError, ValueError)


def test_an_object_store_s_answer_and_a_path_of_the_wrong_kind_are_one_line(capsys, tmp_path):
    """Access denied by S3, or a file where a directory was meant, printed a traceback."""

    def denied() -> int:
        raise OSError("When getting information for key 'dr1/object': AWS Error ACCESS_DENIED")

    assert run_job(denied) == 2
    err = capsys.readouterr().err
    assert "AWS Error ACCESS_DENIED" in err and err.count("\n") == 1

    (tmp_path / "afile").write_text("x")
    from raypz.lease import OutputLease

    def into_a_file() -> int:
        with OutputLease(str(tmp_path / "afile"), "raypz training"):
            return 0

    assert run_job(into_a_file) == 2
    assert "afile: a file; raypz training writes a directory there" in capsys.readouterr().err

    def a_bug() -> int:
        raise OSError("a disk error that is not the user's")

    with pytest.raises(OSError, match="not the user's"):
        run_job(a_bug)


def test_an_output_in_a_bucket_that_does_not_exist_is_one_line(s3_root, capsys):
    """pyarrow's S3 answer there does not read "AWS Error": it printed a traceback."""
    from raypz.lease import OutputLease

    def into_no_bucket() -> int:
        with OutputLease("s3://raypz-no-such-bucket/photoz", "raypz inference"):
            return 0

    assert run_job(into_no_bucket) == 2
    err = capsys.readouterr().err
    assert "Bucket 'raypz-no-such-bucket' not found" in err and err.count("\n") == 1
