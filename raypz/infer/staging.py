"""Bookkeeping that makes an inference run restartable and exactly-once.

The unit of work is an input file ("source"). Every staged fragment is named after its
source (``src000012-<uuid>``). A source is finished when its fragments hold as many distinct
objectIds as its Parquet footer has rows; a rerun skips finished sources, deletes the
fragments of unfinished ones and processes those again. Merging deduplicates by objectId,
so a block retried by Ray (a killed actor) cannot duplicate rows either. Partitions already
merged are remembered by markers and not merged again unless a rerun staged new rows for them.
The first-pass histogram is kept so a rerun plans exactly the same partitions.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypz import io
from raypz.catalog import PixelHistogram
from raypz.catalog.layout import STAGING_DIR
from raypz.tables import map_files

_FRAGMENT = re.compile(r"^src(\d+)-")


def staging_root(output: str) -> str:
    """Where fragments and bookkeeping of a run under ``output`` live."""
    return io.join(output, STAGING_DIR)


def fragment_id(source: int, unique: str) -> str:
    """File stem of a fragment of input file number ``source``."""
    return f"src{source:06d}-{unique}"


def input_fingerprint(files: list[str], fs: pafs.FileSystem, salt: str) -> str:
    """Hash of the input file list, their sizes and ``salt`` (what else the staged rows depend
    on: the model, cutouts, partitioning settings): a rerun must match it."""
    # in threads: pyarrow stats a list one path at a time (a HEAD each on S3)
    infos = map_files(fs.get_file_info, files, opens_fits=False)
    blob = json.dumps([[f.path, f.size] for f in infos] + [salt]).encode()
    return hashlib.sha256(blob).hexdigest()


def save_histogram(root: str, histogram: PixelHistogram, fingerprint: str) -> None:
    """Persist the first-pass histogram next to the fragments."""
    table = pa.table({"pixel": histogram.pixels, "count": histogram.counts})
    meta = {b"order": str(histogram.order).encode(), b"fingerprint": fingerprint.encode()}
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink)
    io.write_bytes_atomic(io.join(root, "_histogram.parquet"), sink.getvalue().to_pybytes())


def load_histogram(root: str, fingerprint: str) -> PixelHistogram | None:
    """The histogram of an earlier run over the same inputs and model, if there is one."""
    path = io.join(root, "_histogram.parquet")
    if not io.is_file(path):
        return None
    fs, inner = io.resolve(path)
    table = pq.read_table(inner, filesystem=fs)
    meta = table.schema.metadata or {}
    if meta.get(b"fingerprint", b"").decode() != fingerprint:
        raise FileExistsError(
            f"{path}: staging from a run over other inputs, another model or other "
            "partitioning settings (InferConfig's --max-rows-per-partition, --histogram-order); "
            "use a new output or delete it"
        )
    order = int(meta[b"order"])
    return PixelHistogram(order, table["pixel"].to_numpy(), table["count"].to_numpy())


def fragments_by_source(root: str) -> dict[int, list[str]]:
    """Staged fragment paths grouped by input file number."""
    fs, inner = io.resolve(root)
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        return {}
    out: dict[int, list[str]] = {}
    for path in io.list_parquet_files(root):
        m = _FRAGMENT.match(posixpath.basename(path))
        if m:
            out.setdefault(int(m.group(1)), []).append(path)
    return out


def finished_sources(
    root: str, expected_rows: list[int], id_column: str
) -> tuple[set[int], list[str]]:
    """Sources whose rows are all staged, and the fragments of the others (to delete).

    A source is done when its fragments hold its rows' objectIds exactly (a block staged twice
    by a retry holds some twice). The fragments' ids are read source by source in threads:
    one at a time, a rerun of a survey-size run read ~1e6 fragments serially from the driver.
    """
    fs, _ = io.resolve(root)
    groups = list(fragments_by_source(root).items())

    def complete(group: tuple[int, list[str]]) -> bool:
        source, paths = group
        if source >= len(expected_rows):
            return False
        ids = np.concatenate(
            [
                pq.read_table(p, columns=[id_column], filesystem=fs)[id_column].to_numpy()
                for p in paths
            ]
        )
        return len(np.unique(ids)) == expected_rows[source]

    done, stale = set(), []
    for (source, paths), ok in zip(
        groups, map_files(complete, groups, opens_fits=False), strict=True
    ):
        if ok:
            done.add(source)
        else:
            stale.extend(paths)
    return done, stale


def delete(paths: list[str], root: str) -> None:
    """Remove files (fragments of unfinished sources, markers) under ``root``'s filesystem."""
    fs, _ = io.resolve(root)
    map_files(fs.delete_file, paths, opens_fits=False)


def merged_marker(root: str, norder: int, npix: int) -> str:
    """Marker file saying partition (norder, npix) was merged from the current fragments."""
    return io.join(root, "_merged", f"{norder}-{npix}")
