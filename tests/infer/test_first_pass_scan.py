"""The first pass's per-file scan (``raypz.infer.tasks.histogram_file``): one read of a file
gives its HEALPix histogram, its rows without a sky position and, when asked, its own id
problems; files with more ids than the in-memory bound take the hashed, re-reading check."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypz import io
from raypz.infer import tasks


def _file(tmp_path, ids: list, ra: list[float] | None = None) -> str:
    n = len(ids)
    table = pa.table(
        {
            "objectId": pa.array(ids, pa.int64()),
            "coord_ra": pa.array(ra if ra is not None else np.linspace(10, 11, n)),
            "coord_dec": pa.array(np.linspace(-5, -4, n)),
        }
    )
    path = str(tmp_path / "shard.parquet")
    pq.write_table(table, path, row_group_size=3)  # several batches per file
    return path


def _scan(path: str, id_column: str | None = "objectId"):
    return tasks.histogram_file(path, io.resolve(path)[0], "coord_ra", "coord_dec", 8, id_column)


def test_a_clean_file_scans_without_problems(tmp_path):
    scan = _scan(_file(tmp_path, list(range(10))))
    assert scan.id_problem is None and scan.no_position == 0
    assert scan.histogram.total == 10


def test_a_repeated_id_in_another_batch_is_named(tmp_path):
    scan = _scan(_file(tmp_path, [1, 2, 3, 4, 5, 6, 7, 2]))
    assert "value 2 is duplicated (within this file)" in scan.id_problem


def test_null_ids_are_counted_over_the_whole_file(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "HISTOGRAM_READ_ROWS", 2)  # nulls in two batches
    scan = _scan(_file(tmp_path, [1, 2, None, 4, None]))
    assert scan.id_problem == "2 null values"


def test_ids_are_not_read_unless_asked(tmp_path):
    scan = _scan(_file(tmp_path, [1, 1, 1], ra=[1.0, float("nan"), 2.0]), id_column=None)
    assert scan.id_problem is None and scan.no_position == 1


@pytest.mark.parametrize("ids", [[5, 6, 7, 8, 9, 6], [5, 6, 7, 8, 9, 10]])
def test_a_file_beyond_the_id_bound_takes_the_hashed_check(tmp_path, monkeypatch, ids):
    monkeypatch.setattr(tasks, "MAX_IDS_PER_PASS", 2)
    read = []
    check = tasks.check_unique_ids
    monkeypatch.setattr(tasks, "check_unique_ids", lambda *a: read.append(a) or check(*a))
    scan = _scan(_file(tmp_path, ids))
    assert len(read) == 1, "the bounded check re-reads the ids"
    assert (scan.id_problem is None) == (len(set(ids)) == len(ids))
