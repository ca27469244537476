"""Paths that may be local or URIs (``s3://``, ``file://``), resolved to pyarrow filesystems.

Credentials come from the standard AWS environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``,
...) through pyarrow's S3 filesystem; they are never logged or written anywhere by raypz.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path_inside_it)`` for a local path or a URI.

    ``s3://bucket/key`` uses pyarrow's S3 filesystem configured from the environment; an
    ``AWS_ENDPOINT_URL`` (e.g. a loopback S3 server) is honoured. Local paths are made absolute.
    An empty path is a ``ValueError``: as a local path it would name the current directory,
    which a job would then write into.
    """
    if "://" not in _not_empty(path):
        return pafs.LocalFileSystem(), os.path.abspath(path)
    if path.startswith("s3://"):
        return _s3_filesystem(), path[len("s3://") :].rstrip("/")
    fs, inner = pafs.FileSystem.from_uri(path)
    return fs, inner


def absolute(path: str) -> str:
    """A local path made absolute; a URI as it is. Paths that Ray workers open must be: a
    worker keeps the working directory it started in, which need not be the driver's (a
    driver run with RAY_ADDRESS beside `ray start` nodes)."""
    return path if "://" in _not_empty(path) else os.path.abspath(path)


def uri(root: str, inner: str) -> str:
    """``inner``, a path inside the filesystem of ``root`` (as :func:`list_files` names files),
    written as a user writes it: with ``root``'s scheme (``s3://bucket/key``, where pyarrow
    says ``bucket/key``, which reads as a local relative path). Local paths stay as they are."""
    if "://" not in root:
        return inner
    scheme = root.split("://", 1)[0]
    return inner if inner.startswith(f"{scheme}://") else f"{scheme}://{inner}"


