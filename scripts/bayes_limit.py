"""The photometry's limit: Bayes posteriors of an object table under a population sample.

Writes a predictions table (objectId, summaries, flags, pdf, n_eff) of the objects in
``--objects`` from :class:`raypz.baselines.prior_sample.PriorSamplePosterior`: draws of true
redshift and ugrizy AB magnitudes from a population model (``--prior``: a Parquet table with
``redshift`` and one column per band, the layout pzflow's samples have), and the flux-error
model fitted to ``--errors-from``'s own fluxes and errors. Score it like any model:

    python scripts/bayes_limit.py --prior draws.parquet \\
        --objects ../shared/data/buzzard_test.parquet \\
        --errors-from ../shared/data/buzzard_train.parquet --output bayes/test.parquet
    python jobs/evaluate.py --predictions bayes/test.parquet \\
        --truth ../shared/data/buzzard_test.parquet --report bayes/report

The Buzzard benchmark's population model ships with pzflow (a normalising flow fitted to the
100,000 Buzzard galaxies the benchmark was drawn from). pzflow needs JAX, so draw in a separate
environment (docs/buzzard_results.md, "The photometry's limit"):

    python -m venv /tmp/pzenv && /tmp/pzenv/bin/pip install pzflow pyarrow
    /tmp/pzenv/bin/python -c "import pandas as pd; from pzflow.examples import get_example_flow; \\
        flow = get_example_flow(); pd.concat([flow.sample(200_000, seed=100 + k) \\
        for k in range(0, 5_000_000, 200_000)]).to_parquet('draws.parquet', index=False)"

Draws with a non-finite or outside-the-grid redshift or magnitude are left out (counted).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from raypz import io
from raypz.baselines.prior_sample import FluxErrorModel, PriorSamplePosterior
from raypz.columns import BANDS, DEFAULT_COLUMNS, mag_to_flux
from raypz.features import flux_arrays
from raypz.metrics import read_table
from raypz.pdf import ZGrid
from raypz.predictions import predictions_table

GRID = ZGrid(0.0, 3.5, 701)
"""The catalog models' grid (TrainConfig's default), so scores compare point for point."""


def build_parser() -> argparse.ArgumentParser:
    """Flags: the prior draws, the objects, the error-model table, smoothing and output."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--prior", required=True, help="Parquet of draws: redshift, u..y (AB mag).")
    p.add_argument("--objects", required=True, help="object table to predict (fluxes in nJy).")
    p.add_argument(
        "--errors-from",
        default=None,
        help="table whose fluxes and errors fit the error model (default: --objects).",
    )
    p.add_argument("--output", required=True, help="predictions Parquet file (local or URI).")
    p.add_argument(
        "--smoothing",
        type=float,
        default=0.02,
        help="fractional flux kernel h of each draw (~0.92 x a magnitude scatter). (default: 0.02)",
    )
    p.add_argument(
        "--max-draws", type=int, default=None, help="use only the first N draws (default: all)."
    )
    return p


def read_draws(path: str, max_draws: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Redshifts (S,), noiseless fluxes (S, B) in nJy, and the number of unusable draws left out."""
    table = read_table(path, ["redshift", *BANDS])
    z = table["redshift"].to_numpy().astype(np.float64)
    mag = np.stack([table[b].to_numpy().astype(np.float64) for b in BANDS], axis=1)
    ok = np.isfinite(z) & (z >= GRID.z_min) & (z <= GRID.z_max) & np.isfinite(mag).all(axis=1)
    z, flux = z[ok], mag_to_flux(mag[ok])
    if max_draws is not None:
        z, flux = z[:max_draws], flux[:max_draws]
    return z, flux, int((~ok).sum())


def read_fluxes(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """objectId (N,), fluxes and flux errors (N, B) in nJy of an object table."""
    flux_cols, err_cols = DEFAULT_COLUMNS.flux_columns(), DEFAULT_COLUMNS.flux_err_columns()
    table = read_table(path, ["objectId", *flux_cols, *err_cols])
    return table["objectId"].to_numpy(), *flux_arrays(table)


def main(argv: list[str] | None = None) -> int:
    """Predict, write the table, print the error-model fit and the sample's sparsity."""
    args = build_parser().parse_args(argv)
    z, flux, dropped = read_draws(args.prior, args.max_draws)
    _, fit_flux, fit_err = read_fluxes(args.errors_from or args.objects)
    errors = FluxErrorModel.fit(fit_flux, fit_err)
    object_id, obs_flux, obs_err = read_fluxes(args.objects)
    posterior = PriorSamplePosterior(z, flux, errors, smoothing=args.smoothing)
    start = time.perf_counter()
    pdf, flags, n_eff = posterior.predict_pdf(obs_flux, obs_err, GRID)
    seconds = time.perf_counter() - start
    table = predictions_table(object_id, pdf, GRID, flags, extra={"n_eff": n_eff})
    io.write_parquet(table, args.output)
    print(f"{len(z)} draws ({dropped} left out), {len(object_id)} objects in {seconds:.0f} s")
    print("error model max |fit / table - 1| per band:", np.round(errors.max_relative_residual, 4))
    print(
        "effective draws per object, 5/25/50%:", np.round(np.quantile(n_eff, [0.05, 0.25, 0.5]), 1)
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
