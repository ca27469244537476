"""What the compact PDF costs: bytes per object and the change in CRPS and PIT KS.

    python benchmarks/bench_compact_pdf.py --model raypz-demo/model --truth raypz-demo/test

Predicts full-resolution PDFs (float32 on the artifact's grid) for the rows of ``--truth`` with
the artifact in-process, encodes them with :mod:`raypz.compact` (the form stored in the PDF
catalog), decodes them, and prints for both: bytes per object (in memory, and Parquet with
zstd on disk), mean CRPS, PIT KS statistic and 68% coverage, with the relative changes
(target: < 1% for CRPS and PIT KS). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import io as stdio

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raypz import compact
from raypz import flags as fl
from raypz.infer import CatalogPredictor
from raypz.metrics import coverage, crps, pit, pit_metrics
from raypz.metrics import read_table as read_object_table


def parquet_bytes(table: pa.Table) -> int:
    """Size of ``table`` written as Parquet with zstd (bytes)."""
    sink = stdio.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.tell()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="artifact directory")
    p.add_argument("--truth", required=True, help="object table with true redshifts")
    p.add_argument("--rows", type=int, default=50_000, help="rows to use (first N)")
    a = p.parse_args()
    predictor = CatalogPredictor(a.model, device="cpu")
    columns = [*predictor.input_columns, predictor.columns.redshift]
    table = read_object_table(a.truth, columns).slice(0, a.rows)
    x, flags = predictor.artifact.transform(table)
    ok = (flags & fl.NO_PDF) == 0
    pdf, _ = predictor.ensemble.predict(x[ok])
    z = table[predictor.columns.redshift].to_numpy()[ok]
    grid = predictor.artifact.grid
    start, values = compact.encode(pdf)
    back = compact.decode(start, values, grid.n, grid.dz)

    full_table = pa.table({"pdf": pa.FixedSizeListArray.from_arrays(pa.array(pdf.ravel()), grid.n)})
    compact_table = pa.table({"pdf_start": pa.array(start, pa.uint16()), "pdf": values})
    n = len(pdf)
    rows = {
        "float32 grid": (pdf, pdf.nbytes / n, parquet_bytes(full_table) / n),
        compact.ENCODING: (
            back,
            (values.nbytes + start.astype(np.uint16).nbytes) / n,
            parquet_bytes(compact_table) / n,
        ),
    }
    print(f"# {n:,} objects, grid of {grid.n} points, model {predictor.artifact.model_id}")
    print(f"{'form':<24}{'B/obj mem':>10}{'B/obj pq':>10}{'CRPS':>10}{'PIT KS':>10}{'cov68':>8}")
    ref = None
    for name, (p_, mem, disk) in rows.items():
        c = float(np.mean(crps(p_, grid, z)))
        u = pit(p_, grid, z)
        ks, cov = pit_metrics(u)["pit_ks"], coverage(u)["coverage_68"]
        print(f"{name:<24}{mem:>10.1f}{disk:>10.1f}{c:>10.5f}{ks:>10.5f}{cov:>8.4f}")
        if ref is None:
            ref = (c, ks)
        else:
            print(
                f"relative change: CRPS {100 * (c - ref[0]) / ref[0]:+.3f}%,"
                f" PIT KS {100 * (ks - ref[1]) / ref[1]:+.3f}% (target: |change| < 1%)"
            )


if __name__ == "__main__":
    main()
