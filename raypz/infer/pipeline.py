"""Ray Data inference: object shards -> predictor actor pool -> HATS PDF catalog (DESIGN 6).

    first pass   one task per file: coord_ra/coord_dec -> HEALPix histogram -> partition plan
                 (kept for reruns); the same read checks the file's own objectIds when the
                 rows were not validated up front
    main pass    read the files (needed columns, path tag; cutouts joined from a cutout store,
                 :mod:`raypz.object_stream`) -> an elastic pool of CatalogPredictor
                 actors (GPU if any; it grows as nodes join, :mod:`raypz.infer.pool`), which
                 split their rows by partition and write fragments named by source file
    merge        one task per partition: dedupe by objectId, sort by _healpix_29, write Npix=N
    finalize     properties, partition_info.csv, _metadata, _common_metadata, run summary

Memory is bounded by Ray Data's streaming window (blocks of ``target_block_mb``, at most
``object_store_mb_per_actor`` per actor in flight) in the main pass and by one partition per
CPU in the merge. See :mod:`raypz.infer.staging` for how a rerun
finishes an interrupted job without redoing finished input files or duplicating rows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

import raypz
from raypz import compact, io
from raypz import flags as fl
from raypz.catalog import (
    PartitionPlan,
    PixelHistogram,
    finalize_catalog,
    partition_path,
    plan_partitions,
    with_healpix29,
)
from raypz.catalog.layout import require_complete
from raypz.catalog.write import fragment_directory
from raypz.columns import ColumnTemplate
from raypz.cutout_store import CutoutStore, JoinCounts, count_file_join, store_counts
from raypz.infer import pool, staging, tasks
from raypz.infer.config import InferConfig
from raypz.infer.predictor import CatalogPredictor, input_columns
from raypz.lease import OutputLease
from raypz.models import load_artifact
from raypz.object_stream import PATH_COLUMN, CutoutJoin, object_dataset
from raypz.predictions import MODEL_HASH_KEY, grid_metadata
from raypz.progress import ProgressLine
from raypz.ray_runtime import get_with_progress, init_ray
from raypz.schema import ContractError, RefusedError, check_file_schema, validate_dataset
from raypz.schema.files import open_object_table
from raypz.tables import map_files, require_table_files

SUMMARY_FILE = "raypz_run_summary.json"


@dataclass(frozen=True)
class InferenceSummary:
    """What a run did; printed at the end and stored as ``raypz_run_summary.json``.

    Attributes:
        output: the catalog root.
        model_id: the artifact's id.
        fingerprint: hash of the input files and model (a rerun with the same one is a no-op).
        rows_in: rows of the input files (Parquet footers).
        rows_out: rows of the catalog.
        flagged: rows per flag name (a row may count under several).
        sources: input files; sources_skipped: finished by an earlier run and not redone.
        partitions: HATS partitions; partitions_merged: merged by this run.
        seconds: wall time; rows_per_second: rows processed by this run / seconds.
        pdf_bytes_per_object: mean encoded PDF size (bytes, before Parquet compression).
        catalog_bytes_per_object: Parquet bytes on disk per row (all columns, compressed).
        stage_seconds: wall time of each stage of this run: ``setup`` (Ray if this call
            starts it, model, input checks), ``first_pass``, ``main_pass`` (predict and
            stage), ``merge``, ``finalize`` (metadata files, statistics); where the time goes
            when tuning a run.
        rows_by_node: rows predicted by this run per Ray node: node id -> ``{"ip", "rows"}``.
        rows_by_device: rows predicted by this run per device ("cpu", "cuda:<GPU name>").
            Both count this run only: a rerun that skips finished sources counts the rows of
            the sources it predicts (their sum is the rows of the sources not skipped), and a
            block retried after a lost actor or node counts once, where it finally ran.
        actor_pool: the predictor pool (:class:`raypz.infer.pool.PoolPlan`): size bounds,
            resources per actor, and the actors the nodes present at the start held.
        cutouts: for an image model reading a cutout store (``--cutouts``): the store and
            how the input's rows met its cutouts (:class:`raypz.cutout_store.JoinCounts`:
            ``matched``, ``without_cutout`` (flagged no_cutout), ``cutouts_without_object``,
            counting the store's files that pair with no input file); empty otherwise.
    """

    output: str
    model_id: str
    fingerprint: str
    rows_in: int
    rows_out: int
    flagged: dict[str, int]
    sources: int
    sources_skipped: int
    partitions: int
    partitions_merged: int
    seconds: float
    rows_per_second: float
    pdf_bytes_per_object: float
    catalog_bytes_per_object: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    rows_by_node: dict[str, dict] = field(default_factory=dict)
    rows_by_device: dict[str, int] = field(default_factory=dict)
    actor_pool: dict = field(default_factory=dict)
    cutouts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


class _StageClock:
    """Wall time per stage: :meth:`lap` closes the stage that ran since the previous lap."""

    def __init__(self, start: float) -> None:
        self.last = start
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self.last, 2)
        self.last = now


class _PredictStage:
    """Actor body: predict a block, add the HEALPix index, and stage its rows as fragments.

    Staging inside the actor keeps the predicted rows (~0.8 kB each with the PDF) out of the
    object store: the block that leaves the actor is a few row counts. As a separate Ray Data
    stage, those rows filled the object-store budget and stalled the actors behind it.

    With ``calls`` > 1 (GPU actors, ``InferConfig.calls_per_gpu_actor``) a block is cut into
    that many parts, which threads of the actor take through the whole work at once: one
    part's host work (features, Arrow, HEALPix index, staging writes) overlaps another's
    device work. The predictor holds no per-call state, and each part writes fragments under
    names of its own. (Ray Data 2.60's ``max_concurrent_calls_per_actor`` did not overlap an
    actor's calls when tried: one call at a time was seen.)
    """

    def __init__(
        self,
        model: str,
        model_hash: str,
        device: str,
        files: list[str],
        ra: str,
        dec: str,
        threads: int,
        root: str,
        plan: PartitionPlan,
        calls: int = 1,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self.predictor = CatalogPredictor(model, device)
        found = self.predictor.artifact.model_hash
        if found != model_hash:  # the model directory was rewritten while the job ran
            raise RuntimeError(
                f"{model}: model hash {found}, but this run started with {model_hash}: the "
                "model changed under a running job; its catalog would mix two models"
            )
        self.source_of = {path: i for i, path in enumerate(files)}  # a path's source number
        self.ra, self.dec = ra, dec
        self.root, self.plan = root, plan
        self.origin = _origin(self.predictor.ensemble.device)
        self.calls = calls
        self.threads = ThreadPoolExecutor(calls) if calls > 1 else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.threads is None:
            return self._stage(batch)
        step = -(-batch.num_rows // self.calls)
        parts = [batch.slice(lo, step) for lo in range(0, batch.num_rows, step)]
        return pa.concat_tables(self.threads.map(self._stage, parts))

    def _stage(self, batch: pa.Table) -> pa.Table:
        src = self._sources(batch[PATH_COLUMN])
        out = self.predictor(batch.drop_columns([PATH_COLUMN]))
        out = with_healpix29(out, self.ra, self.dec)
        return tasks.stage_block(out, src, self.root, self.plan, self.origin)

    def _sources(self, paths: pa.ChunkedArray) -> np.ndarray:
        """(N,) int64 source number of each row, from its path: a batch holds a few distinct
        paths, looked up once each (``pc.index_in`` over every input path hashed them all on
        each call: 0.3 s a call at 1e6 files)."""
        codes = pc.dictionary_encode(paths.combine_chunks())
        numbers = np.array([self.source_of[p] for p in codes.dictionary.to_pylist()], np.int64)
        return numbers[codes.indices.to_numpy(zero_copy_only=False)]


def _origin(device) -> dict[str, str]:
    """This actor's node id, node IP and device name (``tasks.ORIGIN_COLUMNS``)."""
    import torch

    name = f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else device.type
    node_id = ray.get_runtime_context().get_node_id()
    return {"node_id": node_id, "node_ip": ray.util.get_node_ip_address(), "device": name}


FIRST_PASS_MIN_WINDOW = 1000
"""First-pass tasks in flight at least (twice the cluster's CPUs where that is more)."""


def _first_pass(
    files: list[str], fs, cols: ColumnTemplate, order: int, check_ids: bool
) -> PixelHistogram:
    """HEALPix histogram of every input row's position, one task per file; with
    ``check_ids`` the same tasks check each file's own objectIds (a repeat across files needs
    ``validate="full"``, which reads every file's ids together)."""
    # one CPU per task: quarter-CPU tasks made Ray start up to 4 worker processes per CPU
    # (~200 MB each, alive through the main pass) for work that takes milliseconds per file;
    # an object store's transient errors (OSError) are retried, not the end of the pass
    task = ray.remote(num_cpus=1, retry_exceptions=[OSError], max_retries=3)(tasks.histogram_file)
    id_column = cols.object_id if check_ids else None
    # a window of tasks in flight, merged as they finish: 1e6 tasks submitted at once held
    # ~9 GB in the driver, and their histograms all at the end
    window = max(FIRST_PASS_MIN_WINDOW, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending: dict[ray.ObjectRef, int] = {}
    histogram, parts = None, []
    no_position: list[tuple[int, int]] = []
    id_problems: list[tuple[int, str]] = []
    submitted = 0
    while submitted < len(files) or pending:
        while submitted < len(files) and len(pending) < window:
            ref = task.remote(files[submitted], fs, cols.ra, cols.dec, order, id_column)
            pending[ref] = submitted
            submitted += 1
        ready, _ = ray.wait(list(pending), num_returns=min(len(pending), 100), timeout=1.0)
        for ref in ready:
            i, scan = pending.pop(ref), ray.get(ref)
            if scan.no_position:
                no_position.append((i, scan.no_position))
            if scan.id_problem is not None:
                id_problems.append((i, scan.id_problem))
            parts.append(scan.histogram)
        if len(parts) >= 1000 or not pending:
            histogram = PixelHistogram.merge([*([histogram] if histogram else []), *parts])
            parts = []
    if no_position:
        first = min(no_position)[0]
        raise ContractError(
            files[first],
            f"{cols.ra}/{cols.dec}",
            f"{sum(n for _, n in no_position)} row(s) in {len(no_position)} file(s) without a"
            " valid sky position (finite RA, |Dec| <= 90 deg): they cannot be placed in a"
            " HEALPix partition",
        )
    if id_problems:
        first, problem = min(id_problems)
        raise ContractError(files[first], cols.object_id, problem)
    return histogram


def _require_room(config: InferConfig) -> None:
    """Stop when no node of a local Ray holds one predictor actor (it gains no node, so the
    run would wait forever); on a cluster, say that the pool waits for such a node."""
    nodes = _node_resources()
    blocked = pool.unplaceable(pool.plan_pool(config, nodes), nodes)
    if blocked and len(nodes) == 1 and not os.environ.get("RAY_ADDRESS"):
        raise RefusedError(
            f"{blocked}: a local Ray gains no node, so the run would wait forever; lower "
            "--cpus-per-actor or --gpus-per-actor, or pass --device cpu"
        )
    if blocked:
        print(f"predict: {blocked}; the pool waits for a node that holds one")


def _validate(
    input_path: str, files: list[str], config: InferConfig, artifact, store: bool
) -> list[int]:
    """Check the input against the contract before any work: every file's schema, or (with
    ``validate="full"``) every row; returns each file's rows (from the footer the schema
    check opens anyway). An image model needs a cutout column unless its cutouts come from a
    store (``store``), whose files the first pass checks."""
    cols, bands = artifact.transform.columns, artifact.transform.bands
    cutouts = artifact.cutouts is not None and not store
    shape = artifact.cutouts.shape if cutouts else None
    scale = artifact.cutouts.pixel_scale_arcsec if cutouts else None
    if cutouts:  # the column the model was trained on
        cols = replace(cols, cutout=artifact.cutouts.column)
    checks = {"require_cutouts": cutouts, "cutout_shape": shape, "cutout_pixel_scale": scale}
    full = config.validate == "full"
    if full:
        print(validate_dataset(input_path, cols, bands, **checks).summary())
    fs, _ = io.resolve(input_path)

    def check_and_count(f: str) -> int:
        with open_object_table(fs, f) as table:
            if not full:
                check_file_schema(f, table.schema, cols, bands, **checks)
            return table.num_rows

    return map_files(check_and_count, files)


def run_inference(
    input_path: str,
    model: str,
    output: str,
    config: InferConfig | None = None,
    cutouts: str | None = None,
) -> InferenceSummary:
    """Predict PDFs for every row of ``input_path`` and write the HATS catalog ``output``.

    Args:
        input_path: object table: a Parquet or FITS file, a directory of them, or a HATS
            catalog; local or URI.
        model: artifact directory.
        output: catalog root to write (local or URI). Rerunning with the same arguments after
            an interruption finishes the job.
        config: run settings.
        cutouts: for an image model, a cutout store co-partitioned with the input
            (:mod:`raypz.cutout_store`: Parquet or FITS cutout files, local or URI), joined on
            objectId inside the stream; None when the cutouts are a column of the input.

    Raises:
        ContractError: an input file breaks the object-table contract (before any work).
        RefusedError: the output lies inside the input, or a catalog model is given cutouts.
        FileExistsError: the output holds something else, a catalog of other inputs or
            settings, or another run is writing it (:mod:`raypz.lease`).
    """
    config = config or InferConfig()
    t0 = time.perf_counter()
    init_ray()
    # actors and tasks open these paths, maybe in another working directory than the driver's
    input_path, model, output = (io.absolute(p) for p in (input_path, model, output))
    cutouts = io.absolute(cutouts) if cutouts else None
    if io.is_inside(output, input_path):
        raise RefusedError(
            f"{output}: the catalog must be written outside the input {input_path} (a rerun "
            "would read its partitions as object rows)"
        )
    artifact = load_artifact(model)
    store = CutoutStore.open(cutouts) if cutouts else None
    if store is not None and artifact.cutouts is None:
        raise RefusedError(f"{model}: a catalog model reads no cutouts; drop the store {cutouts}")
    fs, _ = io.resolve(input_path)
    files = require_table_files(input_path)
    fingerprint = _fingerprint(files, fs, artifact, config, store)
    finished = _finished_run(output, fingerprint, artifact.model_id, len(files))
    if finished is not None:  # before validation: "full" reads every row of the input
        print(f"{output}: already complete for these inputs, model and settings; nothing to do")
        seconds = round(time.perf_counter() - t0, 2)
        return replace(  # the catalog's counts, and what this run did: nothing
            finished,
            sources_skipped=finished.sources,
            partitions_merged=0,
            seconds=seconds,
            rows_per_second=0.0,
            stage_seconds={"setup": seconds},
            rows_by_node={},
            rows_by_device={},
        )
    _earlier_histogram(output, fingerprint)  # refuse another's output before "full" reads
    expected = _validate(input_path, files, config, artifact, store is not None)
    _require_room(config)
    join = None
    if store is not None:
        store.require_pairs(files, input_path)
        c = artifact.cutouts
        store.require_pixel_scale(c.pixel_scale_arcsec)
        id_column = artifact.transform.columns.object_id
        join = CutoutJoin(store, c.column, c.shape, id_column, c.pixel_scale_arcsec)

    # one run writes a catalog at a time: two mixed their models' rows in one catalog
    with OutputLease(output, "raypz inference"), _ray_data_settings(config):
        return _run(
            input_path, model, output, config, artifact, files, fs, expected, t0, join, fingerprint
        )


def _fingerprint(
    files: list[str], fs, artifact, config: InferConfig, store: CutoutStore | None
) -> str:
    """What a catalog is made from: the input files (paths, sizes), the model, the
    partitioning settings (fragments are staged by partition) and the cutout store's files."""
    salt = f"{artifact.model_hash}/{config.max_rows_per_partition}/{config.histogram_order}"
    if store is not None:  # other cutouts make another catalog
        store_fs, _ = io.resolve(store.root)
        salt += staging.input_fingerprint(sorted(store.files.values()), store_fs, "")
    return staging.input_fingerprint(files, fs, salt)


@contextmanager
def _ray_data_settings(config: InferConfig) -> Iterator[None]:
    """Ray Data settings of this run, restored afterwards (datasets keep a copy of them)."""
    ctx = ray.data.DataContext.get_current()
    options = ctx.execution_options
    saved = (
        ctx.target_max_block_size,
        options.resource_limits,
        ctx.override_object_store_memory_limit_fraction,
    )
    ctx.target_max_block_size = config.target_block_mb * 1024**2
    try:
        yield
    finally:
        (
            ctx.target_max_block_size,
            options.resource_limits,
            ctx.override_object_store_memory_limit_fraction,
        ) = saved


def _earlier_histogram(output: str, fingerprint: str) -> PixelHistogram | None:
    """The pixel histogram that an interrupted run of the same inputs, model and settings
    (``fingerprint``) staged in ``output``, or None when ``output`` is empty. FileExistsError
    when it holds anything else: another run's staging, or files that are not raypz's."""
    histogram = staging.load_histogram(staging.staging_root(output), fingerprint)
    if histogram is None:
        io.require_empty(output, "raypz inference", ours=(staging.STAGING_DIR,))
    return histogram


def _run(
    input_path: str,
    model: str,
    output: str,
    config: InferConfig,
    artifact,
    files: list[str],
    fs,
    expected: list[int],
    t0: float,
    join: CutoutJoin | None,
    fingerprint: str,
) -> InferenceSummary:
    """The body of :func:`run_inference` once the input is checked (``fingerprint``: of
    :func:`_fingerprint`)."""
    clock = _StageClock(t0)
    clock.lap("setup")
    cols = artifact.transform.columns
    root = staging.staging_root(output)
    histogram = _earlier_histogram(output, fingerprint)  # again, now under the lease
    # the store's files are checked before anything is written
    cutout_counts = _join_counts(input_path, files, join) if join is not None else None
    if histogram is None:
        # "full" validation checked the ids across all files already
        check_ids = config.validate == "schema"
        histogram = _first_pass(files, fs, cols, config.histogram_order, check_ids)
        staging.save_histogram(root, histogram, fingerprint)
    plan = plan_partitions(histogram, config.max_rows_per_partition)
    clock.lap("first_pass")

    done, stale = staging.finished_sources(root, expected, cols.object_id)
    staging.delete(stale, root)
    pending = [i for i in range(len(files)) if i not in done]
    rows_done = sum(expected[i] for i in pending)
    predicted = (
        _main_pass(model, artifact, input_path, files, pending, root, plan, config, rows_done, join)
        if pending
        else {}
    )
    clock.lap("main_pass")

    metadata = _provenance(artifact, input_path, config)
    to_merge = [(k, n) for k, n in plan.pixels() if not _merge_current(root, output, k, n)]
    # a merge holds one partition a few times over: one per CPU bounds the memory
    merge = ray.remote(num_cpus=1)(tasks.merge_and_mark)
    merged = get_with_progress(
        [
            merge.remote(root, output, k, n, metadata, cols.object_id, config.zstd_level)
            for k, n in to_merge
        ],
        "merge",
        "partitions",
    )
    clock.lap("merge")
    finalize_catalog(
        output,
        config.catalog_name,
        cols.ra,
        cols.dec,
        extra_properties={"obs_description": f"raypz photo-z PDFs ({artifact.model_id})"},
        plan=plan,
    )
    # partitions merged by an earlier run are read back for their statistics
    partition_stats = ray.remote(num_cpus=0.25)(tasks.partition_stats)
    merged_now = set(to_merge)
    earlier = [p for p in plan.pixels() if p not in merged_now]
    stats = merged + ray.get([partition_stats.remote(output, k, n) for k, n in earlier])
    rows_out = int(plan.nrows.sum())
    clock.lap("finalize")
    seconds = time.perf_counter() - t0
    summary = InferenceSummary(
        output=output,
        model_id=artifact.model_id,
        fingerprint=fingerprint,
        rows_in=int(sum(expected)),
        rows_out=rows_out,
        flagged={name: sum(s[0][name] for s in stats) for name in fl.FLAG_NAMES.values()},
        sources=len(files),
        sources_skipped=len(done),
        partitions=len(plan),
        partitions_merged=len(to_merge),
        seconds=round(seconds, 2),
        rows_per_second=round(rows_done / seconds, 1),
        pdf_bytes_per_object=round(sum(s[1] for s in stats) / max(rows_out, 1), 1),
        catalog_bytes_per_object=round(sum(s[2] for s in stats) / max(rows_out, 1), 1),
        stage_seconds=clock.seconds,
        cutouts={}
        if cutout_counts is None
        else {"store": join.store.root, **asdict(cutout_counts)},
        **predicted,
    )
    io.write_bytes_atomic(
        io.join(output, SUMMARY_FILE), json.dumps(summary.to_dict(), indent=2).encode()
    )
    if not config.keep_staging:
        _remove_tree(root)
    return summary


def _node_resources() -> list[dict[str, float]]:
    """Resources of each live node of the cluster now."""
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def _join_counts(input_path: str, files: list[str], join: CutoutJoin) -> JoinCounts:
    """Check every input file's cutout file (one task per file, ids only) and count how their
    rows meet; cutouts in store files that pair with no input file count as without object."""
    task = ray.remote(num_cpus=1)(count_file_join)  # one CPU, as the first pass's histograms
    store, shape, scale = join.store, join.shape, join.pixel_scale
    # put once: passed by value, the store (~100 bytes per file) was copied into the object
    # store for every task, files^2 x 100 bytes (10 GB at 1e4 files)
    shared = ray.put(store)
    refs = [
        task.remote(f, input_path, shared, join.id_column, join.column, shape, scale) for f in files
    ]
    return store_counts(ray.get(refs), store, files, input_path, join.id_column, join.column)


def _main_pass(
    model: str,
    artifact,
    input_path: str,
    files: list[str],
    pending: list[int],
    root: str,
    plan: PartitionPlan,
    config: InferConfig,
    rows_to_do: int,
    join: CutoutJoin | None,
) -> dict:
    """Read the ``pending`` input files (``rows_to_do`` rows; cutouts joined from ``join``'s
    store), predict in the actor pool and stage fragments under ``root``, showing progress;
    returns the summary's ``rows_by_node``, ``rows_by_device`` and ``actor_pool``."""
    nodes = _node_resources()
    actors = pool.plan_pool(config, nodes)
    _set_object_store_budget(actors, config, nodes)
    cols = artifact.transform.columns
    shape = artifact.cutouts.shape if artifact.cutouts is not None else None
    rows_per_call = config.rows_per_batch(shape, actors.gpus > 0)
    # files read by object_dataset's tasks come in blocks of at most target_block_mb of
    # cutouts, as read_parquet's do: a whole predictor call per block held 3x more in flight
    block_rows = config.target_block_mb * 2**20 // (4 * int(np.prod(shape))) if shape else None
    columns = input_columns(artifact)  # no need to build the members here
    if join is not None:
        columns.remove(join.column)
    ds = object_dataset(
        input_path,
        [files[i] for i in pending],
        columns,
        join,
        include_paths=True,
        chunk_rows=min(rows_per_call, block_rows or rows_per_call),
    )
    ds = ds.map_batches(
        _PredictStage,
        fn_constructor_kwargs={
            "model": model,
            "model_hash": artifact.model_hash,
            "device": config.device,
            "files": files,
            "ra": cols.ra,
            "dec": cols.dec,
            "threads": actors.threads,
            "root": root,
            "plan": plan.without_histogram(),
            "calls": actors.calls,
        },
        # each of the actor's parallel parts gets a whole predictor call's rows
        batch_size=actors.calls * rows_per_call,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            min_size=actors.min_size,
            max_size=actors.max_size,
            initial_size=actors.initial_size,
        ),
        num_gpus=actors.gpus,
        num_cpus=actors.cpus,
    )
    counts = []
    with ProgressLine("predict", rows_to_do, "rows") as progress:
        for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            counts.append(block)
            progress.advance(pc.sum(block["rows"]).as_py() or 0)
    by_node, by_device = _rows_by_origin(counts)
    return {"rows_by_node": by_node, "rows_by_device": by_device, "actor_pool": actors.to_dict()}


def _set_object_store_budget(
    actors: pool.PoolPlan, config: InferConfig, nodes: list[dict[str, float]]
) -> None:
    """Ray Data's object-store budget for this run (``pool.object_store_budget``); the
    caller's ``_ray_data_settings`` restores the previous one."""
    limit, share = pool.object_store_budget(actors, config.object_store_mb_per_actor, nodes)
    ctx = ray.data.DataContext.get_current()
    ctx.override_object_store_memory_limit_fraction = share
    if limit is not None:
        options = ctx.execution_options
        options.resource_limits = options.resource_limits.copy(object_store_memory=limit)


def _rows_by_origin(counts: list[pa.Table]) -> tuple[dict[str, dict], dict[str, int]]:
    """Staged rows per node (id -> ``{"ip", "rows"}``) and per device, from the blocks of
    row counts that ``tasks.stage_block`` returned."""
    if not counts:  # input files without rows
        return {}, {}
    staged = pa.concat_tables(counts)
    nodes = staged.group_by(["node_id", "node_ip"]).aggregate([("rows", "sum")]).to_pylist()
    devices = staged.group_by("device").aggregate([("rows", "sum")]).to_pylist()
    by_node = {n["node_id"]: {"ip": n["node_ip"], "rows": n["rows_sum"]} for n in nodes}
    return by_node, {d["device"]: d["rows_sum"] for d in devices}


def _finished_run(
    output: str, fingerprint: str, model_id: str, sources: int
) -> InferenceSummary | None:
    """The summary of a completed run over the same inputs, model and partitioning settings,
    if ``output`` has one and every partition file it lists is still there. A catalog of
    another run is refused, naming what differs where its summary says (the model, the number
    of input files)."""
    try:
        previous = json.loads(io.read_bytes(io.join(output, SUMMARY_FILE)))
    except FileNotFoundError:
        return None
    if previous.get("fingerprint") != fingerprint:
        differ = [
            f"{what} {previous[key]!r} (now {now!r})"
            for what, key, now in [
                ("model", "model_id", model_id),
                ("input files", "sources", sources),
            ]
            if key in previous and previous[key] != now
        ]
        raise FileExistsError(
            f"{output}: holds a catalog from other inputs, another model or other partitioning "
            "settings (InferConfig's --max-rows-per-partition, --histogram-order)"
            + (f": {', '.join(differ)}" if differ else "")
            + "; choose a new output"
        )
    require_complete(output, "infer into a new output, or delete this one and rerun")
    return InferenceSummary(**previous)


def _merge_current(root: str, output: str, norder: int, npix: int) -> bool:
    """True when the partition file exists, merged from exactly the fragments staged now."""
    marker = staging.merged_marker(root, norder, npix)
    try:
        merged = json.loads(io.read_bytes(marker))
    except FileNotFoundError:
        return False
    fs, inner = io.resolve(partition_path(output, norder, npix))
    if fs.get_file_info(inner).type.name != "File":
        return False
    return merged == sorted(io.list_parquet_files(fragment_directory(root, norder, npix)))


def _provenance(artifact, input_path: str, config: InferConfig) -> dict[str, str]:
    """Parquet key-value metadata of every partition: grid, encoding, model and run."""
    grid = {k.decode(): v.decode() for k, v in grid_metadata(artifact.grid).items()}
    return {
        **grid,
        "raypz.pdf_encoding": compact.ENCODING,
        "raypz.model_id": artifact.model_id,
        MODEL_HASH_KEY.decode(): artifact.model_hash,
        "raypz.version": raypz.__version__,
        "raypz.run_config": json.dumps({"input": input_path, **config.to_dict()}),
        "raypz.created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _remove_tree(path: str) -> None:
    fs, inner = io.resolve(path)
    if fs.get_file_info(inner).type.name == "Directory":
        fs.delete_dir(inner)
