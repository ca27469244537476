"""Draw the catalogue rows of one shard: galaxies, true and noisy fluxes, and the selection.

Candidates are drawn from the population in fixed-size rounds, observed with coadd noise, cut
at the observed i-band limit and (optionally) thinned by the spectroscopic selection, until the
shard is full. Every round consumes the same number of random draws, so the rows depend only on
the seed streams, never on timing or on how many shards run at once. The per-object depth
scatter (``depth_scatter_mag``) draws from a stream of its own, used only when it is on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from raypz.columns import AB_ZEROPOINT_NJY, BANDS, flux_to_mag, mag_to_flux
from raypz.sim import lines, selection
from raypz.sim.config import SurveyConfig
from raypz.sim.cosmology import planck18
from raypz.sim.photometry import NoiseModel, noise_model
from raypz.sim.population import POPULATIONS, Galaxies, PopulationSampler
from raypz.sim.sky import Patch
from raypz.sim.templates import SedGrid, sed_grid

ROUND_SIZE = 16_384
"""Candidates drawn per round."""
PILOT_ROUNDS = 3
"""Rounds of the fixed-seed pilot draw that measures the surface density of written rows."""
_PILOT_ENTROPY = 0x5EED_A4EA
I_BAND = BANDS.index("i")


@dataclass(frozen=True)
class Catalog:
    """The rows of one shard before formatting; arrays have shape (n,) or (n, n_bands).

    Attributes:
        galaxies: true galaxy properties.
        ra, dec: position, degrees.
        true_flux: noiseless flux per band, nJy.
        flux: observed coadd flux per band, nJy (may be negative).
        flux_err: reported 1-sigma error of ``flux``, nJy (> 0): from the true flux, or from
            the observed flux with ``errors_from="observed"``.
        extension: extended-source variance factor per band (see :mod:`raypz.sim.photometry`).
        variance_factor: per-object depth factor of the variance per band (1 without
            ``depth_scatter_mag``).
    """

    galaxies: Galaxies
    ra: np.ndarray
    dec: np.ndarray
    true_flux: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    extension: np.ndarray
    variance_factor: np.ndarray

    def __len__(self) -> int:
        return self.ra.size

    def take(self, index: np.ndarray) -> Catalog:
        """The rows at ``index`` (a boolean mask or integer indices)."""
        arrays = (getattr(self, name)[index] for name in _ROW_ARRAYS)
        return Catalog(self.galaxies.take(index), *arrays)

    @staticmethod
    def concat(parts: list[Catalog]) -> Catalog:
        """The rows of ``parts`` in order."""
        arrays = (np.concatenate([getattr(p, name) for p in parts]) for name in _ROW_ARRAYS)
        return Catalog(Galaxies.concat([p.galaxies for p in parts]), *arrays)


_ROW_ARRAYS = ("ra", "dec", "true_flux", "flux", "flux_err", "extension", "variance_factor")


@dataclass(frozen=True)
class Survey:
    """Everything shared by the shards of one survey (built once per process and config)."""

    config: SurveyConfig
    grid: SedGrid
    noise: NoiseModel
    sampler: PopulationSampler
    patch: Patch


@functools.lru_cache(maxsize=8)
def build_survey(config: SurveyConfig) -> Survey:
    """The shared :class:`Survey` of ``config`` (SED grid, noise model, population, sky patch)."""
    grid = sed_grid(config.sed_set, config.z_max)
    noise = noise_model(config.years, config.field)
    sampler = _sampler(config.years, config.field, config.mag_limit, config.sed_set, config.z_max)
    area = config.area_deg2
    if area is None:
        area = config.n_objects / written_per_deg2(
            config.years,
            config.field,
            config.mag_limit,
            config.spec_selection,
            **_density_options(config),
        )
    return Survey(config, grid, noise, sampler, Patch.around(config.field_spec, area))


def _density_options(config: SurveyConfig) -> dict:
    """The realism options that change the density of written rows, when not at defaults."""
    out = {}
    if config.sed_set != "default":
        out["sed_set"] = config.sed_set
    if config.z_max != 3.5:
        out["z_max"] = config.z_max
    if config.depth_scatter_mag:
        out["depth_scatter_mag"] = config.depth_scatter_mag
    return out


@functools.lru_cache(maxsize=8)
def _sampler(
    years: int, field: str, mag_limit: float, sed_set: str = "default", z_max: float = 3.5
) -> PopulationSampler:
    noise = noise_model(years, field)
    flux_limit = float(mag_to_flux(mag_limit))
    # Faintest true flux that can scatter above the limit: 5 sigma below it for a galaxy with
    # twice a point source's sky variance (extension e = 2), but at most 1.5 mag below.
    sigma = np.sqrt(noise.sky_var[I_BAND] * 2.0)
    faintest = max(flux_limit - 5.0 * sigma, 0.25 * flux_limit)
    model = POPULATIONS[sed_set]
    grid = sed_grid(sed_set, z_max)
    return PopulationSampler(grid, AB_ZEROPOINT_NJY - 2.5 * np.log10(faintest), model, z_max)


@functools.lru_cache(maxsize=16)
def written_per_deg2(
    years: int,
    field: str,
    mag_limit: float,
    spec_selection: bool,
    sed_set: str = "default",
    z_max: float = 3.5,
    depth_scatter_mag: float = 0.0,
) -> float:
    """Surface density (deg^-2) of rows that pass the cuts, from a fixed-seed pilot draw."""
    config = SurveyConfig(
        depth=f"y{years}",
        field=field,
        mag_limit=mag_limit,
        spec_selection=spec_selection,
        area_deg2=1.0,
        sed_set=sed_set,
        z_max=z_max,
        depth_scatter_mag=depth_scatter_mag,
    )
    survey = build_survey(config)
    streams = np.random.SeedSequence([_PILOT_ENTROPY, config.field_spec.code]).spawn(3)
    rngs = [np.random.default_rng(s) for s in streams]
    kept = sum(len(_round(survey, *rngs)) for _ in range(PILOT_ROUNDS))
    return survey.sampler.per_deg2 * kept / (PILOT_ROUNDS * ROUND_SIZE)


def draw_catalog(
    survey: Survey,
    rng_population: np.random.Generator,
    rng_noise: np.random.Generator,
    n: int,
    rng_depth: np.random.Generator | None = None,
) -> Catalog:
    """The first ``n`` rows that pass the cuts, drawn round by round from the streams
    (``rng_depth`` is used only with ``depth_scatter_mag``)."""
    parts: list[Catalog] = []
    count = 0
    while count < n:
        part = _round(survey, rng_population, rng_noise, rng_depth)
        parts.append(part)
        count += len(part)
    return Catalog.concat(parts).take(slice(0, n))


def _round(
    survey: Survey,
    rng_pop: np.random.Generator,
    rng_noise: np.random.Generator,
    rng_depth: np.random.Generator | None = None,
) -> Catalog:
    """One round of :data:`ROUND_SIZE` candidates, reduced to those that pass the cuts."""
    config, noise = survey.config, survey.noise
    gal = survey.sampler.draw(rng_pop, ROUND_SIZE)
    ra, dec = survey.patch.sample(rng_pop, ROUND_SIZE)
    select_u = rng_pop.uniform(size=ROUND_SIZE)
    line_model = survey.sampler.model.lines
    unit = survey.grid.unit_fluxes(
        gal.sed_type, gal.ebv, gal.z, gal.ew_halpha, lines.flux_ratios(gal.sed_type, line_model)
    )
    scale = mag_to_flux(gal.abs_mag_b + planck18().modulus(gal.z))
    true_flux = unit * scale[:, None]
    extension = noise.extension(gal.half_light_radius)
    err = noise.flux_err(true_flux, extension)
    factor = np.ones_like(true_flux)
    if config.depth_scatter_mag:
        if rng_depth is None:
            raise ValueError("depth_scatter_mag needs the depth stream")
        depth_shift = config.depth_scatter_mag * rng_depth.standard_normal(true_flux.shape)
        factor = 10.0 ** (-0.8 * depth_shift)  # deeper (dm > 0): smaller variance
        err = err * np.sqrt(factor)
    flux = true_flux + err * rng_noise.standard_normal(true_flux.shape)
    if config.errors_from == "observed":
        err = np.sqrt(factor) * noise.flux_err(flux, extension)
    keep = flux[:, I_BAND] >= mag_to_flux(config.mag_limit)
    if config.spec_selection:
        keep &= select_u < selection.spec_probability(flux_to_mag(flux[:, I_BAND]), gal.ew_halpha)
    catalog = Catalog(gal, ra, dec, true_flux, flux, err, extension, factor)
    return catalog.take(keep)
