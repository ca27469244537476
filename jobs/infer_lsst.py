"""Predict redshift PDFs for an object table and write a HATS-partitioned PDF catalog.

Examples:
    python jobs/infer_lsst.py --input sim/wide --model models/ens --output out/photoz
    ray job submit --working-dir . -- python jobs/infer_lsst.py \\
        --input s3://bucket/dr1/object/ --model s3://bucket/models/ens-v3 --output s3://bucket/dr1/photoz/

Without RAY_ADDRESS an embedded local Ray starts; under `ray job submit` the job joins the
cluster. Rerunning the same command after an interruption finishes the job without redoing
finished input files and without duplicating rows. A summary (rows in/out, rows flagged by
reason, rows/s, PDF bytes per object) is printed and written to OUTPUT/raypz_run_summary.json.
The summary also counts the rows this run predicted per node and per device. Predictor
actors form an elastic pool: it starts with what the cluster's nodes hold and grows, up to
--max-actors, as nodes join (an autoscaler's), unless --concurrency fixes its size.
The catalog opens with lsdb.open_catalog(OUTPUT); PDFs decode with raypz.predictions.
Image models (model.json "kind": "image") also read the cutout column named in model.json from
the same shards, in batches sized by --image-batch-mb; rows without a usable cutout are kept
and flagged no_cutout + no_pdf.
"""

from __future__ import annotations

import argparse
import json
import sys

from raypz.infer import InferConfig, run_inference
from raypz.ray_runtime import init_ray


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; defaults come from InferConfig."""
    d = InferConfig()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--input",
        required=True,
        help="object table: Parquet file/dir or HATS catalog (local or s3://)",
    )
    p.add_argument("--model", required=True, help="model artifact directory (local or s3://)")
    p.add_argument("--output", required=True, help="catalog root to write (local or s3://)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="rows per predictor call (default: for a catalog model 16384 on CPUs, 65536 on "
        "GPUs; for an image model the rows that hold --image-batch-mb of cutouts)",
    )
    p.add_argument(
        "--image-batch-mb",
        type=int,
        default=d.image_batch_mb,
        help="cutout MB per predictor call when --batch-size is not given (default: 64 on CPUs, "
        "384 on GPUs)",
    )
    p.add_argument(
        "--calls-per-gpu-actor",
        type=int,
        default=d.calls_per_gpu_actor,
        help="batches a GPU actor works on at once, each in its own thread and with its own "
        "CPU, so host work overlaps device work (default "
        f"{d.calls_per_gpu_actor}; CPU actors take one at a time)",
    )
    pool = p.add_mutually_exclusive_group()
    pool.add_argument(
        "--concurrency",
        type=int,
        help="a fixed pool of N predictor actors (default: an elastic pool, see --max-actors)",
    )
    pool.add_argument(
        "--max-actors",
        type=int,
        help="most actors of the elastic pool, which starts with what the nodes hold and "
        "grows as nodes join (default: no bound but the cluster's size)",
    )
    p.add_argument(
        "--gpus-per-actor", type=float, help="GPUs per actor (default: 1 if the cluster has GPUs)"
    )
    p.add_argument(
        "--cpus-per-actor",
        type=float,
        help="CPUs per actor (default: --calls-per-gpu-actor for a GPU actor, 0.75 for a CPU "
        "actor)",
    )
    p.add_argument(
        "--max-rows-per-partition",
        type=int,
        default=d.max_rows_per_partition,
        help="most rows per HATS partition",
    )
    p.add_argument(
        "--zstd-level",
        type=int,
        default=d.zstd_level,
        help="zstd level of the partition files (hats uses 15: ~5%% smaller, 7x the CPU time)",
    )
    p.add_argument(
        "--histogram-order",
        type=int,
        default=d.histogram_order,
        help="HEALPix order of the planning histogram",
    )
    p.add_argument(
        "--catalog-name", default=d.catalog_name, help="catalog name (obs_collection) seen by lsdb"
    )
    p.add_argument(
        "--validate",
        choices=["full", "schema"],
        default=d.validate,
        help="input checks before work: full or footers only",
    )
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument(
        "--target-block-mb", type=int, default=d.target_block_mb, help="Ray Data block size (MiB)"
    )
    p.add_argument(
        "--object-store-mb-per-actor",
        type=int,
        default=d.object_store_mb_per_actor,
        help="Ray Data object-store budget for blocks in flight, per predictor actor (MiB)",
    )
    p.add_argument(
        "--keep-staging", action="store_true", help="keep staging fragments after success"
    )
    p.add_argument(
        "--num-cpus", type=int, help="CPUs of an embedded local Ray (ignored on a cluster)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    a = parse_args(argv)
    config = InferConfig(
        batch_size=a.batch_size,
        image_batch_mb=a.image_batch_mb,
        calls_per_gpu_actor=a.calls_per_gpu_actor,
        concurrency=a.concurrency,
        max_actors=a.max_actors,
        gpus_per_actor=a.gpus_per_actor,
        cpus_per_actor=a.cpus_per_actor,
        max_rows_per_partition=a.max_rows_per_partition,
        zstd_level=a.zstd_level,
        histogram_order=a.histogram_order,
        catalog_name=a.catalog_name,
        validate=a.validate,
        device=a.device,
        target_block_mb=a.target_block_mb,
        object_store_mb_per_actor=a.object_store_mb_per_actor,
        keep_staging=a.keep_staging,
    )
    init_ray(num_cpus=a.num_cpus)
    summary = run_inference(a.input, a.model, a.output, config)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
