"""Nebular emission lines of star-forming galaxies: wavelengths, strengths and flux ratios.

Each galaxy's line strength is set by its rest-frame H-alpha equivalent width (Angstrom); the
other lines follow as flux ratios to H-alpha that change smoothly with the SED type, from
metal-rich spirals (strong [NII], weak [OIII]) to metal-poor starbursts (strong [OIII]).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class LineModel:
    """Line strengths of one SED set: H-alpha equivalent width and line ratios per SED type.

    Attributes:
        ew_at_type: rest H-alpha EW (Angstrom) at z = 0 at integer types 0 ... 5.
        evolution_index: EWs grow as ``(1 + z)^evolution_index``.
        ew_max: cap on the EW, Angstrom.
        scatter_dex: log-normal EW scatter at fixed type and redshift.
        balmer_decrement: H-alpha / H-beta.
        oiii_hbeta: [OIII]5007 / H-beta at the reddest and bluest star-forming types.
        nii_halpha: [NII]6584 / H-alpha at the reddest and bluest star-forming types.
        oii_halpha: [OII]3727 / H-alpha at the reddest and bluest star-forming types.
    """

    ew_at_type: tuple[float, ...]
    evolution_index: float
    ew_max: float
    scatter_dex: float
    balmer_decrement: float
    oiii_hbeta: tuple[float, float]
    nii_halpha: tuple[float, float]
    oii_halpha: tuple[float, float]


DEFAULT_LINES = LineModel(
    ew_at_type=tuple(float(v) for v in _EW_HALPHA_AT_TYPE),
    evolution_index=EW_EVOLUTION_INDEX,
    ew_max=EW_MAX,
    scatter_dex=EW_SCATTER_DEX,
    balmer_decrement=3.2,
    oiii_hbeta=(0.5, 4.0),
    nii_halpha=(0.4, 0.08),
    oii_halpha=(0.45, 0.9),
)
"""The default set's lines (described in the module functions' docstrings)."""

ALT_LINES = LineModel(
    ew_at_type=(2.0, 6.0, 30.0, 70.0, 140.0, 260.0),
    evolution_index=1.9,
    ew_max=1200.0,
    scatter_dex=0.35,
    balmer_decrement=3.6,
    oiii_hbeta=(0.3, 6.5),
    nii_halpha=(0.5, 0.05),
    oii_halpha=(0.6, 1.3),
)
"""The ``alt`` set's lines: weak lines in early types, stronger and faster-evolving lines in
starbursts, more scatter, a dustier Balmer decrement and more extreme [OIII] and [OII]."""


def halpha_equivalent_width(
    sed_type: np.ndarray,
    z: np.ndarray,
    rng: np.random.Generator,
    model: LineModel = DEFAULT_LINES,
) -> np.ndarray:
    """Rest-frame H-alpha equivalent width in Angstrom, shape (n,); 0 for elliptical types
    (default set)."""
    at_type = np.asarray(model.ew_at_type)
    typical = np.interp(sed_type, np.arange(at_type.size), at_type)
    scatter = 10.0 ** (model.scatter_dex * rng.standard_normal(sed_type.shape))
    return np.minimum(typical * (1.0 + z) ** model.evolution_index * scatter, model.ew_max)


def flux_ratios(sed_type: np.ndarray, model: LineModel = DEFAULT_LINES) -> np.ndarray:
    """Line fluxes relative to H-alpha, shape (n, n_lines), in :data:`LINE_NAMES` order.

    Default set: Balmer decrement H-alpha / H-beta = 3.2 (case B with a little dust);
    [OIII] 5007 / H-beta rises from 0.5 (spirals) to 4 (starbursts); [NII] / H-alpha falls from
    0.4 to 0.08; [OII] / H-alpha rises from 0.45 to 0.9; [OIII] 4959 = 5007 / 2.98.
    """
    s = np.clip((np.asarray(sed_type, dtype=np.float64) - 1.0) / 4.0, 0.0, 1.0)
    hbeta = np.full_like(s, 1.0 / model.balmer_decrement)
    o3, n2, o2 = model.oiii_hbeta, model.nii_halpha, model.oii_halpha
    oiii_5007 = hbeta * (o3[0] + (o3[1] - o3[0]) * s)
    return np.stack(
        [
            o2[0] + (o2[1] - o2[0]) * s,
            hbeta,
            oiii_5007 / 2.98,
            oiii_5007,
            np.ones_like(s),
            n2[0] + (n2[1] - n2[0]) * s,
        ],
        axis=-1,
    )
