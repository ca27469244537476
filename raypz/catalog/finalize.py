"""Commit a HATS catalog once its partition files are written: metadata files, then properties.

hats 0.11 opens a catalog from ``properties`` (or ``hats.properties``), ``partition_info.csv``
and ``dataset/_common_metadata`` (or ``_metadata``) for the schema; ``skymap.fits`` is optional
and ``point_map.fits`` (deprecated) only feeds a MOC. ``properties`` is written last, so a
catalog whose finalisation died is not openable rather than wrong.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import raypz
from raypz import io
from raypz.catalog.healpix import HEALPIX29_COLUMN, HEALPIX29_ORDER
from raypz.catalog.layout import DATASET_DIR, parse_partition_path
from raypz.catalog.plan import PartitionPlan
from raypz.schema.errors import RefusedError
from raypz.tables import map_files


@dataclass(frozen=True)
class CatalogSummary:
    """What :func:`finalize_catalog` committed.

    Attributes:
        root: the catalog root.
        partitions: number of partition files.
        rows: total rows (``hats_nrows``).
        max_rows: rows in the fullest partition (``hats_max_rows``).
    """

    root: str
    partitions: int
    rows: int
    max_rows: int


@dataclass(frozen=True)
class _PartitionFile:
    norder: int
    npix: int
    path: str  # inside the filesystem
    relative: str  # to the dataset directory, as _metadata records it
    size: int  # bytes


def finalize_catalog(
    root: str,
    catalog_name: str,
    ra_col: str,
    dec_col: str,
    extra_properties: Mapping[str, object] | None = None,
    *,
    plan: PartitionPlan | None = None,
) -> CatalogSummary:
    """Write the catalog-level files of a HATS catalog whose partition files are in place.

    Writes ``partition_info.csv``, ``dataset/_metadata`` (every partition's row-group footers,
    so readers can plan without opening each file), ``dataset/_common_metadata`` (the schema
    and the partitions' Parquet key-value metadata), ``skymap.fits`` when a plan is given, and
    last ``properties`` / ``hats.properties``.

    Args:
        root: catalog root, a local path or a URI.
        catalog_name: ``obs_collection``, the catalog's name in lsdb.
        ra_col: name of the right-ascension column (degrees), ``hats_col_ra``.
        dec_col: name of the declination column (degrees), ``hats_col_dec``.
        extra_properties: further properties, keyed as in the ``properties`` file
            (``obs_description``, ``hats_cols_default``, provenance keys ...); they override
            the computed ones.
        plan: the plan the partitions were written from; when given, every planned partition
            must exist with its planned row count (no lost or duplicated rows) and its
            histogram becomes ``skymap.fits``.

    Raises:
        ValueError: no partition files, a stray file in ``dataset/``, partitions whose
            schemas differ, or partitions that disagree with ``plan``.
    """
    # hats takes 1.6 s to import: only the driver, which finalises, pays for it
    import hats
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io.skymap import write_skymap
    from hats.pixel_math import HealpixPixel

    files = _partition_files(root)
    fs, _ = io.resolve(root)
    # concurrently: on object stores each footer read is a round trip
    footers = map_files(lambda f: pq.read_metadata(f.path, filesystem=fs), files, opens_fits=False)
    rows = [footer.num_rows for footer in footers]
    if plan is not None:
        _check_against_plan(files, rows, plan)

    schema = footers[0].schema.to_arrow_schema()
    dataset = io.join(root, DATASET_DIR)
    io.write_bytes_atomic(io.join(dataset, "_common_metadata"), _schema_file(schema))
    io.write_bytes_atomic(io.join(dataset, "_metadata"), _combined_footers(files, footers))

    pixels = [HealpixPixel(f.norder, f.npix) for f in files]
    computed = {
        "obs_collection": catalog_name,
        "dataproduct_type": "object",
        "hats_col_ra": ra_col,
        "hats_col_dec": dec_col,
        "hats_nrows": sum(rows),
        "hats_col_healpix": HEALPIX29_COLUMN,
        "hats_col_healpix_order": HEALPIX29_ORDER,
        "hats_max_rows": max(rows),
        "hats_order": max(f.norder for f in files),
        "moc_sky_fraction": float(f"{PartitionInfo(pixels).calculate_fractional_coverage():.5g}"),
        "hats_skymap_order": plan.histogram.order if plan is not None else None,
        "hats_estsize": sum(f.size for f in files) // 1024,  # KiB
        "hats_builder": f"raypz v{raypz.__version__}, hats v{hats.__version__}",
        "hats_creation_date": datetime.now(tz=timezone.utc).strftime("%Y-%m-%dT%H:%M%Z"),
        "hats_version": "v1.0",
    }
    properties = TableProperties(**(computed | dict(extra_properties or {})))
    with tempfile.TemporaryDirectory() as tmp:
        PartitionInfo(pixels).write_to_file(catalog_path=tmp)
        rendered = ["partition_info.csv"]
        if plan is not None:
            write_skymap(plan.histogram.to_dense(), tmp)
            rendered.append("skymap.fits")
        properties.to_properties_file(tmp)
        rendered += ["hats.properties", "properties"]  # the commit point comes last
        for name in rendered:
            io.write_bytes_atomic(io.join(root, name), (Path(tmp) / name).read_bytes())
    return CatalogSummary(root=root, partitions=len(files), rows=sum(rows), max_rows=max(rows))


def _partition_files(root: str) -> list[_PartitionFile]:
    """Partition files under ``root/dataset``, in hats' order (by first ``_healpix_29``)."""
    fs, inner = io.resolve(io.join(root, DATASET_DIR))
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        raise ValueError(f"{root}: no {DATASET_DIR}/ directory; write partitions first")
    files = []
    for info in fs.get_file_info(pafs.FileSelector(inner, recursive=True)):
        relative = info.path[len(inner) :].lstrip("/")
        if info.type != pafs.FileType.File or info.base_name.startswith((".", "_")):
            continue  # directories, temporary files of unfinished writes, _metadata
        pixel = parse_partition_path(relative)
        if pixel is None:
            raise ValueError(f"{info.path}: not a partition file (Norder=K/Dir=D/Npix=N.parquet)")
        files.append(_PartitionFile(pixel[0], pixel[1], info.path, relative, info.size))
    if not files:
        raise ValueError(f"{root}: no partition files under {DATASET_DIR}/")
    start = [f.npix << 2 * (HEALPIX29_ORDER - f.norder) for f in files]
    return [files[i] for i in np.argsort(start, kind="stable")]


def _check_against_plan(files: list[_PartitionFile], rows: list[int], plan: PartitionPlan) -> None:
    found = {(f.norder, f.npix): n for f, n in zip(files, rows, strict=True)}
    planned = dict(zip(plan.pixels(), (int(n) for n in plan.nrows), strict=True))
    problems = [
        f"Norder={k}, Npix={n}: {found[k, n]} rows, planned {want}"
        for (k, n), want in planned.items()
        if (k, n) in found and found[k, n] != want
    ]
    problems += [f"Norder={k}, Npix={n}: not planned" for k, n in found if (k, n) not in planned]
    problems += [f"Norder={k}, Npix={n}: missing" for k, n in planned if (k, n) not in found]
    if problems:
        more = f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
        fewer = any(k in found and found[k] < want for k, want in planned.items())
        hint = (
            "; merging keeps one row per (position, objectId), so an objectId repeated across"
            " input files gives fewer rows than planned (validate='full' names the files)"
            if fewer
            else ""
        )
        raise RefusedError(  # one line from a job: what went wrong and which validation names it
            f"partition files disagree with the plan: {'; '.join(problems[:5])}{more}{hint}"
        )


def _combined_footers(files: list[_PartitionFile], footers: list[pq.FileMetaData]) -> bytes:
    for f, footer in zip(files, footers, strict=True):
        footer.set_file_path(f.relative)
    combined = footers[0]
    for f, footer in zip(files[1:], footers[1:], strict=True):
        try:
            combined.append_row_groups(footer)
        except RuntimeError as err:
            raise ValueError(f"{f.path}: schema differs from {files[0].path}: {err}") from err
    sink = pa.BufferOutputStream()
    combined.write_metadata_file(sink)
    return sink.getvalue().to_pybytes()


def _schema_file(schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_metadata(schema, sink)
    return sink.getvalue().to_pybytes()
