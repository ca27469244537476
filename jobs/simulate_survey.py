"""Simulate an LSST-like galaxy survey and write it as Parquet shards (one Ray task per shard).

Examples:
    python jobs/simulate_survey.py --n-objects 100000 --seed 1 --output sim/wide
    python jobs/simulate_survey.py --n-objects 20000 --seed 2 --field deep --spec-selection \\
        --output sim/deep_spec
    python jobs/simulate_survey.py --n-objects 5000 --seed 3 --cutouts --epochs --output sim/img
    python jobs/simulate_survey.py --n-objects 5000 --seed 3 --cutouts --cutout-layout fits \\
        --output sim/objects --cutout-output sim/cutouts
    ray job submit --working-dir . -- python jobs/simulate_survey.py ... --output s3://b/sim/

Rows follow the object-table contract (objectId, coord_ra/coord_dec in degrees, ugrizy
cModelFlux/cModelFluxErr in nJy, redshift = the true redshift, field) plus truth columns. The
same flags give the same rows; rerunning into the same --output writes only missing shards.
See docs/simulation.md for the model.
"""

from __future__ import annotations

import argparse
import sys
import time

from raypz.cli import ConfigFlags, add_ray_flags, output_path
from raypz.job_errors import run_job, usage_errors
from raypz.ray_runtime import init_ray
from raypz.sim import FIELDS, SurveyConfig, simulate_survey

SURVEY = ConfigFlags(
    SurveyConfig,
    extra={
        "n_objects": {"required": True},
        "seed": {"required": True},
        "field": {"choices": sorted(FIELDS)},
    },
)
"""One flag per SurveyConfig field; the row count and the seed are always given."""


def build_parser() -> argparse.ArgumentParser:
    """The job's parser: the output, then SurveyConfig's fields."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--output", type=output_path, required=True, help="output directory (local or s3://)"
    )
    p.add_argument(
        "--cutout-output",
        type=output_path,
        default=None,
        help="cutout store for --cutout-layout shards/fits (local or s3://; default "
        "OUTPUT/cutouts); pass it to the train and infer jobs as --cutouts",
    )
    add_ray_flags(p)
    SURVEY.add_to(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line."""
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SurveyConfig:
    """The :class:`SurveyConfig` of the parsed flags (ValueError when it breaks its rules)."""
    return SURVEY.build(args)


def main(argv: list[str] | None = None) -> int:
    """Run the simulation and print a one-line summary."""
    args = parse_args(argv)
    with usage_errors():
        config = config_from_args(args)
    init_ray(num_cpus=args.num_cpus, verbose=args.verbose)
    start = time.perf_counter()
    paths = simulate_survey(config, args.output, args.cutout_output)
    seconds = time.perf_counter() - start
    print(
        f"simulated {config.n_objects} rows ({config.field}, {config.depth}) in "
        f"{len(paths)} shards under {args.output} in {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
