"""Figures and headline numbers of raypz's simulated survey (those of docs/simulation.md).

Examples:
    python jobs/plot_simulation.py --output docs/                  # ~20 s on 2 cores
    python jobs/plot_simulation.py --output docs/ --n-objects 50000

Simulates, in-process and with fixed seeds, a wide y10 sample (--n-objects rows), a deep y10
and a wide y1 sample (half as many each), a spectroscopic-like wide sample and a few cutouts;
writes sim_nz.png, sim_counts.png, sim_colours.png, sim_snr.png and sim_cutouts.png into the
output directory and prints the numbers that docs/simulation.md quotes.
"""

from __future__ import annotations

import argparse
import sys

from raypz.cli import output_path
from raypz.job_errors import run_job
from raypz.sim.plots import simulation_figures


def build_parser() -> argparse.ArgumentParser:
    """The job's parser: where the figures go and how many rows the wide sample has."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--output", type=output_path, required=True, help="directory for the PNGs (local or URI)"
    )
    p.add_argument("--n-objects", type=int, default=100_000, help="rows of the wide sample")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = build_parser().parse_args(argv)
    print("\n".join(simulation_figures(args.output, args.n_objects)))
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main))
