"""Cross-validate a catalog-ensemble configuration on a labelled table: outer K folds, a whole
ensemble trained per fold, every labelled row predicted once by the ensemble that did not see
it, all of them scored as jobs/evaluate.py scores a test file.

Examples:
    python jobs/cross_validate.py --train ../shared/data/buzzard_train.parquet --output cv/b128
    python jobs/cross_validate.py --train specz/ --output cv/binned --head binned --folds 5
    python jobs/cross_validate.py --train specz/ --output cv/tuned --config tune/best_config.json
    ray job submit --working-dir . -- python jobs/cross_validate.py --train s3://b/specz \\
        --output s3://b/cv/v3

This is how settings are chosen without a test file (docs/buzzard_results.md): compare the
reports of two configurations' runs on the same table; the outer folds are fixed by objectId,
so every configuration is scored on the same rows. The training flags are jobs/train_ensemble.py's
(catalog networks), with --config FILE as their defaults.

Writes OUTPUT/fold-K/{train.parquet,model/}, OUTPUT/predictions/fold-K.parquet (catalog
columns of the held-out rows) and OUTPUT/report/ (metrics.json, report.md, plots). Rerunning
the same command resumes: finished members and folds are kept.
"""

from __future__ import annotations

import argparse
import sys

from raypz import io
from raypz.cli import (
    ConfigFlags,
    add_config_flag,
    add_ray_flags,
    output_path,
    parse_with_config_base,
)
from raypz.job_errors import run_job, usage_errors
from raypz.metrics.report import HEADLINE_METRICS
from raypz.models import CatalogNetConfig
from raypz.pdf import POINT_ESTIMATES
from raypz.progress import summary_table
from raypz.ray_runtime import init_ray
from raypz.train import TrainConfig
from raypz.train.crossval import CrossValidation, check_settings, cross_validate

IMAGE_ONLY_FIELDS = ("domain_weight", "flip_rotate", "cutout_fit_rows")
"""TrainConfig fields without a flag here: they shape CNN training only."""


def config_flags(base: TrainConfig | None = None) -> tuple[ConfigFlags, ConfigFlags]:
    """TrainConfig's flags and its catalog network's, defaults from ``base`` (``--config``)."""
    train = ConfigFlags(
        TrainConfig,
        exclude=IMAGE_ONLY_FIELDS,
        names={"use_gpu": "gpu"},
        base=base,
        title="TrainConfig (each fold's ensemble)",
    )
    net = ConfigFlags(
        CatalogNetConfig,
        base=base.net if base is not None else None,
        title="CatalogNetConfig (each fold's ensemble)",
    )
    return train, net


def build_parser(base: TrainConfig | None = None) -> argparse.ArgumentParser:
    """The job's parser: paths and the cross-validation's settings, then the training flags."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--train",
        required=True,
        help="labelled object table (Parquet or FITS file/dir, or HATS; local or s3://)",
    )
    p.add_argument(
        "--output", type=output_path, required=True, help="directory to write (local or s3://)"
    )
    p.add_argument(
        "--folds",
        type=int,
        default=4,
        help="outer folds K >= 2: each fold's ensemble trains on (K-1)/K of the rows (default 4)",
    )
    p.add_argument(
        "--pretrain", help="labelled simulated survey that every fold pre-trains on first"
    )
    p.add_argument(
        "--point-estimate",
        choices=POINT_ESTIMATES,
        default="mode",
        help="z_phot of the report's point metrics (default mode)",
    )
    p.add_argument(
        "--name", default="cross-validated", help="the configuration's name in the report"
    )
    add_config_flag(p, TrainConfig)
    add_ray_flags(p)
    for flags in config_flags(base):
        flags.add_to(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line; ``base_config`` is the ``--config`` file's TrainConfig."""
    return parse_with_config_base(argv, TrainConfig, build_parser)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags describe; UsageError when it breaks a rule."""
    train, net = config_flags(getattr(args, "base_config", None))
    with usage_errors():
        config = train.build(args, net=net.build(args))
        check_settings(config, args.folds, args.point_estimate)
    return config


def closing_table(result: CrossValidation) -> str:
    """The job's closing table: where things are and the headline out-of-fold metrics."""
    overall = result.metrics["overall"]
    rows: list[tuple[str, object]] = [
        ("report", result.report),
        ("out-of-fold predictions", result.predictions),
        ("rows per fold", ", ".join(str(n) for n in result.fold_rows)),
        ("wall time", f"{result.seconds:.0f} s"),
    ]
    rows += [(f"out-of-fold {k}", f"{overall[k]:.4f}") for k in HEADLINE_METRICS]
    return summary_table(rows, "cross-validation done:")


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    config = config_from_args(args)
    io.require_exists(args.train, args.pretrain)
    init_ray(num_cpus=args.num_cpus, verbose=args.verbose)
    result = cross_validate(
        args.train,
        args.output,
        config,
        folds=args.folds,
        pretrain=args.pretrain,
        point_estimate=args.point_estimate,
        name=args.name,
    )
    print(closing_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
