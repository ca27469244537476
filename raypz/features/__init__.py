"""Fluxes (nJy) -> normalised network inputs: luptitudes, colours, errors and band masks.

>>> import numpy as np
>>> from raypz.features import FeatureTransform
>>> rng = np.random.default_rng(0)
>>> flux = rng.lognormal(7, 1, size=(1000, 6)); err = np.full((1000, 6), 50.0)
>>> t = FeatureTransform.fit(flux, err)
>>> x, flags = t.transform_fluxes(flux, err)
>>> x.shape, bool((flags == 0).mean() > 0.99)
((1000, 23), True)
"""

from raypz.features.luptitudes import luptitude, luptitude_error
from raypz.features.magnitudes import MagnitudeColumns, magnitudes_to_fluxes
from raypz.features.transform import FeatureTransform, flux_arrays, usable_bands

__all__ = [
    "FeatureTransform",
    "MagnitudeColumns",
    "flux_arrays",
    "luptitude",
    "luptitude_error",
    "magnitudes_to_fluxes",
    "usable_bands",
]
