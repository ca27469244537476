"""Fourier transforms of the galaxy and PSF profiles used to draw cutouts.

All transforms are of unit-flux, circular profiles as functions of the dimensionless wavenumber
``u = k * r`` (``k`` in rad/arcsec, ``r`` a radius in arcsec); ellipticity is applied by the
caller through a linear map of ``k``. Drawing in Fourier space handles cusps (de Vaucouleurs
bulges smaller than a pixel) exactly and turns PSF convolution into a product.
"""

from __future__ import annotations

import functools

import numpy as np

DEVAUCOULEURS_B = 7.669249
"""b_4 of the Sersic n=4 profile exp(-b_4 ((r / r_e)^(1/4) - 1)): half the light inside r_e."""
SERSIC_TRUNCATION = 10.0
"""The n=4 profile is truncated at this many half-light radii (and renormalised)."""
EXPONENTIAL_HALF_LIGHT = 1.678347
"""Half-light radius of an exponential disk in units of its scale length."""

_ROOT_U_STEP = 0.004
_ROOT_U = np.arange(0.0, 50.0, _ROOT_U_STEP)
"""Table of sqrt(u): dense where the transform changes fast, reaching u = 2500."""


@functools.cache
def _devaucouleurs_table() -> np.ndarray:
    """Hankel transform of the unit-flux n=4 profile (r_e = 1) at u = _ROOT_U**2, float32.

    Integrated numerically (log-spaced radii) at 300 values of u, then resampled onto the
    sqrt(u) table. scipy is imported here: only cutouts need it.
    """
    from scipy.special import j0

    r = np.logspace(-9.0, np.log10(SERSIC_TRUNCATION), 12_000)
    profile = np.exp(-DEVAUCOULEURS_B * (r**0.25 - 1.0))
    weight = profile * r * r * np.gradient(np.log(r))  # I(r) r dr in log r
    u_log = np.logspace(-3.0, np.log10(_ROOT_U[-1] ** 2), 300)
    exact = j0(np.outer(u_log, r)) @ weight / weight.sum()
    table = np.interp(np.log(np.maximum(_ROOT_U**2, u_log[0])), np.log(u_log), exact)
    table[-1] = 0.0  # beyond the table the transform is taken as 0
    return table.astype(np.float32)


def devaucouleurs_ft(u: np.ndarray) -> np.ndarray:
    """Fourier transform of a unit-flux de Vaucouleurs profile at ``u = k r_e`` (any shape).

    Linear interpolation in sqrt(u) on a fixed table (faster than a search in log u).
    """
    pos = np.minimum(np.sqrt(u) * (1.0 / _ROOT_U_STEP), _ROOT_U.size - 1.001)
    i = pos.astype(np.int32)
    w = pos - i
    table = _devaucouleurs_table()
    return table[i] * (1.0 - w) + table[i + 1] * w


def exponential_ft(u: np.ndarray) -> np.ndarray:
    """Fourier transform of a unit-flux exponential disk at ``u = k r_e`` (any shape)."""
    t = 1.0 + (u * (1.0 / EXPONENTIAL_HALF_LIGHT)) ** 2
    return 1.0 / (t * np.sqrt(t))


@functools.cache
def _kolmogorov_fwhm_unit() -> float:
    """FWHM (arcsec) of the PSF whose transfer function is exp(-k^(5/3)), k in rad/arcsec."""
    from scipy.optimize import brentq
    from scipy.special import j0

    k = np.linspace(0.0, 25.0, 20_001)
    otf_k = np.exp(-(k ** (5.0 / 3.0))) * k

    def profile(r: float) -> float:
        return float(np.trapezoid(otf_k * j0(k * r), k))

    peak = profile(0.0)
    return 2.0 * brentq(lambda r: profile(r) - 0.5 * peak, 0.1, 3.0, xtol=1e-8)


def kolmogorov_otf(k: np.ndarray, fwhm_arcsec: float) -> np.ndarray:
    """Optical transfer function of a Kolmogorov-turbulence PSF of the given FWHM.

    ``exp(-(k / k0)^(5/3))`` with ``k0`` set by the FWHM; ``k`` in rad/arcsec (any shape).
    """
    k0 = _kolmogorov_fwhm_unit() / fwhm_arcsec
    return np.exp(-((k / k0) ** (5.0 / 3.0)))
