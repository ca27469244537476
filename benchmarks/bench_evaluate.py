"""``jobs/evaluate.py`` on a spec-z sample of a large PDF catalog: wall time and peak memory.

    python benchmarks/bench_evaluate.py                   # builds a 1e6-row catalog (~1 min)
    python benchmarks/bench_evaluate.py --catalog CAT --workdir W   # reuse one built before

A data release's spec-z sample is well under 1% of its catalog. The evaluation reads only the
sample's rows of the catalog (``read_predictions(..., only_ids=...)``), so its memory should
follow the sample, not the catalog. Builds (unless given) the synthetic HATS PDF catalog of
``benchmarks/bench_nz.py`` (compact two-peaked PDFs, objectIds 0..rows-1), writes truth tables
holding each ``--fractions`` of its objects (redshift and i flux in nJy, random), and runs the
job on each in its own process, without plots. Printed, nothing asserted: wall time, peak RSS
(``ru_maxrss`` of the job's process) and the rows the job scored.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_nz import catalog_of, catalog_parser, run_measured

from raypz.columns import DEFAULT_COLUMNS as C

REPO = Path(__file__).resolve().parents[1]


def write_truth(path: Path, rows: int, fraction: float, seed: int = 1) -> int:
    """A truth table of ``fraction`` of objectIds 0..rows-1 (random redshifts in [0.05, 3) and
    i fluxes in nJy); returns its row count."""
    rng = np.random.default_rng(seed)
    ids = np.flatnonzero(rng.random(rows) < fraction)
    table = pa.table(
        {
            C.object_id: ids,
            C.redshift: rng.uniform(0.05, 3.0, ids.size),
            C.flux.format(band="i"): rng.uniform(500.0, 5e4, ids.size),
        }
    )
    pq.write_table(table, path)
    return ids.size


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
    a = p.parse_args(argv)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_evaluate_"))
    work.mkdir(parents=True, exist_ok=True)
    catalog = catalog_of(a, work)
    for fraction in a.fractions:
        truth = work / f"truth_{fraction:g}.parquet"
        n_truth = write_truth(truth, a.rows, fraction)
        report = work / f"report_{fraction:g}"
        cmd = [sys.executable, str(REPO / "jobs" / "evaluate.py"), "--predictions", catalog]
        cmd += ["--truth", str(truth), "--report", str(report), "--no-plots"]
        seconds, rss = run_measured(cmd)
        metrics = json.loads((report / "metrics.json").read_text())
        scored = metrics["models"]["model"]["n_rows"]
        print(
            f"truth {n_truth:>9,} rows ({fraction:.0%} of the catalog): {seconds:6.1f} s, "
            f"peak RSS {rss / 2**20:6.0f} MiB, {scored:,} rows scored"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
