"""Simulate a whole survey: one Ray task per shard, each writing its own Parquet file.

Output layout under ``output`` (local path or URI such as ``s3://bucket/prefix``)::

    _simulation.json          the config (written first; a rerun must use the same config)
    shard-00000.parquet ...   one file per shard, complete or absent

Each shard is written under a hidden temporary name and renamed (local) or written by one
upload that becomes visible when complete (object stores), so a killed run leaves only whole
shards; rerunning the same command writes only the shards that are missing.
"""

from __future__ import annotations

import json
import posixpath

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz import io
from raypz.sim.config import SurveyConfig
from raypz.sim.shard import iter_shard_batches, shard_schema

MANIFEST = "_simulation.json"


def shard_name(index: int) -> str:
    """File name of shard ``index``: ``shard-00000.parquet``."""
    return f"shard-{index:05d}.parquet"


def write_shard(config: SurveyConfig, shard_index: int, output: str) -> str:
    """Simulate shard ``shard_index`` in this process and write it under ``output``.

    Returns the shard's path (``output`` joined with :func:`shard_name`).
    """
    path = io.join(output, shard_name(shard_index))
    fs, inner = io.resolve(path)
    local = isinstance(fs, pafs.LocalFileSystem)
    target = (
        posixpath.join(posixpath.dirname(inner), f".{shard_name(shard_index)}.tmp")
        if local
        else inner
    )
    with pq.ParquetWriter(target, shard_schema(config), filesystem=fs) as writer:
        for batch in iter_shard_batches(config, shard_index):
            writer.write_batch(batch)
    if local:
        fs.move(target, inner)
    return path


def simulate_survey(config: SurveyConfig, output: str) -> list[str]:
    """Simulate every shard of ``config`` as parallel Ray tasks and write them under ``output``.

    Starts a local Ray through :func:`raypz.ray_runtime.init_ray` (or joins ``RAY_ADDRESS``)
    unless Ray is already initialised. Each task takes one CPU and writes its own shard; shards
    already present from an earlier run of the same config are kept, not recomputed.

    Returns:
        The paths of all shards, in shard order.

    Raises:
        ValueError: ``output`` holds a simulation made with a different config.
    """
    import ray  # imported here so that the in-process API does not need Ray

    from raypz.ray_runtime import get_with_progress, init_ray

    _claim_output(config, output)
    paths = [io.join(output, shard_name(i)) for i in range(config.n_shards)]
    todo = [i for i, p in enumerate(paths) if not io.is_file(p)]
    if todo:
        init_ray()
        task = ray.remote(num_cpus=1)(write_shard)
        get_with_progress([task.remote(config, i, output) for i in todo], "simulate", "shards")
    return paths


def _claim_output(config: SurveyConfig, output: str) -> None:
    """Write the manifest, or check that an existing one holds the same config."""
    manifest = io.join(output, MANIFEST)
    wanted = json.loads(config.to_json())
    if io.is_file(manifest):
        found = json.loads(io.read_bytes(manifest))
        if found.get("config") != wanted:
            raise ValueError(
                f"{output} already holds a simulation with a different config "
                f"({found.get('config')}); choose another output"
            )
        return
    io.makedirs(output)
    body = {"config": wanted, "n_shards": config.n_shards}
    io.write_bytes_atomic(manifest, json.dumps(body, indent=2, sort_keys=True).encode())
