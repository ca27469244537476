"""Train a photo-z ensemble on Ray Train: catalog networks (MLP + denoising autoencoder) or
inception CNNs on cutouts (alone or fused with the catalog features), with an MDN or binned head.

Examples:
    python jobs/train_ensemble.py --train sim/deep_spec --output models/ens --members 5 --epochs 30
    python jobs/train_ensemble.py --train specz/ --pretrain sim/deep --output models/ft --members 5
    python jobs/train_ensemble.py --train sim/deep_img --inputs fusion --output models/fusion
    python jobs/train_ensemble.py --train sim/deep_obj --cutouts sim/deep_cutouts \\
        --inputs fusion --output models/fusion
    python jobs/train_ensemble.py --train specz/ --config tune/best_config.json --output models/t
    python jobs/train_ensemble.py --train sim/deep_img --inputs cutouts --domain-adapt \\
        --target sim/wide_img --output models/dann
    ray job submit --working-dir . -- python jobs/train_ensemble.py --train s3://b/specz ...

Writes the model artifact (model.json, member-NN.safetensors, reference.safetensors; see
docs/production.md, "The model directory") and, under
MODEL_DIR/validation/, the ensemble's predictions on the validation split that
jobs/evaluate.py reads. Rerunning the same command resumes unfinished members.
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
from raypz.job_errors import UsageError, run_job, usage_errors
from raypz.metrics.report import HEADLINE_METRICS
from raypz.models import CatalogNetConfig, ImageNetConfig, load_artifact
from raypz.models.artifact import TRAINING_CURVES
from raypz.progress import summary_table
from raypz.ray_runtime import init_ray
from raypz.train import TrainConfig, TrainResult, train_ensemble
from raypz.train.ensemble import require_model_name


def config_flags(base: TrainConfig | None = None) -> tuple[ConfigFlags, ConfigFlags, ConfigFlags]:
    """The config flags: TrainConfig's own fields (``use_gpu`` is ``--gpu``), the catalog
    network (TrainConfig.net) unprefixed, the CNN (TrainConfig.image) as ``--cnn-*``
    (``domain_adapt`` is ``--domain-adapt``); their defaults are ``base``'s values (``--config``)
    or the classes' own."""
    train = ConfigFlags(TrainConfig, names={"use_gpu": "gpu"}, base=base)
    net = ConfigFlags(
        CatalogNetConfig,
        title="CatalogNetConfig (--inputs catalog)",
        base=base.net if base is not None else None,
    )
    cnn = ConfigFlags(
        ImageNetConfig,
        prefix="cnn",
        exclude=("fusion",),  # set by --inputs
        names={"domain_adapt": "domain-adapt"},
        title="ImageNetConfig (--inputs cutouts or fusion)",
        base=base.image if base is not None else None,
    )
    return train, net, cnn


