"""Train a photo-z ensemble on Ray Train: catalog networks (MLP + denoising autoencoder) or
inception CNNs on cutouts (alone or fused with the catalog features), with an MDN or binned head.

Examples:
    python jobs/train_ensemble.py --train sim/deep_spec --output models/ens --members 5 --epochs 30
    python jobs/train_ensemble.py --train specz/ --pretrain sim/deep --output models/ft --members 5
    python jobs/train_ensemble.py --train sim/deep_img --inputs fusion --output models/fusion
    python jobs/train_ensemble.py --train sim/deep_img --inputs cutouts --domain-adapt \
        --target sim/wide_img --output models/dann
    ray job submit --working-dir . -- python jobs/train_ensemble.py --train s3://b/specz ...

Writes the model artifact (model.json + member-NN.safetensors) and, under
MODEL_DIR/validation/, the validation (or out-of-fold with --kfold) predictions that
jobs/evaluate.py reads. Rerunning the same command resumes unfinished members.
"""

from __future__ import annotations

import argparse
import json
import sys

from raypz.models import CatalogNetConfig, ImageNetConfig
from raypz.ray_runtime import init_ray
from raypz.train import TrainConfig, train_ensemble


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; defaults come from TrainConfig and CatalogNetConfig."""
    t, n, im = TrainConfig(), CatalogNetConfig(), ImageNetConfig()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--train",
        required=True,
        help="labelled object table (Parquet file/dir/HATS, local or s3://)",
    )
    p.add_argument(
        "--output", required=True, help="model artifact directory to write (local or s3://)"
    )
    p.add_argument(
        "--pretrain", help="labelled simulated survey to pre-train on, then fine-tune on --train"
    )
    p.add_argument(
        "--members", type=int, default=t.members, help="ensemble members (ignored with --kfold)"
    )
    p.add_argument(
        "--kfold", type=int, default=t.kfold, help="K folds: member k predicts fold k (0: off)"
    )
    p.add_argument("--epochs", type=int, default=t.epochs, help="maximum epochs per member")
    p.add_argument("--pretrain-epochs", type=int, help="epochs of pre-training (default: --epochs)")
    p.add_argument(
        "--patience", type=int, default=t.patience, help="early-stopping patience (epochs)"
    )
    p.add_argument("--batch-size", type=int, default=t.batch_size, help="rows per step per worker")
    p.add_argument(
        "--lr", type=float, default=t.lr, help="peak learning rate (AdamW, cosine decay)"
    )
    p.add_argument(
        "--workers", type=int, default=t.workers, help="Ray Train workers per member (DDP if > 1)"
    )
    p.add_argument(
        "--cpus-per-worker",
        type=float,
        help="CPUs per worker (default: 1 with GPUs, else 0.5)",
    )
    p.add_argument(
        "--gpu",
        choices=["auto", "yes", "no"],
        default="auto",
        help="use GPUs (auto: if the cluster has any; yes: one GPU per worker, DDP over NCCL, "
        "bf16 autocast in the trunk; fails at once if the cluster cannot provide them)",
    )
    p.add_argument(
        "--worker-resources",
        nargs="+",
        default=[],
        metavar="NAME=AMOUNT",
        help="extra Ray resources per training worker, e.g. a custom resource that some nodes "
        "advertise (`ray start --resources '{\"trainer\": 1}'`): trainer=1 puts the workers on "
        "those nodes, one per node where each has 1",
    )
    p.add_argument(
        "--max-concurrent-members",
        type=int,
        help="most members trained at once (default: as many as the cluster holds; more start "
        "as nodes join)",
    )
    p.add_argument(
        "--inputs",
        choices=["catalog", "cutouts", "fusion"],
        default="catalog",
        help="catalog: MLP + DAE on fluxes; cutouts: inception CNN on the cutout column; "
        "fusion: the CNN joined with the catalog features (default catalog)",
    )
    p.add_argument(
        "--cnn-stem", type=int, default=im.stem_channels, help="CNN stem convolution channels"
    )
    p.add_argument(
        "--cnn-blocks",
        type=int,
        nargs="+",
        default=list(im.blocks),
        help="output channels of the CNN's inception blocks (multiples of 4)",
    )
    p.add_argument(
        "--domain-adapt",
        action="store_true",
        help="domain-adversarial training (gradient reversal + field classifier); needs --target",
    )
    p.add_argument("--target", help="unlabelled table of the target field (with --domain-adapt)")
    p.add_argument(
        "--domain-weight",
        type=float,
        default=t.domain_weight,
        help="largest gradient-reversal weight (reached along the DANN schedule)",
    )
    p.add_argument(
        "--no-flip-rotate",
        action="store_true",
        help="do not augment cutouts with random flips and 90-degree rotations",
    )
    p.add_argument("--head", choices=["mdn", "binned"], default=n.head, help="PDF head")
    p.add_argument(
        "--components", type=int, default=n.n_components, help="Gaussians in the MDN head"
    )
    p.add_argument(
        "--label-sigma",
        type=float,
        default=n.label_sigma,
        help="soft-label width of the binned head, units of (1 + z)",
    )
    p.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        help=f"dense widths before the head (default {list(n.hidden)} for catalog nets, "
        f"{list(im.hidden)} for CNNs)",
    )
    p.add_argument(
        "--flux-noise",
        type=float,
        default=t.flux_noise,
        help="augmentation: max extra noise in catalog errors",
    )
    p.add_argument(
        "--balanced", action="store_true", help="weight rows inversely to the (z, r mag) density"
    )
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip fitting the PDF width scale on the validation rows (scale 1)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=t.val_fraction,
        help="validation share (objectId hash)",
    )
    p.add_argument("--seed", type=int, default=t.seed, help="base seed; member i uses seed + i")
    p.add_argument(
        "--storage-path", help="Ray Train checkpoint storage (default: OUTPUT/_checkpoints)"
    )
    p.add_argument("--name", default="catalog", help="model name used in the model id")
    p.add_argument(
        "--num-cpus", type=int, help="CPUs of an embedded local Ray (ignored on a cluster)"
    )
    return p.parse_args(argv)


def _resources(pairs: list[str]) -> dict[str, float]:
    """``["name=1", ...]`` -> ``{"name": 1.0, ...}``."""
    out = {}
    for pair in pairs:
        name, sep, amount = pair.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise SystemExit(f"--worker-resources: expected NAME=AMOUNT, got {pair!r}")
    return out


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags describe."""
    if args.domain_adapt != (args.target is not None):
        raise SystemExit("--domain-adapt and --target go together")
    if args.domain_adapt and args.inputs == "catalog":
        raise SystemExit("--domain-adapt needs --inputs cutouts or fusion")
    head = {"head": args.head, "n_components": args.components, "label_sigma": args.label_sigma}
    hidden = {"hidden": tuple(args.hidden)} if args.hidden else {}
    image = None
    if args.inputs != "catalog":
        image = ImageNetConfig(
            stem_channels=args.cnn_stem,
            blocks=tuple(args.cnn_blocks),
            fusion=args.inputs == "fusion",
            domain_adapt=args.domain_adapt,
            **head,
            **hidden,
        )
    return TrainConfig(
        members=args.members,
        kfold=args.kfold,
        epochs=args.epochs,
        pretrain_epochs=args.pretrain_epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        use_gpu={"auto": None, "yes": True, "no": False}[args.gpu],
        max_concurrent_members=args.max_concurrent_members,
        worker_resources=_resources(args.worker_resources),
        flux_noise=args.flux_noise,
        balanced=args.balanced,
        calibrate=not args.no_calibrate,
        val_fraction=args.val_fraction,
        seed=args.seed,
        domain_weight=args.domain_weight,
        flip_rotate=not args.no_flip_rotate,
        net=CatalogNetConfig(**head, **hidden),
        image=image,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    config = config_from_args(args)
    init_ray(num_cpus=args.num_cpus)
    result = train_ensemble(
        args.train,
        args.output,
        config,
        pretrain=args.pretrain,
        storage_path=args.storage_path,
        name=args.name,
        target=args.target,
    )
    print(
        json.dumps(
            {
                "artifact": result.artifact,
                "model_hash": result.model_hash,
                "validation_predictions": result.validation_predictions,
                "seconds": round(result.seconds, 1),
                "members": result.members,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
