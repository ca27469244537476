"""Which simulated galaxies are written: the photometric limit and a spec-z-like selection.

Spectroscopic samples are bright: the probability that a galaxy has a secure redshift falls
smoothly around i ~ 22.5 (wide-area surveys) with a faint tail from deep surveys that is
dominated by emission-line galaxies, whose redshifts are easy to measure.
"""

from __future__ import annotations

import numpy as np

SPEC_I_HALF = 22.5
"""Observed i magnitude (AB) at which the bright-survey selection probability is 1/2."""
SPEC_I_WIDTH = 0.4
"""Width (mag) of the logistic fall-off of the bright-survey selection."""
SPEC_TAIL = 0.04
"""Selection probability of faint galaxies with strong lines (deep-survey tail)."""
SPEC_TAIL_EW = 40.0
"""H-alpha equivalent width (Angstrom, rest) at which the faint tail reaches half of its value."""


def spec_probability(mag_i: np.ndarray, ew_halpha: np.ndarray) -> np.ndarray:
    """Probability in [0, 1] that a galaxy enters the spectroscopic sample, shape (n,).

    Args:
        mag_i: observed i-band magnitude, AB (NaN for non-positive fluxes gives 0).
        ew_halpha: rest-frame H-alpha equivalent width in Angstrom (a proxy for all lines).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        bright = 1.0 / (1.0 + np.exp((mag_i - SPEC_I_HALF) / SPEC_I_WIDTH))
        tail = SPEC_TAIL * (0.25 + 0.75 * ew_halpha / (ew_halpha + SPEC_TAIL_EW))
        p = bright + (1.0 - bright) * tail
    return np.nan_to_num(p, nan=0.0)
