"""Search the catalog network's and training's settings with Ray Tune (ASHA early stopping) on
a validation split of a labelled table, and write the best configuration for
jobs/train_ensemble.py.

Examples:
    python jobs/tune_ensemble.py --train specz/ --output tune/ --trials 16 --time-budget-s 900
    python jobs/train_ensemble.py --train specz/ --config tune/best_config.json --output models/t
    ray job submit --working-dir . -- python jobs/tune_ensemble.py --train s3://b/specz \\
        --output s3://b/tune --trials 64

Each trial trains one member (1 CPU; a share of a GPU on clusters with GPUs) with settings drawn
from the search space of raypz.train.tune (learning rate, weight decay, batch size, flux noise,
network width and depth, dropout, MDN components, autoencoder noise and weight) and reports its
validation log score after every epoch; ASHA stops the trials that are behind. --epochs is the
budget of a trial (and its schedule's length). The other flags set the base configuration that
the searched settings complete (with --config FILE as their defaults).

Writes OUTPUT/best_config.json (a complete TrainConfig: jobs/train_ensemble.py --config),
OUTPUT/trials.csv and trials.md (every trial, ranked), OUTPUT/search.json and Tune's experiment
under OUTPUT/experiment. Rerunning the same command continues an interrupted search.
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
from raypz.models import CatalogNetConfig
from raypz.ray_runtime import init_ray
from raypz.train import TrainConfig
from raypz.train.tune import SEARCHED_FIELDS, TuneSettings, run_search, summary_text

SETTINGS = ConfigFlags(TuneSettings, title="TuneSettings (the search)")
BASE_TRAIN_FIELDS = (
    "epochs", "val_fraction", "patience", "balanced", "balance_max_weight", "coadd_fraction",
    "fit_sample_rows", "calibration_rows", "use_gpu", "seed",
)  # fmt: skip
"""TrainConfig fields with a flag here: those that shape a trial and are not searched (the
ensemble's own settings, e.g. --members, come from --config or train_ensemble's flags)."""
BASE_NET_FIELDS = ("latent_dim", "dae_hidden", "head", "label_sigma")
"""CatalogNetConfig fields with a flag here (the others are searched)."""
assert not set(BASE_TRAIN_FIELDS) & set(SEARCHED_FIELDS["train"])
assert not set(BASE_NET_FIELDS) & set(SEARCHED_FIELDS["net"])


def config_flags(base: TrainConfig | None = None) -> tuple[ConfigFlags, ConfigFlags]:
    """The base configuration's flags (TrainConfig, its catalog network), defaults from
    ``base`` (``--config``) or the classes' own."""
    train = ConfigFlags(
        TrainConfig,
        include=BASE_TRAIN_FIELDS,
        names={"use_gpu": "gpu"},
        base=base,
        title="TrainConfig (the base of every trial)",
    )
    net = ConfigFlags(
        CatalogNetConfig,
        include=BASE_NET_FIELDS,
        base=base.net if base is not None else None,
        title="CatalogNetConfig (the base of every trial)",
    )
    return train, net


def build_parser(base: TrainConfig | None = None) -> argparse.ArgumentParser:
    """The job's parser: paths, the search's settings, then the base configuration's flags."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--train",
        required=True,
        help="labelled object table (Parquet file/dir/HATS, local or s3://)",
    )
    p.add_argument(
        "--output",
        type=output_path,
        required=True,
        help="directory for the results and Tune's experiment (local or s3://; on a "
        "multi-node cluster, storage every node reaches)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the search under OUTPUT and fail if there is none (an existing search "
        "is continued anyway)",
    )
    add_config_flag(p, TrainConfig)
    add_ray_flags(p)
    SETTINGS.add_to(p)
    for flags in config_flags(base):
        flags.add_to(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line; ``base_config`` is the ``--config`` file's TrainConfig."""
    return parse_with_config_base(argv, TrainConfig, build_parser)


def configs_from_args(args: argparse.Namespace) -> tuple[TrainConfig, TuneSettings]:
    """The base TrainConfig and the search's settings; UsageError when they break a rule."""
    base = getattr(args, "base_config", None)
    train, net = config_flags(base)
    with usage_errors():
        config = train.build(args, net=net.build(args))
        if config.image is not None:
            raise ValueError("the search covers catalog networks (--config has an image model)")
        return config, SETTINGS.build(args)


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    base, settings = configs_from_args(args)
    io.require_exists(args.train)
    init_ray(num_cpus=args.num_cpus, verbose=args.verbose)
    with usage_errors():
        result = run_search(args.train, args.output, base, settings, args.resume, args.verbose)
    print(summary_text(result))
    return 0 if result.complete else 130


if __name__ == "__main__":
    sys.exit(run_job(main))
