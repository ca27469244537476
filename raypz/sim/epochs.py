"""Single-exposure ("epoch") fluxes whose inverse-variance mean is exactly the coadd flux.

Every object of a field is observed in the same visits. Each visit has its own depth (weather,
seeing and airmass scatter its 5-sigma depth by :data:`VISIT_DEPTH_SCATTER` mag), and the
per-visit sky variances are rescaled so that together they give the coadd depth of
:class:`~raypz.sim.photometry.NoiseModel`. A band with more visits than ``max_epochs`` has its
consecutive visits merged into ``max_epochs`` groups; each stored epoch is then the coadd of one
group. Epoch ``k`` of an object has variance ``g_k * (e + F / F_c)`` (the coadd's form with the
group sky variance ``g_k``), so the inverse-variance weights are the same for every object.

Given the coadd noise ``delta`` already drawn for the catalogue, the epoch noises are drawn
independently and then shifted by ``delta - mean`` (their weighted mean): the residuals about
a weighted mean are independent of it, so the shifted epochs have exactly the right joint
distribution and their inverse-variance mean equals the coadd flux.
"""

from __future__ import annotations

import functools

import numpy as np

from raypz.sim.photometry import NoiseModel, noise_model

VISIT_DEPTH_SCATTER = 0.25
"""Standard deviation of single-visit 5-sigma depths about their mean, mag."""
_VISIT_STREAM = 1_000
"""Spawn key of the field-level visit stream; shard streams only use keys 0-5."""


@functools.lru_cache(maxsize=16)
def epoch_sky_variances(
    seed: int, years: int, field_name: str, max_epochs: int
) -> tuple[np.ndarray, ...]:
    """Sky variance (nJy^2, point source) of each stored epoch, one array (n_epochs_b,) per band.

    The visits of a field are drawn from ``SeedSequence([seed, field.code],
    spawn_key=(1000,))``: the same for every shard of the survey.
    """
    noise = noise_model(years, field_name)
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, noise.field.code], spawn_key=(_VISIT_STREAM,))
    )
    out = []
    for b, n_visits in enumerate(noise.visits):
        inverse = 10.0 ** (0.8 * VISIT_DEPTH_SCATTER * rng.standard_normal(n_visits))
        inverse *= 1.0 / (noise.sky_var[b] * inverse.sum())  # sum of 1/s_i = 1/S (coadd)
        groups = np.array_split(inverse, min(max_epochs, n_visits))
        out.append(1.0 / np.array([g.sum() for g in groups]))
    return tuple(out)


def draw_epochs(
    noise: NoiseModel,
    sky_variances: tuple[np.ndarray, ...],
    true_flux: np.ndarray,
    flux: np.ndarray,
    extension: np.ndarray,
    rng: np.random.Generator,
    variance_factor: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Epoch fluxes and errors (nJy) per band consistent with the coadd ``flux``.

    Args:
        noise: the field's coadd noise model.
        sky_variances: output of :func:`epoch_sky_variances`.
        true_flux: noiseless fluxes, nJy, shape (n, n_bands).
        flux: observed coadd fluxes, nJy, shape (n, n_bands).
        extension: extended-source variance factors, shape (n, n_bands).
        rng: the shard's epoch stream.
        variance_factor: per-object depth factor of the variance, shape (n, n_bands), or None
            (``depth_scatter_mag``: every epoch of the object is that much deeper or shallower).

    Returns:
        One ``(flux, flux_err)`` pair per band, each of shape (n, n_epochs_b), nJy.
    """
    scale = noise.variance_scale(true_flux, extension)  # (n, n_bands)
    if variance_factor is not None:
        scale = scale * variance_factor
    out = []
    for b, sky in enumerate(sky_variances):
        err = np.sqrt(sky[None, :] * scale[:, b : b + 1])  # (n, n_epochs)
        noise_draw = err * rng.standard_normal(err.shape)
        weights = 1.0 / sky
        mean = noise_draw @ weights / weights.sum()  # (n,)
        delta = flux[:, b] - true_flux[:, b]
        out.append((true_flux[:, b : b + 1] + noise_draw + (delta - mean)[:, None], err))
    return out
