"""Predictions of each ensemble member alone, to compare the members with their ensemble.

Example:
    python jobs/predict_members.py --model models/ens --input sim/test --output preds/members \\
        --calibrate-on sim/train
    python jobs/evaluate.py --predictions catalogs/ens --truth sim/test --report reports/ens \\
        --compare "member 00=preds/members/member-00.parquet"

Writes OUTPUT/member-NN.parquet, one predictions table per member (the format that
jobs/evaluate.py --compare reads). The members carry the artifact's width scale, which was
fitted to the ensemble: --width-scale 1 gives them as trained, and --calibrate-on TRAIN (the
table the model was trained on) fits each member's own scale on the rows it did not train on,
so a member-vs-ensemble comparison is fair. In-process and chunked: for test sets of up to a
few million rows, not for a survey (jobs/infer_lsst.py). Catalog models only.
"""

from __future__ import annotations

import argparse
import sys

from raypz import io
from raypz.cli import ConfigFlags, output_path, positive_float
from raypz.infer.config import InferConfig
from raypz.job_errors import run_job
from raypz.train.members import predict_members

DEVICE = ConfigFlags(InferConfig, include=("device",), title="device")
"""``--device``: InferConfig's field (the same choice of device as inference)."""


def build_parser() -> argparse.ArgumentParser:
    """The job's parser: model, input, output, the members' width scale, the device."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="model artifact directory (local or s3://)")
    p.add_argument(
        "--input", required=True, help="object table (Parquet or FITS file/dir, or HATS)"
    )
    p.add_argument(
        "--output", type=output_path, required=True, help="directory for member-NN.parquet"
    )
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--width-scale", type=positive_float, help="width scale of every member (1: as trained)"
    )
    scale.add_argument(
        "--calibrate-on",
        metavar="TRAIN",
        help="the model's training table: fit each member's own width scale on its held-out rows",
    )
    DEVICE.add_to(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = build_parser().parse_args(argv)
    io.require_exists(args.model, args.input, args.calibrate_on)
    predict_members(
        args.model,
        args.input,
        args.output,
        device=args.device,
        width_scale=args.width_scale,
        calibrate_on=args.calibrate_on,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
