"""Nebular emission lines of star-forming galaxies: wavelengths, strengths and flux ratios.

Each galaxy's line strength is set by its rest-frame H-alpha equivalent width (Angstrom); the
other lines follow as flux ratios to H-alpha that change smoothly with the SED type, from
metal-rich spirals (strong [NII], weak [OIII]) to metal-poor starbursts (strong [OIII]).
"""

from __future__ import annotations

import numpy as np

LINE_NAMES: tuple[str, ...] = ("OII_3727", "Hbeta", "OIII_4959", "OIII_5007", "Halpha", "NII_6584")
LINE_WAVELENGTHS = np.array([3727.4, 4862.7, 4960.3, 5008.2, 6564.6, 6585.3])
"""Rest wavelengths in Angstrom (vacuum), in the order of :data:`LINE_NAMES`."""

HALPHA = LINE_NAMES.index("Halpha")

STRIP_WINDOWS: tuple[tuple[float, float], ...] = (
    (3712.0, 3742.0),
    (4850.0, 4875.0),
    (4950.0, 4970.0),
    (4996.0, 5020.0),
    (6535.0, 6600.0),
)
"""Rest wavelength windows (Angstrom) from which the templates' own lines are removed before
the modelled lines are added back, so that no line is counted twice."""

# H-alpha rest equivalent width (Angstrom) at z = 0 at integer SED types 0 (El) ... 5 (SB2).
_EW_HALPHA_AT_TYPE = np.array([0.0, 10.0, 25.0, 45.0, 90.0, 160.0])
EW_EVOLUTION_INDEX = 1.5
"""Equivalent widths grow as (1 + z)^1.5 (rising specific star-formation rate), capped at
:data:`EW_MAX`."""
EW_MAX = 800.0
EW_SCATTER_DEX = 0.25
"""Log-normal scatter of the H-alpha equivalent width at fixed type and redshift."""


def halpha_equivalent_width(
    sed_type: np.ndarray, z: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Rest-frame H-alpha equivalent width in Angstrom, shape (n,); 0 for elliptical types."""
    typical = np.interp(sed_type, np.arange(_EW_HALPHA_AT_TYPE.size), _EW_HALPHA_AT_TYPE)
    scatter = 10.0 ** (EW_SCATTER_DEX * rng.standard_normal(sed_type.shape))
    return np.minimum(typical * (1.0 + z) ** EW_EVOLUTION_INDEX * scatter, EW_MAX)


def flux_ratios(sed_type: np.ndarray) -> np.ndarray:
    """Line fluxes relative to H-alpha, shape (n, n_lines), in :data:`LINE_NAMES` order.

    Balmer decrement H-alpha / H-beta = 3.2 (case B with a little dust); [OIII] 5007 / H-beta
    rises from 0.5 (spirals) to 4 (starbursts); [NII] / H-alpha falls from 0.4 to 0.08;
    [OII] / H-alpha rises from 0.45 to 0.9; [OIII] 4959 = 5007 / 2.98.
    """
    s = np.clip((np.asarray(sed_type, dtype=np.float64) - 1.0) / 4.0, 0.0, 1.0)
    hbeta = np.full_like(s, 1.0 / 3.2)
    oiii_5007 = hbeta * (0.5 + 3.5 * s)
    return np.stack(
        [0.45 + 0.45 * s, hbeta, oiii_5007 / 2.98, oiii_5007, np.ones_like(s), 0.4 - 0.32 * s],
        axis=-1,
    )
