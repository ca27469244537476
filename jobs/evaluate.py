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
import re
import sys
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from raypz import io
from raypz.baselines import KNNBaseline
from raypz.columns import BANDS, ColumnTemplate, flux_to_mag
from raypz.features import flux_arrays
from raypz.metrics import EvalConfig, evaluate, headline_table, match_ids, read_table, write_report
from raypz.pdf import ZGrid
from raypz.plots import make_all_plots
from raypz.predictions import Predictions, read_predictions


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
    p.add_argument("--no-plots", action="store_true", help="write metrics.json and report.md only")
    args = p.parse_args(argv)
    names = [args.name] + (["knn"] if args.train else [])
    for item in args.compare:
        name, _, path = item.partition("=")
        if not name or not path:
            p.error(f"--compare expects NAME=PATH, got {item!r}")
        names.append(name)
    if len({_slug(n) for n in names}) < len(names):  # each gets a plot directory
        p.error(f"model names must be distinct as directory names, got {names}")
    return args


def _slug(name: str) -> str:
    """A directory name for a model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


class _Scored(NamedTuple):
    """One model's PDFs on the test rows it has, row-aligned with their truth."""

    grid: ZGrid
    pdf: np.ndarray  # (M, G)
    flags: np.ndarray | None  # (M,) int32
    z_spec: np.ndarray  # (M,)
    mag: np.ndarray  # (M,) AB mag


def _rows_of(pred: Predictions, rows: np.ndarray, z_spec: np.ndarray, mag: np.ndarray) -> _Scored:
    """``rows`` of a predictions set, paired with the truth of those rows."""
    flags = None
    if "flags" in pred.table.column_names:
        flags = pred.table["flags"].to_numpy(zero_copy_only=False)[rows]
    return _Scored(pred.grid, pred.pdf[rows], flags, z_spec, mag)


def _knn(train_path: str, test: pa.Table, columns: ColumnTemplate, grid: ZGrid):
    """kNN baseline fitted on ``train_path``, predicted on the test rows; (PDFs, flags, notes)."""
    train_cols = [*columns.flux_columns(), *columns.flux_err_columns(), columns.redshift]
    train = read_table(train_path, train_cols)
    z_train = train[columns.redshift].to_numpy(zero_copy_only=False).astype(np.float64)
    knn = KNNBaseline.fit(*flux_arrays(train, columns), z_train)
    pdf, flags = knn.predict_pdf(*flux_arrays(test, columns), grid)
    notes = {
        "knn: trained on": f"{train_path} ({train.num_rows} rows)",
        "knn: k, bandwidth": f"{knn.k}, {knn.bandwidth} (1+z)",
    }
    return pdf, flags, notes


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; returns the process exit status (0 on success)."""
    args = parse_args(argv)
    columns = ColumnTemplate(redshift=args.z_column)
    mag_flux = columns.flux.format(band=args.mag_band)
    truth_cols = [columns.object_id, columns.redshift, mag_flux]
    if args.train:  # the kNN baseline predicts from the test rows' fluxes
        truth_cols += [*columns.flux_columns(), *columns.flux_err_columns()]
    truth = read_table(args.truth, list(dict.fromkeys(truth_cols)))
    pred = read_predictions(args.predictions)

    join = match_ids(pred.object_id, truth[columns.object_id].to_numpy())
    test = truth.take(join.right_rows)  # the test rows, in prediction order
    test_ids = test[columns.object_id].to_numpy()
    z_spec = test[columns.redshift].to_numpy(zero_copy_only=False).astype(np.float64)
    mag = flux_to_mag(test[mag_flux].to_numpy(zero_copy_only=False))
    inputs: dict = {
        "predictions": args.predictions,
        "truth": args.truth,
        "test rows (in predictions and truth)": int(join.left_rows.size),
        "predictions without truth": join.n_left_only,
        "truth rows without prediction": join.n_right_only,
        "duplicate objectId rows in predictions (first used)": join.n_left_duplicates,
        "duplicate objectId rows in truth (first used)": join.n_right_duplicates,
        "magnitude": f"{args.mag_band} (AB, from {mag_flux})",
    }
    models = {args.name: _rows_of(pred, join.left_rows, z_spec, mag)}
    for item in args.compare:
        name, path = item.split("=", 1)
        other = read_predictions(path)
        m = match_ids(test_ids, other.object_id)
        models[name] = _rows_of(other, m.right_rows, z_spec[m.left_rows], mag[m.left_rows])
        inputs[f"{name}: predictions"] = path
        inputs[f"{name}: test rows without prediction (not scored)"] = m.n_left_only
    if args.train:
        pdf, flags, notes = _knn(args.train, test, columns, pred.grid)
        models["knn"] = _Scored(pred.grid, pdf, flags, z_spec, mag)
        inputs.update(notes)

    config = EvalConfig()
    results, images = {}, []
    for name, s in models.items():
        results[name] = evaluate(s.grid, s.pdf, s.z_spec, s.mag, s.flags, config)
        if not args.no_plots:
            directory = io.join(args.report, _slug(name))
            paths = make_all_plots(
                directory, s.grid, s.pdf, s.z_spec, s.mag, s.flags, config, args.mag_band, name
            )
            images += [f"{_slug(name)}/{path.rsplit('/', 1)[-1]}" for path in paths]
    write_report(results, args.report, inputs, images)
    print(headline_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
