"""Score photo-z PDFs against true redshifts: metrics.json, report.md and plots.

Examples:
    python jobs/evaluate.py --predictions catalogs/ens --truth sim/test --train sim/train \\
        --report reports/ens --name ensemble --compare "binned head=catalogs/binned"
    python jobs/evaluate.py --predictions s3://b/photoz/ --truth s3://b/specz/ \\
        --train s3://b/specz_train/ --report s3://b/reports/v3

The predictions (a Parquet file or directory of predictions tables, or the HATS PDF catalog)
are joined with the truth (an object table with objectId, the redshift column and fluxes in
nJy) on objectId; the rows in both are the test rows, and only those rows of the predictions
are read (file by file: a spec-z sample of a whole release's catalog needs the sample's memory,
not the catalog's). Every --compare model and, with --train, a k-nearest-neighbour baseline
fitted on that labelled table are scored on the same test rows.
Objects missing from either side are counted in the report, never silently dropped; rows
flagged NO_PDF are counted but not scored. Writes DIR/metrics.json, DIR/report.md and, per
model, DIR/<model>/*.png, then prints the headline table.
"""

from __future__ import annotations

import argparse
import sys

from raypz import io
from raypz.cli import ConfigFlags, output_path
from raypz.columns import BANDS
from raypz.evaluation import EvaluationRequest, evaluate_predictions, slug
from raypz.job_errors import run_job
from raypz.pdf import POINT_ESTIMATES

REQUEST = ConfigFlags(
    EvaluationRequest,
    extra={
        "compare": {"metavar": "NAME=PATH"},
        "mag_band": {"choices": BANDS},
        "point_estimate": {"choices": POINT_ESTIMATES},
        "report": {"type": output_path},
    },
)
"""One flag per EvaluationRequest field."""


def build_parser() -> argparse.ArgumentParser:
    """The job's parser: EvaluationRequest's fields."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    REQUEST.add_to(p)
    return p


def parse_request(argv: list[str] | None = None) -> EvaluationRequest:
    """The request the flags describe; model names must differ ('knn' is taken with --train)."""
    parser = build_parser()
    try:
        request = REQUEST.build(parser.parse_args(argv))
    except ValueError as err:  # e.g. a --compare NAME given twice
        parser.error(str(err))
    names = request.model_names()
    if len({slug(n) for n in names}) < len(names):  # each gets a plot directory
        parser.error(f"model names must be distinct as directory names, got {names}")
    return request


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; returns the process exit status (0 on success)."""
    request = parse_request(argv)
    io.require_exists(
        request.predictions, request.truth, request.train, request.model, *request.compare.values()
    )
    evaluate_predictions(request)
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
