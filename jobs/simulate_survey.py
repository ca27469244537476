"""Simulate an LSST-like galaxy survey and write it as Parquet shards (one Ray task per shard).

Examples:
    python jobs/simulate_survey.py --n-objects 100000 --seed 1 --output sim/wide
    python jobs/simulate_survey.py --n-objects 20000 --seed 2 --field deep --spec-selection \\
        --output sim/deep_spec
    python jobs/simulate_survey.py --n-objects 5000 --seed 3 --cutouts --epochs --output sim/img
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

from raypz.sim import FIELDS, SurveyConfig, simulate_survey


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; defaults come from SurveyConfig."""
    d = SurveyConfig()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n-objects", type=int, required=True, help="rows to write in total")
    p.add_argument("--seed", type=int, required=True, help="master seed (same seed, same rows)")
    p.add_argument("--output", required=True, help="output directory (local or s3://)")
    p.add_argument("--depth", default=d.depth, help=f"survey depth y1 ... y10 (default {d.depth})")
    p.add_argument(
        "--field",
        default=d.field,
        choices=sorted(FIELDS),
        help=f"deep: 10x visits, 0.8x seeing; wide: nominal cadence and seeing (default {d.field})",
    )
    p.add_argument(
        "--mag-limit",
        type=float,
        default=d.mag_limit,
        help=f"limit on the observed i-band magnitude, AB (default {d.mag_limit})",
    )
    p.add_argument(
        "--rows-per-shard",
        type=int,
        default=d.rows_per_shard,
        help=f"rows per Parquet shard (default {d.rows_per_shard})",
    )
    p.add_argument(
        "--spec-selection",
        action="store_true",
        help="keep a spectroscopic-like subset, biased to bright and emission-line galaxies",
    )
    p.add_argument("--epochs", action="store_true", help="add per-band single-exposure flux lists")
    p.add_argument(
        "--max-epochs-per-band",
        type=int,
        default=d.max_epochs_per_band,
        help="most epochs stored per band; more visits are merged into this many groups "
        f"(default {d.max_epochs_per_band})",
    )
    p.add_argument(
        "--cutouts", action="store_true", help="add a (6, H, W) image column in nJy/pixel"
    )
    p.add_argument(
        "--cutout-size",
        type=int,
        default=d.cutout_size,
        help=f"cutout side in 0.2 arcsec pixels (default {d.cutout_size})",
    )
    p.add_argument(
        "--area-deg2",
        type=float,
        default=None,
        help="sky area of the patch, deg^2 (default: the area that holds --n-objects at the "
        "model's surface density)",
    )
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SurveyConfig:
    """The :class:`SurveyConfig` of the parsed flags."""
    return SurveyConfig(
        n_objects=args.n_objects,
        seed=args.seed,
        depth=args.depth,
        field=args.field,
        mag_limit=args.mag_limit,
        rows_per_shard=args.rows_per_shard,
        epochs=args.epochs,
        max_epochs_per_band=args.max_epochs_per_band,
        cutouts=args.cutouts,
        cutout_size=args.cutout_size,
        spec_selection=args.spec_selection,
        area_deg2=args.area_deg2,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the simulation and print a one-line summary."""
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    paths = simulate_survey(config, args.output)
    seconds = time.perf_counter() - start
    print(
        f"simulated {config.n_objects} rows ({config.field}, {config.depth}) in "
        f"{len(paths)} shards under {args.output} in {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
