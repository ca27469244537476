"""Asinh magnitudes (luptitudes, Lupton, Gunn & Szalay 1999) of fluxes in nJy.

Unlike log magnitudes they are defined for zero and negative fluxes, which are legal
measurements of faint objects, and they approach AB magnitudes for bright ones.
"""

from __future__ import annotations

import numpy as np

from raypz.columns import AB_ZEROPOINT_NJY, POGSON


def luptitude(flux_njy: np.ndarray, softening_njy: np.ndarray) -> np.ndarray:
    """Asinh magnitude (AB-like) of ``flux_njy`` with softening ``b`` in nJy, per band.

    ``mu = 31.4 - 2.5/ln10 * (asinh(f / 2b) + ln b)``; for f >> b this equals the AB magnitude.
    Shapes broadcast: (N, B) fluxes with (B,) softenings.
    """
    b = np.asarray(softening_njy, dtype=np.float64)
    return AB_ZEROPOINT_NJY - POGSON * (np.arcsinh(np.asarray(flux_njy) / (2.0 * b)) + np.log(b))


def luptitude_error(
    flux_njy: np.ndarray, flux_err_njy: np.ndarray, softening_njy: np.ndarray
) -> np.ndarray:
    """1-sigma error of :func:`luptitude` (mag) propagated from the flux error (nJy)."""
    b = np.asarray(softening_njy, dtype=np.float64)
    f = np.asarray(flux_njy, dtype=np.float64)
    return POGSON * np.asarray(flux_err_njy) / np.sqrt(f * f + 4.0 * b * b)
