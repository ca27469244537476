"""Galaxy SEDs integrated through the LSST filters once, on a (type, dust, z, band) grid.

SEDs: the six CWW + Kinney templates of BPZ (Benitez 2004: El, Sbc, Scd, Im, SB3, SB2) shipped
in the ``desc-bpz`` package, ordered red to blue as SED types 0 ... 5. A continuous type ``t``
mixes templates ``floor(t)`` and ``floor(t) + 1`` linearly in flux, each normalised to the same
rest-frame B luminosity. The templates' own emission lines are cut out
(:data:`raypz.sim.lines.STRIP_WINDOWS`) and lines are added back per object with strengths
from :mod:`raypz.sim.lines`. Extra Calzetti dust E(B-V) and Madau IGM absorption are applied
before integration. Filters: ``speclite``'s ``lsst2023-{ugrizy}`` and ``bessell-B``.

A second, independent set (``sed_set="alt"``) is built from other ingredients: each type is a
two-component galaxy, an old population (the El template) plus young single stellar populations
(the 25 Myr and 5 Myr, Z = 0.008 SSPs shipped with ``desc-bpz``) in type-dependent proportions
of rest-frame B light (:data:`ALT_MIXTURES`), its Lyman continuum removed, attenuated by a
steeper Calzetti law with a 2175 Angstrom bump (:func:`raypz.sim.attenuation.modified_calzetti_k`)
and given the lines of :data:`raypz.sim.lines.ALT_LINES`. Its colours at fixed type, dust and
redshift differ from the default set's by 0.1-0.5 mag, as real galaxies differ from any template
library.

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
"""Redshifts of the default grid; shape (721,). :func:`sed_grid` extends it (same step) when a
survey reaches beyond z = 3.5."""
Z_STEP = 0.005
SED_SETS: tuple[str, ...] = ("default", "alt")

ALT_COMPONENTS: tuple[str, ...] = ("El_B2004a", "ssp_25Myr_z008", "ssp_5Myr_z008")
ALT_MIXTURES = np.array(
    [
        [1.00, 0.00, 0.00],
        [0.82, 0.18, 0.00],
        [0.60, 0.37, 0.03],
        [0.38, 0.52, 0.10],
        [0.18, 0.57, 0.25],
        [0.05, 0.45, 0.50],
    ]
)
"""Share of rest-frame B light of each :data:`ALT_COMPONENTS` member per ``alt`` type 0 ... 5."""

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

    @property
    def n_z(self) -> int:
        """Redshifts in the grid (``Z_STEP`` apart from z = 0)."""
        return self.continuum_mag.shape[2]

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
        zpos = np.clip(z / Z_GRID[1], 0.0, self.n_z - 1.000001)
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


def load_templates(sed_set: str = "default") -> list[tuple[np.ndarray, np.ndarray]]:
    """The six templates of ``sed_set`` as (rest wavelength Angstrom, f_lambda), lines removed.

    ``"default"``: the BPZ CWW + Kinney templates. ``"alt"``: old + young mixtures
    (:data:`ALT_MIXTURES`), each component scaled to unit rest-frame B flux, no flux below the
    Lyman limit.
    """
    if sed_set == "default":
        return [_read_sed(f"{name}_B2004a") for name in TEMPLATE_NAMES]
    if sed_set != "alt":
        raise ValueError(f"sed_set must be one of {SED_SETS}, got {sed_set!r}")
    components = [_read_sed(name) for name in ALT_COMPONENTS]
    wave = np.concatenate([np.arange(500.0, 12000.0, 2.0), np.arange(12000.0, 26000.0, 20.0)])
    rest_wave = np.arange(3000.0, 6500.0, 2.0)
    b_weights = _filter_weights(rest_wave, ["bessell-B"])[:, 0]
    basis = []
    for w, f in components:
        flux = np.interp(wave, w, f, left=0.0, right=0.0)
        flux[wave < 912.0] = 0.0
        basis.append(flux / np.sum(np.interp(rest_wave, w, f) * b_weights))
    basis = np.stack(basis)  # (n_components, n_wave)
    return [(wave, mix @ basis) for mix in ALT_MIXTURES]


def _read_sed(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One ``desc-bpz`` SED file, its emission lines interpolated over."""
    folder = resources.files("desc_bpz") / "data_files" / "SED"
    table = np.loadtxt(folder / f"{name}.sed")
    wave, flux = table[:, 0], table[:, 1].copy()
    for lo, hi in lines.STRIP_WINDOWS:
        left = np.median(flux[(wave >= lo - 15) & (wave < lo)])
        right = np.median(flux[(wave > hi) & (wave <= hi + 15)])
        inside = (wave >= lo) & (wave <= hi)
        flux[inside] = np.interp(wave[inside], [lo, hi], [left, right])
    return wave, flux


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


