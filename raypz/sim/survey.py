"""Simulate a whole survey: one Ray task per shard, each writing its own Parquet file.

Output layout under ``output`` (local path or URI such as ``s3://bucket/prefix``)::

    _simulation.json          the config (written first; a rerun must use the same config)
    shard-00000.parquet ...   one file per shard, complete or absent

With cutouts in a store (``SurveyConfig.cutout_layout`` "shards" or "fits") each shard's
cutouts go to ``cutout_output`` (default ``output/cutouts/``, marked by
``_cutout_store.json`` so that readers of ``output`` skip it) as ``shard-00000.parquet``
(objectId + cutout) or ``shard-00000.fits`` (:mod:`raypz.fits`), co-partitioned with the object
shards as :mod:`raypz.cutout_store` reads them. Within a cutout file, rows are shuffled (a
seeded permutation of each batch), as a cutout service's output may be: readers join on
objectId, never on position.

Each shard is written under a hidden temporary name and renamed (local) or written by one
upload that becomes visible when complete (object stores), so a killed run leaves only whole
shards; rerunning the same command writes only the shards that are missing.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz import io
from raypz.columns import BANDS, DEFAULT_COLUMNS
from raypz.fits import write_cutout_fits
from raypz.lease import OutputLease
from raypz.schema.errors import RefusedError
from raypz.sim.config import SurveyConfig, object_ids
from raypz.sim.cutouts import PIXEL_SCALE
from raypz.sim.shard import CUTOUT_BATCH_ROWS, iter_shard_batches, shard_schema

MANIFEST = "_simulation.json"
CUTOUT_DIR = "cutouts"
"""Default cutout store under the output, for the "shards" and "fits" cutout layouts."""


def shard_name(index: int) -> str:
    """File name of shard ``index``: ``shard-00000.parquet``."""
    return f"shard-{index:05d}.parquet"


def write_shard(
    config: SurveyConfig, shard_index: int, output: str, cutout_output: str | None = None
) -> str:
    """Simulate shard ``shard_index`` in this process and write it under ``output`` (and its
    cutout file under ``cutout_output``, default ``output/cutouts``, for a cutout store).

    Returns the shard's path (``output`` joined with :func:`shard_name`). The cutout file is
    written before the object shard, so an object shard that exists is a finished shard.
    """
    path = io.join(output, shard_name(shard_index))
    if config.cutouts and config.cutout_layout != "column":
        _write_split_shard(config, shard_index, path, cutout_output or io.join(output, CUTOUT_DIR))
        return path
    fs, inner = io.resolve(path)
    local = isinstance(fs, pafs.LocalFileSystem)
    if local:
        fs.create_dir(posixpath.dirname(inner), recursive=True)
    target = (
        posixpath.join(posixpath.dirname(inner), f".{shard_name(shard_index)}.tmp")
        if local
        else inner
    )
    try:
        with pq.ParquetWriter(target, shard_schema(config), filesystem=fs) as writer:
            for batch in iter_shard_batches(config, shard_index):
                writer.write_batch(batch)
    except BaseException:
        # the writer's close wrote a footer after the rows so far: on an object store that
        # uploaded a readable, truncated shard, which a rerun would take for a finished one
        if fs.get_file_info(target).type == pafs.FileType.File:
            fs.delete_file(target)
        raise
    if local:
        fs.move(target, inner)
    return path


def cutout_file_name(config: SurveyConfig, shard_index: int) -> str:
    """File name of shard ``shard_index``'s cutouts in the store."""
    suffix = ".fits" if config.cutout_layout == "fits" else ".parquet"
    return shard_name(shard_index).replace(".parquet", suffix)


def cutout_shard_schema(config: SurveyConfig) -> pa.Schema:
    """Schema of a Parquet cutout shard: objectId and the cutout tensor (as in the object
    shards of the "column" layout, same field metadata)."""
    full = shard_schema(config)
    cols = DEFAULT_COLUMNS
    return pa.schema([full.field(cols.object_id), full.field(cols.cutout)], metadata=full.metadata)


def _batch_order(config: SurveyConfig, shard_index: int, start: int, n: int) -> np.ndarray:
    """The seeded order of a batch's rows in the cutout file (independent of every stream
    that draws the objects, so the layout changes nothing else)."""
    rng = np.random.default_rng([config.seed, config.field_spec.code, shard_index, start, 15])
    return rng.permutation(n)


def _write_split_shard(config: SurveyConfig, shard_index: int, path: str, store: str) -> None:
    """Write the object shard without its cutouts, and the cutouts to the store."""
    cols = DEFAULT_COLUMNS
    full = shard_schema(config)
    objects_schema = full.remove(full.get_field_index(cols.cutout))
    shape = (len(BANDS), config.cutout_size, config.cutout_size)
    n = config.shard_rows(shard_index)
    ids = object_ids(config.field_spec, shard_index, n)
    order = np.concatenate(
        [
            start + _batch_order(config, shard_index, start, min(CUTOUT_BATCH_ROWS, n - start))
            for start in range(0, n, CUTOUT_BATCH_ROWS)
        ]
    )
    _mark_store(store, config)
    target = io.join(store, cutout_file_name(config, shard_index))
    with io.atomic_output(path) as sink, pq.ParquetWriter(sink, objects_schema) as objects:

        def cutouts() -> Iterator[pa.RecordBatch]:
            """The shard's batches in cutout order; object rows are written on the way."""
            start = 0
            for batch in iter_shard_batches(config, shard_index):
                objects.write_batch(batch.drop_columns([cols.cutout]))
                perm = order[start : start + batch.num_rows] - start  # the batch's own order
                start += batch.num_rows
                yield batch.select([cols.object_id, cols.cutout]).take(pa.array(perm))

        if config.cutout_layout == "fits":
            images = (
                b.column(1).to_numpy_ndarray() for b in cutouts()  # (n, bands, H, W) nJy/pixel
            )
            write_cutout_fits(target, ids[order], images, shape, cols.object_id, PIXEL_SCALE)
        else:
            with io.atomic_output(target) as out, pq.ParquetWriter(
                out, cutout_shard_schema(config)
            ) as writer:
                for batch in cutouts():
                    writer.write_batch(batch)


