"""Planck 2018 distances tabulated once on a redshift grid and interpolated.

astropy's per-call overhead is large, so every distance the simulator needs is computed in one
vectorised astropy call per quantity and then read by ``np.interp``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

Z_TABLE_MAX = 6.0
"""Highest tabulated redshift: the highest ``SurveyConfig.z_max`` (np.interp would hold the
last tabulated distance beyond it)."""


@dataclass(frozen=True)
class DistanceTable:
    """Planck18 distances on a fine redshift grid.

    Attributes:
        z: redshift grid, shape (n,), from 0.001 to :data:`Z_TABLE_MAX`.
        distance_modulus: 5 log10(D_L / 10 pc), AB mag, shape (n,).
        angular_diameter_mpc: angular-diameter distance D_A in Mpc, shape (n,).
        dvdz_deg2: comoving volume per unit redshift per square degree, Mpc^3, shape (n,).
    """

    z: np.ndarray
    distance_modulus: np.ndarray
    angular_diameter_mpc: np.ndarray
    dvdz_deg2: np.ndarray

    def modulus(self, z: np.ndarray) -> np.ndarray:
        """Distance modulus in mag at redshifts ``z`` (any shape)."""
        return np.interp(z, self.z, self.distance_modulus)

    def kpc_per_arcsec(self, z: np.ndarray) -> np.ndarray:
        """Proper kpc subtended by one arcsec at redshifts ``z`` (any shape)."""
        return np.interp(z, self.z, self.angular_diameter_mpc) * (1e3 * np.pi / 180.0 / 3600.0)

    def volume_per_deg2(self, z: np.ndarray) -> np.ndarray:
        """dV_c / dz per square degree in Mpc^3 at redshifts ``z`` (any shape)."""
        return np.interp(z, self.z, self.dvdz_deg2)


@functools.cache
def planck18() -> DistanceTable:
    """The Planck18 :class:`DistanceTable` (computed once per process, ~0.1 s)."""
    from astropy.cosmology import Planck18

    # ~0.001 steps; up to z = 4 the points of the table that simulations were made with when it
    # ended there, so that their catalogs stay the same bit for bit
    z = np.concatenate([np.linspace(0.001, 4.0, 4000), np.linspace(4.0, Z_TABLE_MAX, 2001)[1:]])
    deg2_in_sr = (np.pi / 180.0) ** 2
    return DistanceTable(
        z=z,
        distance_modulus=Planck18.distmod(z).value,
        angular_diameter_mpc=Planck18.angular_diameter_distance(z).value,
        dvdz_deg2=Planck18.differential_comoving_volume(z).value * deg2_in_sr,
    )
