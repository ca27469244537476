"""Score photo-z PDFs against true redshifts: metrics.json, report.md and plots.

Examples:
    python jobs/evaluate.py --predictions models/ens/validation --truth sim/deep_spec \\
        --report reports/ens --name ensemble --compare "member 0=models/ens/member-00-val"
    python jobs/evaluate.py --predictions s3://b/photoz/ --truth s3://b/specz/ \\
        --train s3://b/specz_train/ --report s3://b/reports/v3

The predictions (a Parquet file or directory of predictions tables, or the HATS PDF catalog)
are joined with the truth (an object table with objectId, the redshift column and fluxes in
nJy) on objectId; the rows in both are the test rows. Every --compare model and, with --train,
a k-nearest-neighbour baseline fitted on that labelled table are scored on the same test rows.
Objects missing from either side are counted in the report, never silently dropped; rows
flagged NO_PDF are counted but not scored. Writes DIR/metrics.json, DIR/report.md and, per
model, DIR/<model>/*.png, then prints the headline table.
"""

from __future__ import annotations

import argparse
import sys

from raypz.columns import BANDS
from raypz.evaluation import EvaluationRequest, evaluate_predictions, slug
from raypz.pdf import POINT_ESTIMATES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; model names must differ ('knn' is taken with --train)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--predictions",
        required=True,
        metavar="PATH",
        help="predictions to score: Parquet file/dir of predictions tables, or HATS PDF catalog",
    )
    p.add_argument(
        "--truth",
        required=True,
        metavar="PATH",
        help="object table with objectId, the true redshift and fluxes (file/dir/HATS)",
    )
    p.add_argument("--report", required=True, metavar="DIR", help="output directory (or s3://)")
    p.add_argument(
        "--name", default="model", help="name of the --predictions model (default: %(default)s)"
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another model's predictions, scored on the same test rows (repeatable)",
    )
    p.add_argument(
        "--train",
        metavar="PATH",
        help="labelled object table on which to fit the kNN baseline, scored as 'knn'",
    )
    p.add_argument(
        "--mag-band",
        default="i",
        choices=BANDS,
        help="band whose AB magnitude (from its cModelFlux) bins the metrics (default: i)",
    )
    p.add_argument(
        "--z-column",
        default="redshift",
        help="true-redshift column of --truth and --train (default: %(default)s)",
    )
    p.add_argument(
        "--point-estimate",
        default="mode",
        choices=POINT_ESTIMATES,
        help="z_phot of the point metrics and bins: the PDF's mode (DESIGN 8), median, mean or"
        " best (z_best: least expected loss, Tanaka 2015); the report also tabulates the point"
        " metrics of every estimate (default: %(default)s)",
    )
    p.add_argument("--no-plots", action="store_true", help="write metrics.json and report.md only")
    args = p.parse_args(argv)
    compare = {}
    for item in args.compare:
        name, _, path = item.partition("=")
        if not name or not path:
            p.error(f"--compare expects NAME=PATH, got {item!r}")
        compare[name] = path
    args.compare = compare
    names = [args.name, *(["knn"] if args.train else []), *compare]
    if len({slug(n) for n in names}) < len(names):  # each gets a plot directory
        p.error(f"model names must be distinct as directory names, got {names}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; returns the process exit status (0 on success)."""
    args = parse_args(argv)
    request = EvaluationRequest(
        predictions=args.predictions,
        truth=args.truth,
        report=args.report,
        name=args.name,
        compare=args.compare,
        train=args.train,
        mag_band=args.mag_band,
        z_column=args.z_column,
        plots=not args.no_plots,
        point_estimate=args.point_estimate,
    )
    evaluate_predictions(request)
    return 0


if __name__ == "__main__":
    sys.exit(main())
