"""The galaxy population: redshift, luminosity, SED type, dust, lines, size and shape.

Two populations, red (quiescent, SED types 0-1) and blue (star-forming, types 1-5), each with
a Schechter luminosity function in rest-frame absolute B magnitude (AB) whose characteristic
magnitude brightens and whose normalisation evolves with redshift. Galaxies are drawn in
comoving volume (Planck18) over 0.01 < z < 3.5 and -24.5 < M_B < -11 from a (population, z,
M_B) cell grid, only where they could be bright enough to enter the catalogue; the n(z) and the
counts then follow from the luminosity functions, the K-corrections and the magnitude limit.

The parameters are set by hand (not fitted) so that an observed i < 25.3 sample has about 45
galaxies per arcmin^2, a median redshift near 0.9 and i-band counts rising by ~0.3 dex/mag at
i ~ 23-25, in line with deep-field counts and LSST gold-sample forecasts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from raypz.columns import BANDS
from raypz.sim import lines
from raypz.sim.cosmology import planck18
from raypz.sim.templates import EBV_GRID, MAX_SED_TYPE, Z_GRID, SedGrid

Z_MIN, Z_MAX = 0.01, 3.5
"""Redshift range of the population (the upper end is ``SurveyConfig.z_max``, 3.5 by default)."""
_DZ, _DM = 0.005, 0.05  # cell sizes in z and M_B
_M_BRIGHT, _M_FAINT = -24.5, -11.0
LINE_BRIGHTENING_MAG = 1.0
"""Allowance (mag) for emission lines when deciding which (z, M_B) cells can be detected."""


@dataclass(frozen=True)
class Schechter:
    """A Schechter luminosity function with linear-in-z evolution, in absolute B mag (AB).

    ``M*(z) = m_star + m_star_slope * min(z, z_stop)``;
    ``phi*(z) = phi_star * exp(phi_star_rate * z)`` in Mpc^-3 mag^-1 (Planck18 distances).
    """

    m_star: float
    m_star_slope: float
    phi_star: float
    phi_star_rate: float
    alpha: float
    z_stop: float = 2.0

    def density(self, m: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Number density per Mpc^3 per mag at absolute magnitude ``m`` and redshift ``z``."""
        x = 10.0 ** (-0.4 * (m - self.characteristic_mag(z)))
        phi = self.phi_star * np.exp(self.phi_star_rate * z)
        return 0.4 * np.log(10.0) * phi * x ** (self.alpha + 1.0) * np.exp(-x)

    def characteristic_mag(self, z: np.ndarray) -> np.ndarray:
        """M*(z) in AB mag."""
        return self.m_star + self.m_star_slope * np.minimum(z, self.z_stop)


