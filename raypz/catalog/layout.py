"""Where HATS files live under a catalog root (local path or URI).

The layout, as the HATS standard and hats 0.11 read it::

    root/properties                 (and hats.properties, the same content)
    root/partition_info.csv         Norder,Npix per partition
    root/skymap.fits                row counts per pixel (optional)
    root/dataset/_common_metadata   the schema and Parquet key-value metadata
    root/dataset/_metadata          the row-group footers of every partition file
    root/dataset/Norder=K/Dir=D/Npix=N.parquet    with D = 10000 * (N // 10000)

Staging fragments of a parallel write live outside ``dataset/`` (see :mod:`.write`).
"""

from __future__ import annotations

import posixpath
import re

import pyarrow.fs as pafs

from raypz import io

DATASET_DIR = "dataset"

_PARTITION_RE = re.compile(r"Norder=(\d+)/Dir=(\d+)/Npix=(\d+)\.parquet$")


def partition_directory(norder: int, npix: int) -> str:
    """``Norder=K/Dir=D``, relative to the dataset directory; ``D = 10000 * (npix // 10000)``."""
    return f"Norder={int(norder)}/Dir={10_000 * (int(npix) // 10_000)}"


def partition_path(root: str, norder: int, npix: int) -> str:
    """Path of the Parquet file of partition ``(norder, npix)`` under catalog ``root``."""
    name = f"Npix={int(npix)}.parquet"
    return io.join(root, DATASET_DIR, partition_directory(norder, npix), name)


def parse_partition_path(path: str) -> tuple[int, int] | None:
    """``(norder, npix)`` of a partition file path, or None for any other file.

    A file whose ``Dir`` does not match its ``Npix`` is not a partition file.
    """
    match = _PARTITION_RE.search(path)
    if match is None:
        return None
    norder, ndir, npix = (int(g) for g in match.groups())
    return (norder, npix) if ndir == 10_000 * (npix // 10_000) else None


PARTITION_INFO = "partition_info.csv"
"""The catalog's list of its partitions (``Norder,Npix`` rows)."""

STAGING_DIR = "_staging"
"""Where an inference run stages its fragments under the catalog root (:mod:`raypz.infer.staging`);
gone once the run finished (unless kept)."""


def missing_partitions(root: str) -> list[str]:
    """Partition files that the catalog's ``partition_info.csv`` lists and that do not exist:
    a finished catalog that lost files, which would be read, or scored, as if complete.
    FileNotFoundError when the listing itself is missing."""
    listing = io.join(root, PARTITION_INFO)
    lines = io.read_bytes(listing).decode().split()
    pixels = [(int(k), int(n)) for k, n in (line.split(",") for line in lines[1:])]
    fs, inner = io.resolve(root)
    # one recursive listing of dataset/ (paged on object stores), not a stat per partition
    dataset = io.join(inner, DATASET_DIR)
    selector = pafs.FileSelector(dataset, recursive=True, allow_not_found=True)
    present = {
        posixpath.normpath(info.path)
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
    }
    return [
        partition_path(root, k, n)
        for k, n in pixels
        if posixpath.normpath(partition_path(inner, k, n)) not in present
    ]


def require_complete(root: str, remedy: str, listing_required: bool = True) -> None:
    """Refuse a finished catalog that lost partition files (read, or scored, as if complete).

    Raises:
        FileNotFoundError: a file that ``partition_info.csv`` lists is gone, or, with
            ``listing_required`` (a raypz catalog, which always has one), the listing itself;
            the message names one missing file and ends with ``remedy``. Without
            ``listing_required`` a catalog without the listing (another writer's) passes.
    """
    try:
        missing = missing_partitions(root)
    except FileNotFoundError:
        if not listing_required:
            return
        missing = [io.join(root, PARTITION_INFO)]
    if missing:
        raise FileNotFoundError(
            f"{root}: a finished catalog that lacks {len(missing)} of the partition files its "
            f"{PARTITION_INFO} lists (e.g. {missing[0]}); {remedy}"
        )
