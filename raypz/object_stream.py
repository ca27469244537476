"""Ray Datasets of an object table, with its cutouts joined on objectId inside the stream.

Inference and training read object tables through :func:`object_dataset`:

* Parquet files without a cutout store: Ray Data's ``read_parquet`` (column projection, files
  split into blocks by row groups), as before;
* FITS object tables, or any table whose cutouts live in a cutout store
  (:mod:`raypz.cutout_store`): one read task per object file (:func:`read_object_file`), which
  reads the file's needed columns and streams its co-partitioned cutout file through the join,
  yielding tables of at most ``chunk_rows`` rows. Ray Data runs these tasks with the same
  streaming back-pressure as its own readers, so memory per task is one object file's catalog
  columns plus one chunk of cutouts, and the number of files changes only how many tasks run.

:func:`read_object_file` is plain Python (no Ray): the in-process predictor and the tests read
files through it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from raypz import io
from raypz.cutout_store import (
    CUTOUT_CHUNK_ROWS,
    CutoutStore,
    count_file_join,
    join_cutouts,
    open_cutout_file,
    store_counts,
)
from raypz.schema.errors import ContractError
from raypz.schema.rules import check_cutout_field, field_pixel_scale, same_pixel_scale
from raypz.tables import is_fits, list_table_files, open_table

if TYPE_CHECKING:
    import ray.data

PATH_COLUMN = "path"
"""Column added with ``include_paths``: the object file of each row (as Ray Data's
``read_parquet(include_paths=True)`` names it)."""


@dataclass(frozen=True)
class CutoutJoin:
    """Where an image model's cutouts come from when they are not a column of the object table.

    Attributes:
        store: the cutout store.
        column: the cutout column to add (the model's).
        shape: (bands, H, W) of one cutout.
        id_column: the objectId column.
        pixel_scale: arcsec per pixel that the cutout files must have where they say (the
            model's; None: unchecked).
    """

    store: CutoutStore
    column: str
    shape: tuple[int, int, int]
    id_column: str = "objectId"
    pixel_scale: float | None = None


def checked_join(
    table: str,
    cutouts: str | None,
    column: str,
    shape: tuple[int, int, int],
    id_column: str = "objectId",
    pixel_scale: float | None = None,
) -> CutoutJoin | None:
    """The join of ``table``'s rows with the cutout store ``cutouts`` (None without one), in
    this process: every pair of files is checked first (readable, one cutout per objectId,
    cutouts of ``shape`` and, where the files say, of ``pixel_scale`` arcsec), and how the
    rows met their cutouts is printed. Without a store, the table's own cutout column must be
    of ``shape`` (and scale) in every file (read from the footers). For training sets; the
    inference pipeline runs the same checks as Ray tasks."""
    if cutouts is None:
        fs, _ = io.resolve(table)
        for f in list_table_files(table):
            with open_table(fs, f) as opened:
                field = opened.schema.field(column)
                check_cutout_field(f, field, shape[0], shape, pixel_scale)
        return None
    store = CutoutStore.open(cutouts)
    store.require_pixel_scale(pixel_scale)
    files = list_table_files(table)
    store.require_pairs(files, table)
    per_file = (
        count_file_join(f, table, store, id_column, column, shape, pixel_scale) for f in files
    )
    counts = store_counts(per_file, store, files, table, id_column, column)
    print(
        f"cutouts: {counts.matched} of {counts.objects} rows of {table} joined from {cutouts}; "
        f"{counts.without_cutout} without a cutout, "
        f"{counts.cutouts_without_object} cutouts without an object row"
    )
    return CutoutJoin(store, column, shape, id_column, pixel_scale)


def declared_pixel_scale(
    table: str, cutouts: str | None, column: str, id_column: str = "objectId"
) -> float | None:
    """The pixel scale (arcsec) that ``table``'s cutouts declare: the field metadata of its
    cutout column, file by file, or with the store ``cutouts`` its manifest and each cutout
    file's own (field metadata, FITS ``PIXSCALE``). None when none says. A training set's
    scale is recorded in the model, so that inference refuses cutouts of another one; files
    that disagree are a :class:`ContractError` naming both (a model trains on one scale)."""
    said: list[tuple[float | None, str]] = []
    if cutouts is None:
        fs, _ = io.resolve(table)
        for f in list_table_files(table):
            with open_table(fs, f) as opened:
                said.append((field_pixel_scale(f, opened.schema.field(column)), f))
    else:
        store = CutoutStore.open(cutouts)
        said.append((store.pixel_scale, io.join(store.root, io.CUTOUT_STORE_MARKER)))
        fs, _ = io.resolve(store.root)
        for path in sorted(store.files.values()):
            with open_cutout_file(fs, path, id_column, column) as opened:
                said.append((opened.pixel_scale, path))
    known = [(scale, where) for scale, where in said if scale is not None]
    if not known:
        return None
    scale, first = known[0]
    for other, where in known[1:]:
        if not same_pixel_scale(other, scale):
            rule = f"pixels of {other:g} arcsec where {first} says {scale:g}: one model, one scale"
            raise ContractError(where, column, rule)
    return scale


def read_object_file(
    path: str,
    root: str,
    columns: list[str],
    join: CutoutJoin | None = None,
    chunk_rows: int = CUTOUT_CHUNK_ROWS,
) -> Iterator[pa.Table]:
    """The rows of one object file (Parquet or FITS) of the table ``root`` (local or URI;
    ``path`` inside its filesystem, as :func:`raypz.tables.list_table_files` lists it),
    ``columns`` only, with the cutout column joined from ``join``'s store when given, in
    tables of at most ``chunk_rows`` rows."""
    fs, _ = io.resolve(root)
    with open_table(fs, path) as table:
        objects = table.read(columns)
    if join is None:
        for lo in range(0, objects.num_rows, chunk_rows):
            yield objects.slice(lo, chunk_rows)
        return
    cutout_path = join.store.file_for(path, root)
    if cutout_path is None:
        yield from join_cutouts(objects, None, join.id_column, join.column, join.shape, chunk_rows)
        return
    cutout_fs, _ = io.resolve(join.store.root)
    with open_cutout_file(cutout_fs, cutout_path, join.id_column, join.column) as cutouts:
        yield from join_cutouts(
            objects,
            cutouts,
            join.id_column,
            join.column,
            join.shape,
            chunk_rows,
            join.pixel_scale,
        )


def object_dataset(
    root: str,
    files: list[str],
    columns: list[str],
    join: CutoutJoin | None = None,
    include_paths: bool = False,
    chunk_rows: int = CUTOUT_CHUNK_ROWS,
) -> ray.data.Dataset:
    """A Ray Dataset of ``files`` (object files under ``root``), ``columns`` only, with cutouts
    joined from ``join`` and a :data:`PATH_COLUMN` when ``include_paths``.

    Read tasks ask for a quarter CPU (a full-CPU read task next to an actor pool on a small
    node can wait forever, see RAY_NOTES), and at most one runs per two CPUs of the cluster:
    Ray Data would otherwise start up to four per CPU, each a worker process of ~200 MB, so
    memory would grow with the number of files (``read_parquet`` bounds its tasks alike). A
    read task joins ~50,000 rows/s on one core, far ahead of the networks' rates.
    """
    import ray
    import ray.data

    root = io.absolute(root)  # the read tasks may run in another working directory
    fs, _ = io.resolve(root)
    if join is None and not any(is_fits(f) for f in files):
        # read_parquet picks its reader when called. The V2 reader lists the files in a task
        # that always asks for 1 CPU: beside an actor pool or a training worker that holds part
        # of a small node it waits forever (RAY_NOTES). V1's read tasks honour num_cpus.
        ctx = ray.data.DataContext.get_current()
        v2, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
        try:
            return ray.data.read_parquet(
                files, filesystem=fs, columns=columns, include_paths=include_paths, num_cpus=0.25
            )
        finally:
            ctx.use_datasource_v2 = v2
    items = ray.data.from_items([{PATH_COLUMN: f} for f in files], override_num_blocks=len(files))
    return items.map_batches(
        _read_files,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={
            "root": root,
            "columns": columns,
            "join": join,
            "include_paths": include_paths,
            "chunk_rows": chunk_rows,
        },
        num_cpus=0.25,
        compute=_read_tasks(int(ray.cluster_resources().get("CPU", 0))),
    )


def _read_tasks(cpus: int):
    """At most one read task per two of the ``cpus`` present now; on a cluster with no CPU yet
    (an autoscaling one whose head has none), Ray Data's default, which grows with it."""
    import ray.data

    return ray.data.TaskPoolStrategy(size=max(1, cpus // 2)) if cpus else None


def _read_files(
    batch: pa.Table,
    root: str,
    columns: list[str],
    join: CutoutJoin | None,
    include_paths: bool,
    chunk_rows: int,
) -> Iterator[pa.Table]:
    """Ray Data UDF: the rows of the object files named in ``batch``."""
    for path in batch[PATH_COLUMN].to_pylist():
        for part in read_object_file(path, root, columns, join, chunk_rows):
            if include_paths:
                part = part.append_column(PATH_COLUMN, pa.array([path] * part.num_rows))
            yield part
