"""Configuration of a catalog inference run (the CLI parses into it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from raypz.catalog.write import ZSTD_LEVEL
from raypz.config_rules import require_finite

CATALOG_BATCH_ROWS = 16384
"""Default rows per predictor call of a catalog model on a CPU."""
CATALOG_BATCH_ROWS_GPU = 65536
"""Default rows per predictor call of a catalog model on a GPU: 1.13M objects/s against 0.85M
at 16384 (5-member ensemble, H200, 2 calls at a time; 131072 rows were slower; see
docs/production.md)."""
IMAGE_BATCH_MB = 64
"""Default cutout megabytes per predictor call of an image model on a CPU."""
IMAGE_BATCH_MB_GPU = 384
"""Default cutout megabytes per predictor call on a GPU: 16384 cutouts of 6 x 32 x 32 (146k
cutouts/s; 65536 gave 134k/s and 131072 77-81k/s, H200)."""


@dataclass(frozen=True)
class InferConfig:
    """How to run inference over an object table.

    Attributes:
        batch_size: rows per predictor call (per actor); larger amortises Python overhead.
            None: for a catalog model 16384 rows on CPUs, 65536 on GPUs; for an image model,
            as many rows as hold ``image_batch_mb`` of cutouts (the ensemble then runs them in
            device-sized chunks).
        image_batch_mb: cutout megabytes per predictor call when ``batch_size`` is None; None:
            64 on CPUs, 384 on GPUs.
        calls_per_gpu_actor: predictor calls a GPU actor runs at once, each in its own thread
            and with its own CPU (the actor receives blocks of this many batches): one call's
            host work (features, Arrow, HEALPix index, staging writes) overlaps another's
            device work. The 5-member catalog ensemble on two H200 machines: 0.51-0.73M
            objects/s with 1, 0.75-1.13M with 2, 1.12-1.41M with 4 (the hosts' CPUs
            differed). CPU actors take one call at a time.
        concurrency: a fixed pool of this many predictor actors; None: an elastic pool
            (:mod:`raypz.infer.pool`) that starts with what the nodes hold and grows as nodes
            join, up to ``max_actors``.
        max_actors: most actors of the elastic pool; None: as many as the cluster holds as it
            grows (its size, e.g. the autoscaler's ``max_workers``, bounds the cost).
        gpus_per_actor: GPUs per actor; None: 1 when ``device`` is "cuda", or "auto" and the
            cluster has GPUs; else 0.
        cpus_per_actor: CPUs per actor; None: ``calls_per_gpu_actor`` with GPUs (at most what
            a GPU node has per GPU, less 0.25), else 0.75 (a fraction: a node keeps CPU for
            the read and staging tasks beside its actors, which avoids the starvation
            deadlock of actors that take every CPU).
        max_rows_per_partition: most rows in one HATS partition file (``hats_max_rows``).
        zstd_level: compression level of the partition files (6: within 5% of hats' level 15
            in size at a seventh of its CPU time; see ``raypz.catalog.write.ZSTD_LEVEL``).
        histogram_order: HEALPix order of the first-pass histogram that partitions are
            planned from (10: pixels of ~3.4 arcmin).
        catalog_name: the catalog's name (``obs_collection``) in lsdb.
        validate: "full" checks every file, column, type and unique objectId before work;
            "schema" checks only names and types from the footers (cheap at 1e10 rows), and
            the first pass each file's own objectIds (not repeats across files).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        target_block_mb: Ray Data's target block size; small blocks keep the stream moving
            and memory bounded.
        object_store_mb_per_actor: Ray Data's object-store budget for the run's blocks, per
            predictor actor (MB); it grows with the cluster (``pool.object_store_budget``).
            Without a budget Ray Data lets blocks fill up to half the object store, so peak
            memory grew with the input until that was full (1.38x from 1e6 to 1e7 rows on 2
            cores).
        keep_staging: keep the staging fragments after a successful run (debugging).
    """

    batch_size: int | None = None
    image_batch_mb: int | None = None
    calls_per_gpu_actor: int = 4
    concurrency: int | None = None
    max_actors: int | None = None
    gpus_per_actor: float | None = None
    cpus_per_actor: float | None = None
    max_rows_per_partition: int = 1_000_000
    zstd_level: int = ZSTD_LEVEL
    histogram_order: int = 10
    catalog_name: str = "raypz_photoz"
    validate: str = "full"
    device: str = "auto"
    target_block_mb: int = 16
    object_store_mb_per_actor: int = 256
    keep_staging: bool = False

    def __post_init__(self) -> None:
        require_finite(self)
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"InferConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"InferConfig.concurrency must be >= 1, got {self.concurrency}")
        if self.max_actors is not None and self.max_actors < 1:
            raise ValueError(f"InferConfig.max_actors must be >= 1, got {self.max_actors}")
        if self.max_actors is not None and self.concurrency is not None:
            raise ValueError(
                "InferConfig: give concurrency (a fixed pool) or max_actors (an elastic one)"
            )
        if self.calls_per_gpu_actor < 1:
            raise ValueError(
                f"InferConfig.calls_per_gpu_actor must be >= 1, got {self.calls_per_gpu_actor}"
            )
        if self.object_store_mb_per_actor < 1:
            raise ValueError("InferConfig.object_store_mb_per_actor must be >= 1")
        if self.max_rows_per_partition < 1:
            raise ValueError("InferConfig.max_rows_per_partition must be >= 1")
        if not 1 <= self.zstd_level <= 22:
            raise ValueError(f"InferConfig.zstd_level must be in 1-22, got {self.zstd_level}")
        if self.validate not in ("full", "schema"):
            raise ValueError(
                f"InferConfig.validate must be 'full' or 'schema', got {self.validate!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(
                f"InferConfig.device must be 'auto', 'cpu' or 'cuda', got {self.device!r}"
            )
        if self.target_block_mb < 1:
            raise ValueError(
                f"InferConfig.target_block_mb must be >= 1, got {self.target_block_mb}"
            )
        for name in ("image_batch_mb", "cpus_per_actor"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"InferConfig.{name} must be > 0, got {value}")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise ValueError(f"InferConfig.gpus_per_actor must be >= 0, got {self.gpus_per_actor}")

    def rows_per_batch(self, cutout_shape: tuple[int, ...] | None, on_gpu: bool = False) -> int:
        """Rows per predictor call for a model that reads cutouts of ``cutout_shape`` (float32)
        or none (None), on GPU or CPU actors."""
        if self.batch_size is not None:
            return self.batch_size
        if cutout_shape is None:
            return CATALOG_BATCH_ROWS_GPU if on_gpu else CATALOG_BATCH_ROWS
        megabytes = self.image_batch_mb or (IMAGE_BATCH_MB_GPU if on_gpu else IMAGE_BATCH_MB)
        row_bytes = 4 * int(np.prod(cutout_shape))
        return max(64, megabytes * 2**20 // row_bytes)

    def to_dict(self) -> dict:
        """JSON-ready form, stored in the catalog's provenance metadata."""
        return asdict(self)
