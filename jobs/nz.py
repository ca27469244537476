"""n(z) of a whole PDF catalog: its PDFs stacked per tomographic bin of a point estimate.

Examples:
    python jobs/nz.py --catalog out/photoz --bins 0 0.3 0.6 0.9 1.2 1.5 2 3 --output nz/
    ray job submit --working-dir . -- python jobs/nz.py --catalog s3://bucket/dr1/photoz/ \\
        --output s3://bucket/dr1/nz/ --scheduler ray

Each HATS partition of the catalog (the output of jobs/infer_lsst.py) is read and reduced to
per-bin sums in its own dask task, then the sums are added up in a tree: memory stays that of a
few partitions whatever the catalog's size. Per bin, n(z) is the mean of the rows' PDFs on the
catalog's z grid (raypz.metrics.nz's definition); rows without a PDF (flag no_pdf) and rows
whose point estimate falls outside the bins are left out and counted. --scheduler ray runs the
tasks on Ray (Dask-on-Ray): on the cluster named by RAY_ADDRESS, else on a local Ray.

Writes OUTPUT/nz.parquet (one row per bin: bin, z_lo, z_hi, count, mean_z, nz on the grid; the
grid in the schema metadata under raypz.z_grid) and OUTPUT/nz.png, then prints a summary.
"""

from __future__ import annotations

import argparse
import sys

from raypz import io
from raypz.cli import ConfigFlags, add_ray_flags, output_path
from raypz.job_errors import UsageError, run_job, usage_errors
from raypz.metrics.catalog_nz import NZConfig, catalog_nz
from raypz.metrics.nz_file import summary_rows, write_nz
from raypz.pdf import POINT_ESTIMATES
from raypz.progress import summary_table
from raypz.ray_runtime import init_ray

NZ = ConfigFlags(
    NZConfig,
    names={"edges": "bins"},
    extra={"edges": {"metavar": "EDGE"}, "point_estimate": {"choices": POINT_ESTIMATES}},
)
"""One flag per NZConfig field (``edges`` is ``--bins``)."""


def build_parser() -> argparse.ArgumentParser:
    """The job's parser: its paths, then NZConfig's fields, then Ray's (for --scheduler ray)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--catalog", required=True, help="HATS PDF catalog root (local or s3://)")
    p.add_argument(
        "--output",
        type=output_path,
        required=True,
        help="directory for nz.parquet and nz.png (local or s3://)",
    )
    NZ.add_to(p)
    add_ray_flags(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line."""
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> NZConfig:
    """The NZConfig the flags describe; UsageError when it breaks NZConfig's rules, or when
    Ray's flags are given to a scheduler that starts no Ray."""
    with usage_errors():
        config = NZ.build(args)
    if config.scheduler != "ray" and (args.num_cpus is not None or args.verbose):
        raise UsageError(
            "--num-cpus and --verbose set the Ray of --scheduler ray; the "
            f"{config.scheduler} scheduler runs no Ray (its pool: --workers)"
        )
    return config


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    config = config_from_args(args)
    io.require_exists(args.catalog)
    if config.scheduler == "ray":
        init_ray(num_cpus=args.num_cpus, verbose=args.verbose)
    result = catalog_nz(args.catalog, config)
    table_path, plot_path = write_nz(result, args.output)
    rows = [*summary_rows(result), ("wrote", f"{table_path}, {plot_path}")]
    print(summary_table(rows, "n(z) done:"))
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
