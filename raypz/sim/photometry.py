"""LSST-like coadd photometric noise in flux space (nJy), per field and survey depth.

The 5-sigma point-source coadd depths come from ``photerr``'s LSST model (Ivezic et al. 2019
with the LSST cadence of visits per year), for ``years * field.visit_factor`` years of visits and
the field's seeing. The variance of a flux measurement follows Ivezic et al. 2019 eq. 5 written
in flux: ``sigma^2 = S * (e + F / F_c)`` with

* ``S`` the sky variance of a point source in the coadd (``gamma * F5^2``, nJy^2),
* ``F_c = gamma F5 / (0.04 - gamma)`` the flux at which source photon noise equals sky noise,
* ``e = 1 + (sigma_gal / sigma_psf)^2`` the extended-source penalty of a Gaussian galaxy of the
  object's half-light radius seen through a Gaussian PSF of the band's FWHM (a matched-filter
  flux such as cModel).

Noise is Gaussian in flux, so faint objects can have negative fluxes; errors are always > 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from raypz.columns import BANDS, mag_to_flux
from raypz.sim.config import FIELDS, FieldSpec

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
HALF_LIGHT_PER_SIGMA = np.sqrt(2.0 * np.log(2.0))
"""Half-light radius of a circular 2-D Gaussian in units of its sigma."""


@dataclass(frozen=True)
class NoiseModel:
    """Coadd noise of one field at one depth; arrays have shape (n_bands,) in band order.

    Attributes:
        field: the observed field.
        years: survey years of visits (before the field's visit factor).
        m5: 5-sigma point-source coadd depth, AB mag.
        psf_fwhm: PSF FWHM, arcsec.
        sky_var: point-source sky variance of the coadd ``S``, nJy^2.
        poisson_flux: ``F_c`` in nJy.
        visits: number of single visits per band (``photerr``'s visits per year x years x
            visit factor).
    """

    field: FieldSpec
    years: int
    m5: np.ndarray
    psf_fwhm: np.ndarray
    sky_var: np.ndarray
    poisson_flux: np.ndarray
    visits: np.ndarray

    def extension(self, half_light_arcsec: np.ndarray) -> np.ndarray:
        """Extended-source variance factor ``e`` per object and band, shape (n, n_bands)."""
        sigma_gal = np.asarray(half_light_arcsec)[:, None] / HALF_LIGHT_PER_SIGMA
        sigma_psf = self.psf_fwhm[None, :] / FWHM_PER_SIGMA
        return 1.0 + (sigma_gal / sigma_psf) ** 2

    def variance_scale(self, true_flux: np.ndarray, extension: np.ndarray) -> np.ndarray:
        """``e + max(F, 0) / F_c``: variance in units of the sky variance, shape (n, n_bands)."""
        return extension + np.maximum(true_flux, 0.0) / self.poisson_flux

    def flux_err(self, true_flux: np.ndarray, extension: np.ndarray) -> np.ndarray:
        """1-sigma coadd flux error in nJy, shape (n, n_bands)."""
        return np.sqrt(self.sky_var * self.variance_scale(true_flux, extension))


@functools.cache
def noise_model(years: int, field_name: str) -> NoiseModel:
    """The :class:`NoiseModel` of ``field_name`` after ``years`` of LSST (cached per process)."""
    import photerr

    field = FIELDS[field_name]
    params = photerr.LsstErrorParams()
    theta = {b: params.theta[b] * field.seeing_factor for b in BANDS}
    model = photerr.LsstErrorModel(nYrObs=years * field.visit_factor, theta=theta)
    m5 = np.array([model.getLimitingMags(nSigma=5, coadded=True)[b] for b in BANDS])
    gamma = np.array([params.gamma[b] for b in BANDS])
    flux5 = mag_to_flux(m5)
    visits = np.array([params.nVisYr[b] * years * field.visit_factor for b in BANDS])
    return NoiseModel(
        field=field,
        years=years,
        m5=m5,
        psf_fwhm=np.array([theta[b] for b in BANDS]),
        sky_var=gamma * flux5**2,
        poisson_flux=gamma * flux5 / (0.04 - gamma),
        visits=np.maximum(np.rint(visits), 1).astype(np.int64),
    )
