"""``jobs/evaluate.py`` on a spec-z sample of a large PDF catalog: wall time and peak memory.

    python benchmarks/bench_evaluate.py                   # builds a 1e6-row catalog (~1 min)
    python benchmarks/bench_evaluate.py --catalog CAT --workdir W   # reuse one built before
    python benchmarks/bench_evaluate.py --field-deg 2      # the samples in one 2 x 2 deg field

A data release's spec-z sample is well under 1% of its catalog, often in a few fields. The
evaluation keeps only the sample's rows of the catalog (``read_predictions(..., only_ids=...)``)
and reads only the partitions beside the sample's positions (``near=``), so its memory should
follow the sample and its reading the sample's fields, not the catalog. Builds (unless given)
the synthetic HATS PDF catalog of ``benchmarks/bench_nz.py`` (compact two-peaked PDFs,
objectIds 0..rows-1 over a 20 x 20 deg patch), writes truth tables holding each
``--fractions`` of its objects (of those in the ``--field-deg`` corner field when given; with
their positions, random redshifts and i fluxes in nJy), and runs the job on each in its own
process, without plots. Printed, nothing asserted: wall time, peak RSS (``ru_maxrss`` of the
job's process) and the rows the job scored.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from bench_nz import catalog_of, catalog_parser, run_measured

from raypz import io
from raypz.columns import DEFAULT_COLUMNS as C

REPO = Path(__file__).resolve().parents[1]


def write_truth(
    path: Path, catalog: str, fraction: float, field_deg: float | None, seed: int = 1
) -> int:
    """A truth table of ``fraction`` of the catalog's objects (of those with RA and Dec within
    ``field_deg`` of the patch's lower corner, when given): objectId and position from the
    catalog, random redshifts in [0.05, 3) and i fluxes in nJy; returns its row count."""
    objects = pads.dataset(io.join(catalog, "dataset"), format="parquet").to_table(
        columns=[C.object_id, C.ra, C.dec]
    )
    ra, dec = (objects[c].to_numpy() for c in (C.ra, C.dec))
    rng = np.random.default_rng(seed)
    chosen = rng.random(objects.num_rows) < fraction
    if field_deg is not None:
        chosen &= (ra < ra.min() + field_deg) & (dec < dec.min() + field_deg)
    table = objects.filter(pa.array(chosen))
    table = table.append_column(C.redshift, pa.array(rng.uniform(0.05, 3.0, table.num_rows)))
    i_flux = pa.array(rng.uniform(500.0, 5e4, table.num_rows))
    pq.write_table(table.append_column(C.flux.format(band="i"), i_flux), path)
    return table.num_rows


def main(argv: list[str] | None = None) -> int:
    p = catalog_parser(__doc__)
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.01, 0.1],
        metavar="F",
        help="fractions of the catalog's objects in the truth tables, one run each",
    )
    p.add_argument(
        "--field-deg",
        type=float,
        metavar="D",
        help="truth objects only in the D x D deg field at the patch's corner (default: all)",
    )
    a = p.parse_args(argv)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_evaluate_"))
    work.mkdir(parents=True, exist_ok=True)
    catalog = catalog_of(a, work)
    where = "" if a.field_deg is None else f"_field{a.field_deg:g}"
    for fraction in a.fractions:
        truth = work / f"truth_{fraction:g}{where}.parquet"
        n_truth = write_truth(truth, catalog, fraction, a.field_deg)
        report = work / f"report_{fraction:g}{where}"
        cmd = [sys.executable, str(REPO / "jobs" / "evaluate.py"), "--predictions", catalog]
        cmd += ["--truth", str(truth), "--report", str(report), "--no-plots"]
        seconds, rss = run_measured(cmd)
        metrics = json.loads((report / "metrics.json").read_text())
        scored = metrics["models"]["model"]["n_rows"]
        print(
            f"truth {n_truth:>9,} rows ({fraction:.0%} of the{where.replace('_', ' ')} "
            f"objects): {seconds:6.1f} s, "
            f"peak RSS {rss / 2**20:6.0f} MiB, {scored:,} rows scored"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