def _mark_store(store: str, config: SurveyConfig) -> None:
    """Write the store's marker (what it holds, and the simulation that made it), once."""
    marker = io.join(store, io.CUTOUT_STORE_MARKER)
    if io.is_file(marker):
        return
    body = {
        "simulation": json.loads(config.to_json()),
        "layout": config.cutout_layout,
        "shape": [len(BANDS), config.cutout_size, config.cutout_size],
        "bands": "".join(BANDS),
        "unit": "nJy/pixel",
        "pixel_scale_arcsec": PIXEL_SCALE,
        "pairs_with": "object shards of the same name (raypz.cutout_store)",
    }
    io.write_bytes_atomic(marker, json.dumps(body, indent=2).encode())


def _check_store(config: SurveyConfig, store: str) -> bool:
    """Refuse a cutout store (given apart from the shards) that holds another simulation's
    cutouts or other files; True when it is new (to be marked). A second simulation into one
    store overwrote its cutouts silently, and with the seed-independent objectIds they joined
    the first simulation's objects as the wrong galaxies."""
    marker = io.join(store, io.CUTOUT_STORE_MARKER)
    try:
        found = json.loads(io.read_bytes(marker))
    except FileNotFoundError:
        io.require_empty(store, "simulation's cutout store")
        return True
    if found.get("simulation") != json.loads(config.to_json()):
        raise FileExistsError(
            f"{store}: a cutout store of another simulation (its {io.CUTOUT_STORE_MARKER}); "
            "choose another --cutout-output"
        )
    return False


def simulate_survey(
    config: SurveyConfig, output: str, cutout_output: str | None = None
) -> list[str]:
    """Simulate every shard of ``config`` as parallel Ray tasks and write them under ``output``
    (cutouts of the "shards" and "fits" layouts under ``cutout_output``, default
    ``output/cutouts``).

    Starts a local Ray through :func:`raypz.ray_runtime.init_ray` (or joins ``RAY_ADDRESS``)
    unless Ray is already initialised. Each task takes one CPU and writes its own shard; shards
    already present from an earlier run of the same config are kept, not recomputed.

    Returns:
        The paths of all shards, in shard order.

    Raises:
        FileExistsError: ``output`` (or the cutout store ``cutout_output``) holds a
            simulation made with a different config, or other files, or another run is
            writing it (:mod:`raypz.lease`).
    """
    import ray  # imported here so that the in-process API does not need Ray

    from raypz.ray_runtime import get_with_progress, init_ray

    # the tasks write there, maybe in another working directory than the driver's
    output = io.absolute(output)
    cutout_output = io.absolute(cutout_output) if cutout_output else None
    if cutout_output is not None and cutout_output.rstrip("/") == output.rstrip("/"):
        raise RefusedError(
            f"{cutout_output}: the cutout store must be another directory than the object "
            "shards' (its files are named like them, and a store directory is not listed as "
            "object rows)"
        )
    apart = cutout_output is not None and config.cutouts and config.cutout_layout != "column"
    if cutout_output is not None and not apart:  # it would be ignored, and nothing said
        raise RefusedError(
            f"{cutout_output}: a cutout store is written only with cutouts in the shards or "
            "fits layout (--cutouts --cutout-layout shards|fits)"
        )
    new_store = apart and _check_store(config, cutout_output)  # before anything is written
    paths = [io.join(output, shard_name(i)) for i in range(config.n_shards)]
    with OutputLease(output, "raypz simulation"):  # two runs both claimed an empty output
        _claim_output(config, output)
        if new_store:
            _mark_store(cutout_output, config)
        todo = [i for i, p in enumerate(paths) if not io.is_file(p)]
        if todo:
            init_ray()
            task = ray.remote(num_cpus=1)(write_shard)
            refs = [task.remote(config, i, output, cutout_output) for i in todo]
            get_with_progress(refs, "simulate", "shards")
    return paths


def _claim_output(config: SurveyConfig, output: str) -> None:
    """Write the manifest, or check that an existing one holds the same config."""
    manifest = io.join(output, MANIFEST)
    wanted = json.loads(config.to_json())
    if io.is_file(manifest):
        found = json.loads(io.read_bytes(manifest))
        old = found.get("config") or {}
        if old != wanted:
            differ = sorted(k for k in {*old, *wanted} if old.get(k) != wanted.get(k))
            shown = ", ".join(f"{k} {old.get(k)!r} (now {wanted.get(k)!r})" for k in differ)
            raise FileExistsError(
                f"{output} already holds a simulation with other settings: {shown}; choose "
                "another output"
            )
        return
    # shards there would count as finished ones
    io.require_empty(output, "simulation")
    io.makedirs(output)
    body = {"config": wanted, "n_shards": config.n_shards}
    io.write_bytes_atomic(manifest, json.dumps(body, indent=2, sort_keys=True).encode())
