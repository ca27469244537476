"""The predictor actor's body: one block in, fragments staged, row counts out; a GPU actor
cuts each block into parts that its threads take through the work at once."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from raypz import io
from raypz.catalog import plan_partitions
from raypz.infer import tasks
from raypz.infer.pipeline import _PredictStage
from raypz.infer.predictor import input_columns
from raypz.models import load_artifact
from raypz.object_stream import PATH_COLUMN


def _stage(small_survey, small_model, root: str, calls: int) -> tuple[pa.Table, pa.Table]:
    files = io.list_parquet_files(small_survey)
    artifact = load_artifact(small_model)
    cols = artifact.transform.columns
    scan = tasks.histogram_file(files[0], io.resolve(files[0])[0], cols.ra, cols.dec, 12)
    histogram = scan.histogram
    plan = plan_partitions(histogram, 400)  # several partitions, so each part splits too
    block = pq.read_table(files[0], columns=input_columns(artifact))
    block = block.append_column(PATH_COLUMN, pa.array([files[0]] * block.num_rows))
    stage = _PredictStage(
        small_model, artifact.model_hash, "cpu", files, cols.ra, cols.dec, 1, root, plan, calls
    )
    counts = stage(block)
    staged = pads.dataset(root, format="parquet").to_table()
    return counts, staged.sort_by("objectId")


def test_parts_in_threads_stage_the_same_rows(ray_session, small_survey, small_model, tmp_path):
    counts1, one = _stage(small_survey, small_model, str(tmp_path / "one"), calls=1)
    counts3, three = _stage(small_survey, small_model, str(tmp_path / "three"), calls=3)
    assert sum(counts1["rows"].to_pylist()) == sum(counts3["rows"].to_pylist()) == one.num_rows
    assert len(counts3) > len(counts1), "each part writes fragments of its own"
    assert three.equals(one)
    assert one["objectId"].to_pylist() == sorted(set(one["objectId"].to_pylist()))


def test_an_actor_refuses_a_model_rewritten_under_the_running_job(small_model, tmp_path):
    """Actors (re)load the model from its path: one started after the directory was rewritten
    would put another model's PDFs into the catalog under the first one's hash."""
    files = ["never-read.parquet"]
    with pytest.raises(RuntimeError, match="the model changed under a running job"):
        _PredictStage(small_model, "0" * 12, "cpu", files, "ra", "dec", 1, str(tmp_path), None)