def is_inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies under it (both as given: absolute paths or URIs),
    e.g. an output inside the input a rerun would read."""
    return f"{path.rstrip('/')}/".startswith(f"{root.rstrip('/')}/")


def _not_empty(path: str) -> str:
    if not path.strip():
        raise ValueError(f"{path!r}: an empty path; give a file or directory (local or s3://)")
    return path


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    kwargs: dict = {}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs = {"endpoint_override": host or scheme, "scheme": scheme if host else "https"}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    # Delayed open: an object smaller than one upload part (10 MB) is sent as a single PUT,
    # not as a multipart upload (fewer requests; moto 5.2.1 fails multipart completion).
    return pafs.S3FileSystem(allow_delayed_open=True, **kwargs)


def join(base: str, *parts: str) -> str:
    """Join path parts with '/', keeping a URI scheme intact (``s3://b/k`` + ``x`` -> ``s3://b/k/x``)."""
    if "://" in base:
        scheme, _, rest = base.partition("://")
        return f"{scheme}://{posixpath.join(rest, *parts)}"
    return os.path.join(base, *parts)


def makedirs(path: str) -> None:
    """Create a directory (and parents) on whichever filesystem ``path`` lives."""
    fs, inner = resolve(path)
    fs.create_dir(inner, recursive=True)


LEASE_FILE = "_lease.json"
"""The lease a running job holds on the output it writes (:mod:`raypz.lease`); it belongs to
no run's content, so :func:`require_empty` ignores it."""

CUTOUT_STORE_MARKER = "_cutout_store.json"
"""File that marks a directory as a cutout store (:mod:`raypz.cutout_store`): listing a table
that contains one (``jobs/simulate_survey.py`` writes its cutouts to ``OUTPUT/cutouts/``)
skips it, so cutout files are never read as object rows."""


def list_parquet_files(path: str) -> list[str]:
    """Sorted paths (inside the filesystem of ``path``) of the ``.parquet`` files under ``path``
    (see :func:`list_files`)."""
    return list_files(path, (".parquet",))


def list_files(path: str, suffixes: tuple[str, ...]) -> list[str]:
    """Sorted paths (inside the filesystem of ``path``) of the files under ``path`` whose
    names end with one of ``suffixes`` (case-insensitive).

    ``path`` may be one file or a directory searched recursively (a path ending in "/" always
    names a directory, as on an object store where a key may share a prefix's name); hidden
    and ``_``-prefixed files (``_metadata``, ``_SUCCESS``, staging files) are skipped. In a
    HATS catalog (a directory with ``properties`` or ``hats.properties``) only ``dataset/``
    holds rows: the root's ``data_thumbnail.parquet`` and ``per_partition_statistics.parquet``
    are skipped. Subdirectories marked as cutout stores (:data:`CUTOUT_STORE_MARKER`) are
    skipped too.
    """
    fs, inner = resolve(path)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise _not_found(path)
    # "s3://b/t/" names the prefix even when an object "b/t" exists beside it
    if info.type == pafs.FileType.File and not path.endswith("/"):
        return [inner]
    inner = _hats_primary_table(fs, inner)
    markers = [posixpath.join(inner, name) for name in ("properties", "hats.properties")]
    if any(m.type == pafs.FileType.File for m in fs.get_file_info(markers)):
        inner = posixpath.join(inner, "dataset")
    listing = [
        f.path
        for f in fs.get_file_info(pafs.FileSelector(inner, recursive=True))
        if f.type == pafs.FileType.File
    ]
    stores = tuple(
        posixpath.dirname(p) + "/"
        for p in listing
        if posixpath.basename(p) == CUTOUT_STORE_MARKER and posixpath.dirname(p) != inner
    )
    files = [
        p
        for p in listing
        if p.lower().endswith(suffixes)
        and not p.startswith(stores)
        and not any(part.startswith((".", "_")) for part in p[len(inner) :].split("/") if part)
    ]
    return sorted(files)


def _hats_primary_table(fs: pafs.FileSystem, inner: str) -> str:
    """The catalog directory of a HATS collection (a directory with ``collection.properties``,
    what ``lsdb``'s ``write_catalog`` writes by default and LINCC serves Rubin data previews
    as): its ``hats_primary_table_url``, so that margin caches (rows repeated from neighbouring
    partitions) and the catalog's ``point_map.fits`` / ``skymap.fits`` are never read as
    object rows. Any other directory is returned unchanged."""
    marker = posixpath.join(inner, "collection.properties")
    if fs.get_file_info(marker).type != pafs.FileType.File:
        return inner
    with fs.open_input_stream(marker) as f:
        lines = f.read().decode().splitlines()
    props = dict(
        (key.strip(), value.strip())
        for key, sep, value in (line.partition("=") for line in lines)
        if sep and not key.lstrip().startswith("#")
    )
    table = props.get("hats_primary_table_url")
    if not table or "://" in table:
        raise ValueError(
            f"{inner}: HATS collection without a relative hats_primary_table_url"
            f" ({table!r}); give the catalog directory itself as the input"
        )
    return posixpath.normpath(posixpath.join(inner, table))


def require_empty(path: str, job: str, ours: tuple[str, ...] = ()) -> None:
    """Refuse an output ``path`` that holds anything but names matching ``ours`` (shell
    patterns, directly under it), before ``job`` writes there: files of another kind or run
    would be overwritten one by one, or mixed with this job's. A path that does not exist yet
    is empty."""
    fs, inner = resolve(path)
    if fs.get_file_info(inner).type == pafs.FileType.File:
        raise FileExistsError(f"{path}: a file; {job} writes a directory there")
    entries = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    ours = (*ours, LEASE_FILE, f".{LEASE_FILE}.tmp-*")  # and a heartbeat being written
    found = sorted(e.base_name for e in entries if not any(fnmatch(e.base_name, p) for p in ours))
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise FileExistsError(
            f"{path}: not empty ({shown}), and no {job} of these inputs and settings started "
            "there; choose a new output or an empty directory"
        )


def is_file(path: str) -> bool:
    """True when ``path`` (local or URI) is an existing file."""
    fs, inner = resolve(path)
    return fs.get_file_info(inner).type == pafs.FileType.File


def require_exists(*paths: str | None) -> None:
    """Raise FileNotFoundError for the first of ``paths`` (local or URIs; None, a flag not
    given, is skipped) that names no file or directory. Jobs check their inputs so before they
    start or join Ray: a mistyped path then fails in a second, not after Ray's start-up."""
    for path in paths:
        if path is not None:
            fs, inner = resolve(path)
            if fs.get_file_info(inner).type == pafs.FileType.NotFound:
                raise _not_found(path)


def _not_found(path: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path}: no such file or directory")


def read_bytes(path: str) -> bytes:
    """The whole content of one (small) file, local or URI."""
    fs, inner = resolve(path)
    with fs.open_input_stream(inner) as f:
        return f.read()


def write_bytes_atomic(path: str, data: bytes | pa.Buffer) -> None:
    """Write a file whole so that readers never see it half-written (``data``: bytes or an Arrow
    buffer)."""
    with atomic_output(path) as f:
        f.write(data)


def write_json(path: str, value: object) -> None:
    """Write ``value`` as strict JSON (NaN and infinities become null: JSON has no NaN, and
    readers other than Python's refuse it), indented, whole (:func:`write_bytes_atomic`)."""
    text = json.dumps(_finite(value), indent=2, allow_nan=False)
    write_bytes_atomic(path, text.encode())


def _finite(value):
    """``value`` with NaN/inf floats replaced by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_parquet(table: pa.Table, path: str) -> None:
    """Write ``table`` as one Parquet file (local or URI) that appears whole
    (:func:`atomic_output`), replacing an earlier one."""
    with atomic_output(path) as f:
        pq.write_table(table, f)


@contextmanager
def atomic_output(path: str) -> Iterator[pa.NativeFile]:
    """An output stream for ``path`` whose file appears whole, and only if the block finishes
    without an error.

    Local files (also shared filesystems on HPC) stream to a hidden temporary name, renamed at
    the end, so a large file is never held in memory. On object stores the bytes are gathered
    in memory and sent as one PUT, which becomes visible atomically.
    """
    fs, inner = resolve(path)
    parent = posixpath.dirname(inner)
    if parent:
        fs.create_dir(parent, recursive=True)
    if not isinstance(fs, pafs.LocalFileSystem):
        sink = pa.BufferOutputStream()
        yield sink
        with fs.open_output_stream(inner) as f:
            f.write(sink.getvalue())
        return
    # Hidden name (dataset readers skip "." files), unique across processes and hosts.
    tmp = posixpath.join(parent, f".{posixpath.basename(inner)}.tmp-{uuid.uuid4().hex}")
    try:
        with fs.open_output_stream(tmp) as f:
            yield f
        os.replace(tmp, inner)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
