"""Per-file driver work in threads (``raypz.tables.map_files``): order and errors as a loop's."""

from __future__ import annotations

import threading
import time

import pytest

from raypz.tables import map_files


def test_results_keep_the_files_order_and_run_in_threads():
    seen: set[int] = set()

    def work(path: str) -> str:
        seen.add(threading.get_ident())
        time.sleep(0.01 * (int(path[-1]) % 3))  # later files may finish first
        return path.upper()

    files = [f"s3/part-{i}" for i in range(10)]
    assert map_files(work, files) == [f.upper() for f in files]
    assert len(seen) > 1


def test_the_first_failing_file_in_order_is_the_one_raised():
    """A breach names the same file as a serial loop would, whichever thread fails first."""
    gate = threading.Event()

    def work(path: str) -> None:
        if path == "b.parquet":
            gate.wait(5)  # fails after c.parquet has
            raise ValueError(f"{path}: broken")
        if path == "c.parquet":
            gate.set()
            raise ValueError(f"{path}: broken")

    with pytest.raises(ValueError, match=r"^b\.parquet"):
        map_files(work, ["a.parquet", "b.parquet", "c.parquet"])


def test_fits_files_are_opened_one_at_a_time():
    threads: set[int] = set()
    map_files(lambda f: threads.add(threading.get_ident()), ["a.parquet", "b.fits", "c.parquet"])
    assert threads == {threading.get_ident()}
    threads.clear()
    map_files(lambda f: threads.add(threading.get_ident()), ["a.fits"] * 4, opens_fits=False)
    assert threading.get_ident() not in threads
