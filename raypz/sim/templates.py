"""Galaxy SEDs integrated through the LSST filters once, on a (type, dust, z, band) grid.

SEDs: the six CWW + Kinney templates of BPZ (Benitez 2004: El, Sbc, Scd, Im, SB3, SB2) shipped
in the ``desc-bpz`` package, ordered red to blue as SED types 0 ... 5. A continuous type ``t``
mixes templates ``floor(t)`` and ``floor(t) + 1`` linearly in flux, each normalised to the same
rest-frame B luminosity. The templates' own emission lines are cut out
(:data:`raypz.sim.lines.STRIP_WINDOWS`) and lines are added back per object with strengths
from :mod:`raypz.sim.lines`. Extra Calzetti dust E(B-V) and Madau IGM absorption are applied
before integration. Filters: ``speclite``'s ``lsst2023-{ugrizy}`` and ``bessell-B``.

Photometric convention: band-averaged AB flux ``<f_nu> = int f_lambda T lambda dlambda /
int T c / lambda dlambda`` (photon counting). A galaxy of rest-frame absolute B magnitude
``M_B`` at redshift ``z`` has flux ``10**(-0.4 (M_B + DM(z) - 31.4)) * unit_flux`` nJy in
each band, where ``unit_flux`` comes from :meth:`SedGrid.unit_fluxes`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from raypz.columns import BANDS
from raypz.sim import attenuation, lines

TEMPLATE_NAMES: tuple[str, ...] = ("El", "Sbc", "Scd", "Im", "SB3", "SB2")
MAX_SED_TYPE = float(len(TEMPLATE_NAMES) - 1)
EBV_GRID = np.array([0.0, 0.1, 0.2, 0.3, 0.45])
"""Extra stellar dust E(B-V) (mag) at which the grid is computed; interpolated between."""
Z_GRID = np.arange(0.0, 3.6001, 0.005)
"""Redshifts of the grid; shape (721,)."""

_OBS_WAVE = np.arange(3200.0, 11000.0, 5.0)  # observed-frame integration grid, Angstrom


@dataclass(frozen=True)
class SedGrid:
    """Template photometry precomputed for every (type, dust, redshift, band).

    Attributes:
        continuum_mag: ``m_b - M_B - DM(z)`` (K-correction plus IGM) of the line-free continuum,
            AB mag, shape (n_types, n_ebv, n_z, n_bands).
        line_continuum: rest-frame f_lambda of the continuum at each line, per unit rest-frame
            B flux, shape (n_types, n_ebv, n_lines); multiplied by an equivalent width
            (Angstrom) it gives the line flux in the units of ``line_response``.
        line_response: band flux (same units as ``10**(-0.4 continuum_mag)``) of a unit line
            at each redshift, shape (n_lines, n_z, n_bands).
    """

    continuum_mag: np.ndarray
    line_continuum: np.ndarray
    line_response: np.ndarray

    def unit_fluxes(
        self,
        sed_type: np.ndarray,
        ebv: np.ndarray,
        z: np.ndarray,
        ew_halpha: np.ndarray,
        line_ratios: np.ndarray,
    ) -> np.ndarray:
        """Band fluxes per unit ``10**(-0.4 (M_B + DM - 31.4))`` nJy, shape (n, n_bands).

        Args:
            sed_type: continuous type in [0, 5], shape (n,).
            ebv: extra dust E(B-V) in mag, within the grid, shape (n,).
            z: redshift within the grid, shape (n,).
            ew_halpha: rest-frame H-alpha equivalent width in Angstrom, shape (n,).
            line_ratios: line fluxes relative to H-alpha, shape (n, n_lines).
        """
        t0 = np.minimum(np.floor(sed_type).astype(np.int64), len(TEMPLATE_NAMES) - 2)
        wt = (sed_type - t0)[:, None]
        d0 = np.clip(np.searchsorted(EBV_GRID, ebv, side="right") - 1, 0, EBV_GRID.size - 2)
        wd = ((ebv - EBV_GRID[d0]) / (EBV_GRID[d0 + 1] - EBV_GRID[d0]))[:, None]
        zpos = np.clip(z / Z_GRID[1], 0.0, Z_GRID.size - 1.000001)
        z0 = zpos.astype(np.int64)
        wz = (zpos - z0)[:, None]

        def continuum(t):  # (n, n_bands) flux of template t, bilinear in (dust, z) in mag
            g = self.continuum_mag
            low = g[t, d0, z0] + wz * (g[t, d0, z0 + 1] - g[t, d0, z0])
            high = g[t, d0 + 1, z0] + wz * (g[t, d0 + 1, z0 + 1] - g[t, d0 + 1, z0])
            return 10.0 ** (-0.4 * (low + wd * (high - low)))

        def line_level(t):  # (n, n_lines) continuum at each line, linear in dust
            c = self.line_continuum
            return c[t, d0] + wd * (c[t, d0 + 1] - c[t, d0])

        flux = (1 - wt) * continuum(t0) + wt * continuum(t0 + 1)
        halpha_cont = ((1 - wt) * line_level(t0) + wt * line_level(t0 + 1))[:, lines.HALPHA]
        line_flux = (ew_halpha * halpha_cont)[:, None] * line_ratios  # (n, n_lines)
        r0 = self.line_response[:, z0].transpose(1, 0, 2)  # (n, n_lines, n_bands)
        r1 = self.line_response[:, z0 + 1].transpose(1, 0, 2)
        response = r0 + wz[:, :, None] * (r1 - r0)
        return flux + np.einsum("nl,nlb->nb", line_flux, response)


def load_templates() -> list[tuple[np.ndarray, np.ndarray]]:
    """The six BPZ templates as (rest wavelength Angstrom, f_lambda) pairs, lines removed."""
    folder = resources.files("desc_bpz") / "data_files" / "SED"
    out = []
    for name in TEMPLATE_NAMES:
        table = np.loadtxt(folder / f"{name}_B2004a.sed")
        wave, flux = table[:, 0], table[:, 1].copy()
        for lo, hi in lines.STRIP_WINDOWS:
            left = np.median(flux[(wave >= lo - 15) & (wave < lo)])
            right = np.median(flux[(wave > hi) & (wave <= hi + 15)])
            inside = (wave >= lo) & (wave <= hi)
            flux[inside] = np.interp(wave[inside], [lo, hi], [left, right])
        out.append((wave, flux))
    return out


def _filter_weights(wave: np.ndarray, names: list[str]) -> np.ndarray:
    """Integration weights ``T lambda dlambda / int T / lambda dlambda``, shape (n_wave, n)."""
    import speclite.filters

    step = np.gradient(wave)
    columns = []
    for name in names:
        f = speclite.filters.load_filter(name)
        t = np.interp(wave, f.wavelength, f.response, left=0.0, right=0.0)
        columns.append(t * wave * step / np.sum(t / wave * step))
    return np.stack(columns, axis=1)


@functools.cache
def sed_grid() -> SedGrid:
    """The :class:`SedGrid` of this process (computed once: ~0.5 s, plus ~1 s of imports)."""
    bands = [f"lsst2023-{b}" for b in BANDS]
    obs_weights = _filter_weights(_OBS_WAVE, bands)  # (n_wave, n_bands)
    rest_wave = np.arange(3000.0, 6500.0, 2.0)
    b_weights = _filter_weights(rest_wave, ["bessell-B"])[:, 0]  # (n_rest,)

    rest_of_obs = _OBS_WAVE[None, :] / (1.0 + Z_GRID[:, None])  # (n_z, n_wave)
    igm = attenuation.igm_transmission(_OBS_WAVE, Z_GRID)  # (n_z, n_wave)
    k_obs = attenuation.calzetti_k(rest_of_obs)
    k_rest = attenuation.calzetti_k(rest_wave)
    k_lines = attenuation.calzetti_k(lines.LINE_WAVELENGTHS)

    n_t, n_d = len(TEMPLATE_NAMES), EBV_GRID.size
    continuum_mag = np.empty((n_t, n_d, Z_GRID.size, len(BANDS)))
    line_continuum = np.empty((n_t, n_d, lines.LINE_WAVELENGTHS.size))
    for t, (wave, flux) in enumerate(load_templates()):
        sed_obs = np.interp(rest_of_obs, wave, flux) * igm / (1.0 + Z_GRID[:, None])
        sed_rest = np.interp(rest_wave, wave, flux)
        sed_lines = np.interp(lines.LINE_WAVELENGTHS, wave, flux)
        for d, ebv in enumerate(EBV_GRID):
            dust_obs = 10.0 ** (-0.4 * ebv * k_obs)
            rest_b = np.sum(sed_rest * 10.0 ** (-0.4 * ebv * k_rest) * b_weights)
            band = (sed_obs * dust_obs) @ obs_weights / rest_b  # (n_z, n_bands)
            continuum_mag[t, d] = -2.5 * np.log10(np.maximum(band, 1e-30))
            line_continuum[t, d] = sed_lines * 10.0 ** (-0.4 * ebv * k_lines) / rest_b

    # A line of unit flux at lambda_obs adds T(lambda_obs) lambda_obs / int T / lambda dlambda.
    line_obs = lines.LINE_WAVELENGTHS[:, None] * (1.0 + Z_GRID[None, :])  # (n_lines, n_z)
    step = np.gradient(_OBS_WAVE)
    per_lambda = obs_weights / (_OBS_WAVE * step)[:, None]  # T lambda / norm / lambda = T / norm
    line_response = (
        np.stack(
            [
                np.interp(line_obs, _OBS_WAVE, per_lambda[:, b], left=0.0, right=0.0)
                for b in range(len(BANDS))
            ],
            axis=-1,
        )
        * line_obs[:, :, None]
    )
    return SedGrid(continuum_mag, line_continuum, line_response)
