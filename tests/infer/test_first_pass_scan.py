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


def test_the_first_pass_keeps_a_window_of_tasks_and_names_the_first_bad_file(
    ray_session, tmp_path, monkeypatch
):
    """Tasks are submitted a window at a time and merged as they finish (1e6 at once held
    ~9 GB in the driver); a breach still names the first bad file in input order."""
    from raypz.columns import DEFAULT_COLUMNS
    from raypz.infer import pipeline
    from raypz.schema import ContractError

    monkeypatch.setattr(pipeline, "FIRST_PASS_MIN_WINDOW", 1)
    monkeypatch.setattr(ray_session, "cluster_resources", lambda: {"CPU": 1})  # window 2
    files = []
    for i in range(7):
        ids = [100 * i + k for k in range(9)]
        if i in (3, 5):
            ids[4] = ids[2]  # a repeat within the file
        (tmp_path / f"f{i}").mkdir()
        files.append(_file(tmp_path / f"f{i}", ids))
    fs, _ = io.resolve(files[0])
    in_flight = []  # tasks pending at each wait: the real ray.wait, watched
    wait = ray_session.wait
    monkeypatch.setattr(
        ray_session, "wait", lambda refs, **kw: in_flight.append(len(refs)) or wait(refs, **kw)
    )
    good = pipeline._first_pass(files[:3], fs, DEFAULT_COLUMNS, 10, check_ids=True)
    assert good.total == 27
    assert max(in_flight) == 2 and len(in_flight) >= 2, in_flight
    with pytest.raises(ContractError, match="duplicated") as info:
        pipeline._first_pass(files, fs, DEFAULT_COLUMNS, 10, check_ids=True)
    assert info.value.file == files[3]
