"""Dust attenuation inside galaxies (Calzetti et al. 2000, and a modified Calzetti law with a
2175 Angstrom bump for the ``alt`` SED set) and by the intergalactic medium (Madau 1995).
Wavelengths in Angstrom.
"""

from __future__ import annotations

import numpy as np

CALZETTI_RV = 4.05
"""Total-to-selective attenuation R_V of the Calzetti law."""

LYMAN_SERIES = np.array([1215.67, 1025.72, 972.54, 949.74])
"""Rest wavelengths (Angstrom) of Ly alpha, beta, gamma, delta."""

MADAU_COEFFICIENTS = np.array([3.6e-3, 1.7e-3, 1.2e-3, 9.3e-4])
"""Madau (1995) line-blanketing amplitudes A_j of tau_j = A_j (lambda_obs / lambda_j)^3.46."""


def calzetti_k(wavelength: np.ndarray) -> np.ndarray:
    """Calzetti (2000) starburst attenuation curve k(lambda) for rest wavelengths in Angstrom.

    The two published pieces (0.12-0.63 and 0.63-2.2 micron) are extended linearly beyond
    their ends and kept non-negative. The attenuation in mag is ``E(B-V) * k``.
    """
    lam = np.asarray(wavelength, dtype=np.float64) / 1e4  # micron

    def blue(x):
        return 2.659 * (-2.156 + 1.509 / x - 0.198 / x**2 + 0.011 / x**3) + CALZETTI_RV

    def red(x):
        return 2.659 * (-1.857 + 1.040 / x) + CALZETTI_RV

    slope_uv = (blue(0.12) - blue(0.125)) / (0.12 - 0.125)
    slope_ir = (red(2.2) - red(2.15)) / (2.2 - 2.15)
    k = np.where(lam < 0.63, blue(np.clip(lam, 0.12, None)), red(np.clip(lam, None, 2.2)))
    k = np.where(lam < 0.12, blue(0.12) + slope_uv * (lam - 0.12), k)
    k = np.where(lam > 2.2, red(2.2) + slope_ir * (lam - 2.2), k)
    return np.clip(k, 0.0, None)


BUMP_WAVELENGTH, BUMP_WIDTH = 2175.0, 350.0
"""Centre and FWHM (Angstrom) of the Drude profile of the 2175 Angstrom UV bump."""


def modified_calzetti_k(
    wavelength: np.ndarray, delta: float = -0.3, bump: float = 1.5
) -> np.ndarray:
    """A steeper Calzetti law with a UV bump (Noll et al. 2009), per unit E(B-V).

    ``k'(lambda) = (k_Calzetti(lambda) + D(lambda)) (lambda / 5500)^delta`` with ``D`` a Drude
    profile of amplitude ``bump`` at 2175 Angstrom, rescaled so that ``k'(4400) - k'(5500) = 1``
    (E(B-V) keeps its meaning). The ``alt`` SED set's dust law: steeper in the UV than
    Calzetti's (``delta < 0``), with the bump that Calzetti's starbursts lack.
    """
    lam = np.asarray(wavelength, dtype=np.float64)

    def raw(x):
        width2 = (x * BUMP_WIDTH) ** 2
        drude = bump * width2 / ((x**2 - BUMP_WAVELENGTH**2) ** 2 + width2)
        return (calzetti_k(x) + drude) * (x / 5500.0) ** delta

    norm = raw(np.array(4400.0)) - raw(np.array(5500.0))
    return np.clip(raw(lam) / norm, 0.0, None)


def igm_transmission(wavelength_obs: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean IGM transmission exp(-tau) of the Lyman series (Madau 1995).

    Args:
        wavelength_obs: observed wavelengths in Angstrom, shape (n_wave,).
        z: source redshifts, shape (n_z,).

    Returns:
        Transmission in [0, 1], shape (n_z, n_wave). Each line absorbs at observed wavelengths
        between its rest wavelength and its wavelength redshifted to the source. The Lyman
        continuum is not modelled: the templates carry no flux below 912 Angstrom rest.
    """
    lam = np.asarray(wavelength_obs, dtype=np.float64)[None, :]
    zs = np.asarray(z, dtype=np.float64)[:, None]
    tau = np.zeros(np.broadcast_shapes(lam.shape, zs.shape))
    for line, amplitude in zip(LYMAN_SERIES, MADAU_COEFFICIENTS, strict=True):
        absorbed = (lam > line) & (lam < line * (1.0 + zs))
        tau += np.where(absorbed, amplitude * (lam / line) ** 3.46, 0.0)
    return np.exp(-tau)
