"""Predict redshift PDFs for an object table and write a HATS-partitioned PDF catalog.

Examples:
    python jobs/infer_lsst.py --input sim/wide --model models/ens --output out/photoz
    ray job submit --working-dir . -- python jobs/infer_lsst.py \\
        --input s3://bucket/dr1/object/ --model s3://bucket/models/ens-v3 --output s3://bucket/dr1/photoz/

Without RAY_ADDRESS an embedded local Ray starts; under `ray job submit` the job joins the
cluster. Rerunning the same command after an interruption finishes the job without redoing
finished input files and without duplicating rows. A summary (rows in/out, rows flagged by
reason, rows/s, catalog bytes per object) is printed and written, with the PDF bytes per object, to
OUTPUT/raypz_run_summary.json.
The summary also counts the rows this run predicted per node and per device. Predictor
actors form an elastic pool: it starts with what the cluster's nodes hold and grows, up to
--max-actors, as nodes join (an autoscaler's), unless --concurrency fixes its size.
The catalog opens with lsdb.open_catalog(OUTPUT); PDFs decode with raypz.predictions.
Image models (model.json "kind": "image") also read the cutout column named in model.json from
the same shards, or, with --cutouts, from a cutout store beside the object table (Parquet or
FITS cutout files of the same relative names, joined on objectId file by file), in batches
sized by --image-batch-mb; rows without a usable cutout are kept and flagged no_cutout +
no_pdf, and cutouts without an object row are counted in the summary.

    python jobs/infer_lsst.py --input sim/objects --cutouts sim/cutouts --model models/cnn \\
        --output out/photoz
"""

from __future__ import annotations

import argparse
import sys

from raypz import io
from raypz.cli import ConfigFlags, add_ray_flags, output_path
from raypz.infer import SUMMARY_FILE, InferConfig, InferenceSummary, run_inference
from raypz.job_errors import run_job, usage_errors
from raypz.progress import summary_table
from raypz.ray_runtime import init_ray

INFER = ConfigFlags(InferConfig)
"""One flag per InferConfig field."""


def build_parser() -> argparse.ArgumentParser:
    """The job's parser: its paths, then InferConfig's fields."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--input",
        required=True,
        help="object table: Parquet or FITS file/dir, or HATS catalog (local or s3://)",
    )
    p.add_argument(
        "--cutouts",
        default=None,
        help="image models: cutout store co-partitioned with --input (Parquet or FITS cutout "
        "files named as the input's files; local or s3://), joined on objectId; default: "
        "the input's cutout column",
    )
    p.add_argument("--model", required=True, help="model artifact directory (local or s3://)")
    p.add_argument(
        "--output",
        type=output_path,
        required=True,
        help="catalog root to write (local or s3://)",
    )
    add_ray_flags(p)
    INFER.add_to(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line."""
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> InferConfig:
    """The InferConfig the flags describe; UsageError when it breaks InferConfig's rules."""
    with usage_errors():
        return INFER.build(args)


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    config = config_from_args(args)
    io.require_exists(args.input, args.model, args.cutouts)
    init_ray(num_cpus=args.num_cpus, verbose=args.verbose)
    summary = run_inference(args.input, args.model, args.output, config, args.cutouts)
    print(inference_summary(summary))
    return 0


def inference_summary(summary: InferenceSummary) -> str:
    """The job's closing table (the whole summary is in OUTPUT/raypz_run_summary.json)."""
    flagged = ", ".join(f"{k} {v}" for k, v in summary.flagged.items() if v) or "none"
    rows: list[tuple[str, object]] = [
        ("catalog", summary.output),
        ("model", summary.model_id),
        ("rows in / out", f"{summary.rows_in} / {summary.rows_out}"),
        ("rows flagged", flagged),
        ("input files done / skipped", f"{summary.sources} / {summary.sources_skipped}"),
        ("partitions (merged now)", f"{summary.partitions} ({summary.partitions_merged})"),
        ("wall time", f"{summary.seconds:.1f} s ({summary.rows_per_second:.0f} rows/s)"),
        ("catalog bytes per object", summary.catalog_bytes_per_object),
        *_cutout_rows(summary.cutouts),
        ("summary", io.join(summary.output, SUMMARY_FILE)),
    ]
    return summary_table(rows, "inference done:")


def _cutout_rows(counts: dict) -> list[tuple[str, object]]:
    """Summary lines of a cutout-store join (none without one)."""
    if not counts:
        return []
    return [
        ("cutouts joined", f"{counts['matched']} of {counts['objects']} rows ({counts['store']})"),
        ("rows the store has no cutout for", counts["without_cutout"]),
        ("cutouts without object", counts["cutouts_without_object"]),
    ]


if __name__ == "__main__":
    sys.exit(run_job(main))