def build_parser(base: TrainConfig | None = None) -> argparse.ArgumentParser:
    """The job's parser: its paths and choices, then one group per config (defaults from
    ``base``, the ``--config`` file, when given)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--train",
        required=True,
        help="labelled object table (Parquet or FITS file/dir, or HATS; local or s3://)",
    )
    p.add_argument(
        "--cutouts",
        help="image models: cutout store co-partitioned with --train (Parquet or FITS cutout "
        "files named as its files; local or s3://), joined on objectId; default: the "
        "table's cutout column",
    )
    p.add_argument(
        "--output",
        type=output_path,
        required=True,
        help="model artifact directory to write (local or s3://)",
    )
    p.add_argument(
        "--pretrain", help="labelled simulated survey to pre-train on, then fine-tune on --train"
    )
    inputs = "catalog"
    if base is not None and base.image is not None:
        inputs = "fusion" if base.image.fusion else "cutouts"
    p.add_argument(
        "--inputs",
        choices=["catalog", "cutouts", "fusion"],
        default=inputs,
        help="catalog: MLP + DAE on fluxes; cutouts: inception CNN on the cutout column; "
        f"fusion: the CNN joined with the catalog features (default {inputs})",
    )
    p.add_argument("--target", help="unlabelled table of the target field (with --domain-adapt)")
    p.add_argument("--target-cutouts", help="cutout store of --target (as --cutouts)")
    p.add_argument(
        "--storage-path",
        type=output_path,
        help="Ray Train checkpoint storage (default: OUTPUT/_checkpoints)",
    )
    p.add_argument(
        "--name",
        help="model name used in the model id (default: the --inputs kind: catalog, cutouts or "
        "fusion)",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace a model in --output trained on other data or with other settings "
        "(default: refuse it; rerunning the same training resumes it either way)",
    )
    add_config_flag(p, TrainConfig)
    add_ray_flags(p)
    for flags in config_flags(base):
        flags.add_to(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line; ``base_config`` is the ``--config`` file's TrainConfig (None
    without one)."""
    return parse_with_config_base(argv, TrainConfig, build_parser)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags describe (over the ``--config`` file's, when given); UsageError
    when they contradict each other."""
    train, net, cnn = config_flags(getattr(args, "base_config", None))
    if args.cnn_domain_adapt != (args.target is not None):
        raise UsageError("--domain-adapt and --target go together")
    if args.target_cutouts and args.target is None:
        raise UsageError("--target-cutouts: only with --target")
    if args.name is not None:
        try:
            require_model_name(args.name)
        except ValueError as err:
            raise UsageError(f"--name: {err}") from err
    if args.inputs == "catalog" and (args.cutouts or args.target_cutouts):
        raise UsageError("--cutouts / --target-cutouts: only with --inputs cutouts or fusion")
    unused, needed = (cnn, "cutouts or fusion") if args.inputs == "catalog" else (net, "catalog")
    if unused.changed(args):
        raise UsageError(f"{' '.join(unused.changed(args))}: only with --inputs {needed}")
    with usage_errors():
        image = (
            None if args.inputs == "catalog" else cnn.build(args, fusion=args.inputs == "fusion")
        )
        return train.build(args, net=net.build(args), image=image)


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    config = config_from_args(args)
    io.require_exists(args.train, args.cutouts, args.pretrain, args.target, args.target_cutouts)
    init_ray(num_cpus=args.num_cpus, verbose=args.verbose)
    result = train_ensemble(
        args.train,
        args.output,
        config,
        pretrain=args.pretrain,
        storage_path=args.storage_path,
        name=args.name or args.inputs,
        target=args.target,
        cutouts=args.cutouts,
        target_cutouts=args.target_cutouts,
        replace=args.replace,
    )
    print(training_summary(result))
    return 0


def training_summary(result: TrainResult) -> str:
    """The job's closing table: the artifact, its members and its validation metrics (all of
    them are in OUTPUT/model.json)."""
    metrics = load_artifact(result.artifact).meta["metrics"]
    overall = metrics.get("overall", {})
    rows: list[tuple[str, object]] = [
        ("artifact", result.artifact),
        ("model hash", result.model_hash[:16]),
        ("training curves", io.join(result.artifact, TRAINING_CURVES)),
        ("validation predictions", result.validation_predictions),
        ("wall time", f"{result.seconds:.0f} s"),
    ]
    for i, m in enumerate(result.members):
        resumed = f", resumed at epoch {m['resumed_at']}" if m.get("resumed_at") else ""
        rows.append(
            (
                f"member {i}",
                f"{m['epochs_run']} epochs, best val loss {m['best_val_loss']:.4f}, "
                f"{m['seconds']:.0f} s{resumed}",
            )
        )
    rows.append(("width scale", metrics.get("calibration", {}).get("width_scale")))
    for key in HEADLINE_METRICS:
        if key in overall:
            rows.append((f"{metrics['split']} {key}", f"{overall[key]:.4f}"))
    if metrics.get("split_also_chose"):  # optimistic: say why, and where a fair score comes from
        chose = " and ".join(metrics["split_also_chose"])
        rows.append(
            (
                "note",
                f"the {metrics['split']} split also chose {chose}: optimistic; "
                "score a held-out table with jobs/evaluate.py",
            )
        )
    return summary_table(rows, "training done:")


if __name__ == "__main__":
    sys.exit(run_job(main))
