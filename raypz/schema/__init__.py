"""Validate an object table against its contract (DESIGN 3.1) before any work starts.

Two kinds of finding, treated differently:

- **Contract breaches stop the job** with a :class:`ContractError` naming the file, the column
  and the rule: an unreadable file, a missing column, a wrong type, a type that changes between
  shards, implausible units (coordinates outside degrees' range, AB magnitudes where nJy fluxes
  belong), a null or duplicated ``objectId``.
- **Per-row problems are counted, never raised, and no row is dropped** (a missing band is a
  legal measurement that the features mask and flag): non-finite fluxes, errors that are not
  positive beside a finite flux, absurd fluxes, rows without any band, missing labels.

The input may be one Parquet or FITS table file, a directory of shards (either format, see
:mod:`raypz.tables`) or a HATS catalog, local or a URI; the rules and messages are the same for
both formats. :func:`validate_dataset` checks it all before a job starts;
:func:`check_file_schema` checks one file's footer (or FITS header), cheap enough for every file
an inference job opens.

>>> import numpy as np, pyarrow as pa, pyarrow.parquet as pq, tempfile, os
>>> from raypz.columns import DEFAULT_COLUMNS as C
>>> n, rng = 100, np.random.default_rng(0)
>>> table = {C.object_id: np.arange(n), C.ra: rng.uniform(0, 1, n), C.dec: rng.uniform(0, 1, n)}
>>> for f, e in zip(C.flux_columns(), C.flux_err_columns()):
...     table[f], table[e] = rng.lognormal(6, 1, n), np.full(n, 10.0)
>>> table[C.flux_columns()[0]][:3] = np.nan  # three rows miss the u band
>>> path = os.path.join(tempfile.mkdtemp(), "shard.parquet")
>>> pq.write_table(pa.table(table), path)
>>> report = validate_dataset(path)
>>> report.rows, report.problems.nonfinite_flux["u"], report.problems.flagged_rows
(100, 3, 3)
"""

from raypz.schema.errors import ContractError, RefusedError
from raypz.schema.report import RowProblems, ValidationReport
from raypz.schema.rules import check_file_schema
from raypz.schema.validate import validate_dataset
from raypz.schema.values import REDSHIFT_RANGE, usable_redshift

__all__ = [
    "REDSHIFT_RANGE",
    "ContractError",
    "RefusedError",
    "RowProblems",
    "ValidationReport",
    "check_file_schema",
    "usable_redshift",
    "validate_dataset",
]
