"""Faults during inference, injected for real: a predictor actor killed by PID mid-run."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from ray_nodes import kill_once_in_background, ray_process_pids

from raypz.infer import InferConfig, run_inference


def test_killing_a_predictor_actor_loses_and_duplicates_nothing(
    ray_session, small_survey, small_model, tmp_path
):
    # 30 small input files and small batches: the predict stage runs long enough to be hit
    shards = tmp_path / "shards"
    shards.mkdir()
    table = pads.dataset(small_survey, format="parquet").to_table()
    for i in range(30):
        pq.write_table(table.slice(100 * i, 100), shards / f"part-{i:02d}.parquet")
    out = tmp_path / "catalog"
    config = InferConfig(batch_size=50, max_rows_per_partition=1500, validate="schema")
    with kill_once_in_background(
        lambda: ray_process_pids("_PredictStage", busy=True), timeout_s=240, poll_s=0.02
    ) as killed:
        summary = run_inference(str(shards), small_model, str(out), config)
    assert killed, "no predictor actor was found to kill"
    ids = pads.dataset(out / "dataset", format="parquet").to_table(["objectId"])["objectId"]
    ids = ids.to_numpy()
    expected = pads.dataset(small_survey, format="parquet").to_table(["objectId"])["objectId"]
    assert len(ids) == len(np.unique(ids)) == summary.rows_out == 3000
    assert set(ids) == set(expected.to_numpy())