def grid_redshifts(z_max: float) -> np.ndarray:
    """The grid redshifts that cover a population up to ``z_max``: :data:`Z_GRID` up to
    z_max = 3.5, else the same steps up to at least ``z_max + 0.1``."""
    if z_max <= 3.5:
        return Z_GRID
    n = int(np.ceil((z_max + 0.1) / Z_STEP - 1e-9)) + 1
    return np.arange(n) * Z_STEP


@functools.cache
def sed_grid(sed_set: str = "default", z_max: float = 3.5) -> SedGrid:
    """The :class:`SedGrid` of ``sed_set`` covering ``0 <= z <= z_max`` (computed once per
    process and arguments: ~0.5 s, plus ~1 s of imports)."""
    z_grid = grid_redshifts(z_max)
    dust_k = attenuation.calzetti_k if sed_set == "default" else attenuation.modified_calzetti_k
    bands = [f"lsst2023-{b}" for b in BANDS]
    obs_weights = _filter_weights(_OBS_WAVE, bands)  # (n_wave, n_bands)
    rest_wave = np.arange(3000.0, 6500.0, 2.0)
    b_weights = _filter_weights(rest_wave, ["bessell-B"])[:, 0]  # (n_rest,)

    rest_of_obs = _OBS_WAVE[None, :] / (1.0 + z_grid[:, None])  # (n_z, n_wave)
    igm = attenuation.igm_transmission(_OBS_WAVE, z_grid)  # (n_z, n_wave)
    k_obs = dust_k(rest_of_obs)
    k_rest = dust_k(rest_wave)
    k_lines = dust_k(lines.LINE_WAVELENGTHS)

    n_t, n_d = len(TEMPLATE_NAMES), EBV_GRID.size
    continuum_mag = np.empty((n_t, n_d, z_grid.size, len(BANDS)))
    line_continuum = np.empty((n_t, n_d, lines.LINE_WAVELENGTHS.size))
    for t, (wave, flux) in enumerate(load_templates(sed_set)):
        sed_obs = np.interp(rest_of_obs, wave, flux) * igm / (1.0 + z_grid[:, None])
        sed_rest = np.interp(rest_wave, wave, flux)
        sed_lines = np.interp(lines.LINE_WAVELENGTHS, wave, flux)
        for d, ebv in enumerate(EBV_GRID):
            dust_obs = 10.0 ** (-0.4 * ebv * k_obs)
            rest_b = np.sum(sed_rest * 10.0 ** (-0.4 * ebv * k_rest) * b_weights)
            band = (sed_obs * dust_obs) @ obs_weights / rest_b  # (n_z, n_bands)
            continuum_mag[t, d] = -2.5 * np.log10(np.maximum(band, 1e-30))
            line_continuum[t, d] = sed_lines * 10.0 ** (-0.4 * ebv * k_lines) / rest_b

    # A line of unit flux at lambda_obs adds T(lambda_obs) lambda_obs / int T / lambda dlambda.
    line_obs = lines.LINE_WAVELENGTHS[:, None] * (1.0 + z_grid[None, :])  # (n_lines, n_z)
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