@dataclass(frozen=True)
class SizeRelation:
    """Half-light radius ``r0 (L / L(M_B = -21))^beta (1 + z)^-eta`` kpc, log-normal scatter.

    At fixed luminosity sizes shrink with redshift faster than at fixed stellar mass, because
    the mass-to-light ratio falls with redshift.
    """

    r0_kpc: float
    beta: float
    eta: float
    scatter_dex: float

    def draw_kpc(self, abs_mag: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Radii in kpc, clipped to [0.05, 40], shape (n,)."""
        log_r = (
            np.log10(self.r0_kpc)
            - 0.4 * self.beta * (abs_mag + 21.0)
            - self.eta * np.log10(1.0 + z)
            + self.scatter_dex * rng.standard_normal(abs_mag.shape)
        )
        return np.clip(10.0**log_r, 0.05, 40.0)


BULGE_SIZE = SizeRelation(r0_kpc=3.0, beta=0.6, eta=1.3, scatter_dex=0.15)
DISK_SIZE = SizeRelation(r0_kpc=6.5, beta=0.25, eta=1.0, scatter_dex=0.17)

RED_LF = Schechter(m_star=-20.6, m_star_slope=-0.8, phi_star=4.5e-3, phi_star_rate=-0.7, alpha=-0.5)
BLUE_LF = Schechter(
    m_star=-20.4, m_star_slope=-0.8, phi_star=3.7e-3, phi_star_rate=-0.25, alpha=-1.3
)


@dataclass(frozen=True)
class PopulationModel:
    """The priors of one SED set: luminosity functions, type mixtures, dust and lines.

    Attributes:
        red_lf, blue_lf: luminosity functions of the red and blue populations.
        red_type_sigma: red types are ``|N(0, red_type_sigma)|`` (< 1).
        blue_type_mean: (base, per unit z, per mag fainter than M*) of the mean of the Beta
            distribution of blue types mapped to [1, 5], clipped to [0.08, 0.92].
        blue_type_concentration: a + b of that Beta distribution.
        red_dust, blue_dust: mean extra E(B-V) (exponential), mag.
        blue_dust_per_mag: change of the blue mean E(B-V) per mag brighter than M*.
        lines: emission-line strengths and ratios.
    """

    red_lf: Schechter
    blue_lf: Schechter
    red_type_sigma: float
    blue_type_mean: tuple[float, float, float]
    blue_type_concentration: float
    red_dust: float
    blue_dust: float
    blue_dust_per_mag: float
    lines: lines.LineModel


DEFAULT_POPULATION = PopulationModel(
    red_lf=RED_LF,
    blue_lf=BLUE_LF,
    red_type_sigma=0.3,
    blue_type_mean=(0.3, 0.12, 0.06),
    blue_type_concentration=5.0,
    red_dust=0.03,
    blue_dust=0.10,
    blue_dust_per_mag=0.0,
    lines=lines.DEFAULT_LINES,
)
"""The default priors (docs/simulation.md, "Population")."""

ALT_POPULATION = PopulationModel(
    red_lf=Schechter(
        m_star=-20.8,
        m_star_slope=-0.7,
        phi_star=5.0e-3,
        phi_star_rate=-0.9,
        alpha=-0.4,
        z_stop=2.5,
    ),
    blue_lf=Schechter(
        m_star=-20.3,
        m_star_slope=-0.75,
        phi_star=3.4e-3,
        phi_star_rate=-0.45,
        alpha=-1.36,
        z_stop=2.5,
    ),
    red_type_sigma=0.45,
    blue_type_mean=(0.4, 0.08, 0.04),
    blue_type_concentration=3.5,
    red_dust=0.05,
    blue_dust=0.13,
    blue_dust_per_mag=0.04,
    lines=lines.ALT_LINES,
)
"""Independent priors for ``sed_set="alt"``: a brighter red M* whose density falls faster, a
fainter blue M* that brightens until z = 2.5, a slightly steeper blue faint end, broader type
distributions and luminosity-dependent dust (brighter star-forming galaxies are dustier)."""

POPULATIONS: dict[str, PopulationModel] = {"default": DEFAULT_POPULATION, "alt": ALT_POPULATION}


@dataclass(frozen=True)
class Galaxies:
    """True properties of n galaxies; every attribute has shape (n,).

    Attributes:
        z: redshift.
        abs_mag_b: rest-frame absolute B magnitude (AB, with dust).
        sed_type: continuous type, 0 = El ... 5 = SB2; red galaxies have type < 1.
        ebv: extra stellar dust E(B-V), mag.
        ew_halpha: rest-frame H-alpha equivalent width, Angstrom.
        bulge_fraction: bulge-to-total flux ratio.
        r_bulge: bulge (Sersic n=4) half-light radius, arcsec (circularised).
        r_disk: disk (exponential) half-light radius, arcsec (circularised).
        q_bulge, q_disk: axis ratios b/a.
        position_angle: degrees east of north, shared by bulge and disk.
    """

    z: np.ndarray
    abs_mag_b: np.ndarray
    sed_type: np.ndarray
    ebv: np.ndarray
    ew_halpha: np.ndarray
    bulge_fraction: np.ndarray
    r_bulge: np.ndarray
    r_disk: np.ndarray
    q_bulge: np.ndarray
    q_disk: np.ndarray
    position_angle: np.ndarray

    def __len__(self) -> int:
        return self.z.size

    @property
    def half_light_radius(self) -> np.ndarray:
        """Flux-weighted mean of the bulge and disk half-light radii, arcsec (approximate)."""
        return self.bulge_fraction * self.r_bulge + (1.0 - self.bulge_fraction) * self.r_disk

    def take(self, index: np.ndarray) -> Galaxies:
        """The galaxies at ``index`` (a boolean mask or integer indices)."""
        return Galaxies(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    @staticmethod
    def concat(parts: list[Galaxies]) -> Galaxies:
        """The galaxies of ``parts`` in order."""
        names = [f.name for f in dataclasses.fields(Galaxies)]
        return Galaxies(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in names})


class PopulationSampler:
    """Draws galaxies from the luminosity functions, restricted to detectable (z, M_B) cells.

    Args:
        grid: the template photometry (for the brightest possible i-band K-correction).
        faintest_i: faintest true i magnitude (AB) that can still pass the catalogue cut.
        model: the priors (luminosity functions, types, dust, lines).
        z_max: highest redshift drawn (the grid must reach it).
    """

    def __init__(
        self,
        grid: SedGrid,
        faintest_i: float,
        model: PopulationModel = DEFAULT_POPULATION,
        z_max: float = Z_MAX,
    ) -> None:
        dist = planck18()
        self.model = model
        self.z_edges = np.arange(Z_MIN, z_max + _DZ / 2, _DZ)
        self.m_edges = np.arange(_M_BRIGHT, _M_FAINT + _DM / 2, _DM)
        zc = 0.5 * (self.z_edges[1:] + self.z_edges[:-1])
        mc = 0.5 * (self.m_edges[1:] + self.m_edges[:-1])
        z_index = np.rint(zc / Z_GRID[1]).astype(np.int64)
        brightest_k = grid.continuum_mag[:, :, z_index, BANDS.index("i")].min(axis=(0, 1))
        m_limit = faintest_i - dist.modulus(zc) - brightest_k + LINE_BRIGHTENING_MAG  # (n_z,)
        volume = dist.volume_per_deg2(zc) * _DZ  # Mpc^3 per deg^2 per cell row
        weights = []
        for lf in (model.red_lf, model.blue_lf):
            w = lf.density(mc[None, :], zc[:, None]) * _DM * volume[:, None]  # (n_z, n_m)
            weights.append(np.where(self.m_edges[None, :-1] < m_limit[:, None], w, 0.0))
        self._cell_cdf = np.cumsum(np.stack(weights).ravel())
        self.per_deg2 = float(self._cell_cdf[-1])
        """Expected galaxies per square degree in the detectable cells (before any cut)."""
        self._shape = (2, zc.size, mc.size)

    def draw(self, rng: np.random.Generator, n: int) -> Galaxies:
        """``n`` galaxies drawn in order from ``rng`` (a fixed number of draws per call)."""
        cell = np.searchsorted(self._cell_cdf, rng.uniform(0.0, self.per_deg2, n), side="right")
        pop, iz, im = np.unravel_index(np.minimum(cell, self._cell_cdf.size - 1), self._shape)
        z = self.z_edges[iz] + _DZ * rng.uniform(size=n)
        abs_mag = self.m_edges[im] + _DM * rng.uniform(size=n)
        red = pop == 0
        m = self.model
        offset = abs_mag - m.blue_lf.characteristic_mag(z)  # > 0 for galaxies fainter than M*

        # SED type: red ~ half-normal from El towards Sbc; blue from Sbc to SB2, bluer when
        # fainter and at higher redshift.
        red_type = np.minimum(np.abs(m.red_type_sigma * rng.standard_normal(n)), 0.99)
        base, per_z, per_mag = m.blue_type_mean
        mean = np.clip(base + per_z * z + per_mag * offset, 0.08, 0.92)
        c = m.blue_type_concentration
        blue_type = 1.0 + (MAX_SED_TYPE - 1.0) * rng.beta(c * mean, c * (1.0 - mean))
        sed_type = np.where(red, red_type, blue_type)

        if m.blue_dust_per_mag:
            blue_dust = np.clip(m.blue_dust - m.blue_dust_per_mag * offset, 0.02, 0.3)
        else:
            blue_dust = m.blue_dust
        ebv = np.minimum(rng.exponential(np.where(red, m.red_dust, blue_dust)), EBV_GRID[-1])
        ew = lines.halpha_equivalent_width(sed_type, z, rng, m.lines)

        bulge_fraction = np.where(red, rng.beta(7.0, 3.0, n), rng.beta(1.2, 6.0, n))
        kpc_per_arcsec = planck18().kpc_per_arcsec(z)
        r_bulge = BULGE_SIZE.draw_kpc(abs_mag, z, rng) / kpc_per_arcsec
        r_disk = DISK_SIZE.draw_kpc(abs_mag, z, rng) / kpc_per_arcsec

        cos_i = rng.uniform(size=n)
        q_disk = np.sqrt(cos_i**2 + 0.2**2 * (1.0 - cos_i**2))
        q_bulge = 1.0 - 0.6 * rng.beta(2.0, 4.0, n)
        return Galaxies(
            z=z,
            abs_mag_b=abs_mag,
            sed_type=sed_type,
            ebv=ebv,
            ew_halpha=ew,
            bulge_fraction=bulge_fraction,
            r_bulge=r_bulge,
            r_disk=r_disk,
            q_bulge=q_bulge,
            q_disk=q_disk,
            position_angle=rng.uniform(0.0, 180.0, n),
        )
