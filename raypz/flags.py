"""Quality-flag bits of the PDF catalog's int32 ``flags`` column (DESIGN 3.3).

Per-row problems never drop a row: they set bits here. Bits 0-7 are row-level conditions,
bits 8-13 say which band (u, g, r, i, z, y) was missing or unusable.
"""

from __future__ import annotations

import numpy as np

from raypz.columns import BANDS

BAND_MISSING = 1 << 0
"""At least one band has no usable measurement (NaN/null flux or error); it was masked."""
NONFINITE_INPUT = 1 << 1
"""A flux or error was +-inf, or an error <= 0 beside a finite flux: that band was masked."""
NO_PDF = 1 << 2
"""No band was usable: the PDF columns are null for this row."""
OUT_OF_COLOR_SPACE = 1 << 3
"""A colour lies outside the training sample's range: the PDF is an extrapolation."""
ENSEMBLE_DISAGREEMENT = 1 << 4
"""Ensemble members' modes disagree by more than 0.1 (1 + z): the PDF is less trustworthy."""
ABSURD_FLUX = 1 << 5
"""A flux beyond +-1e12 nJy (brighter than AB mag 1.4): treated as unusable and masked."""

NO_CUTOUT = 1 << 6
"""An image model found no usable cutout (null, wrong shape or non-finite pixels): no PDF."""
FAR_FROM_TRAINING = 1 << 7
"""The object's features lie far from every training object's (``train_distance`` above
:data:`raypz.models.reference.FAR_FROM_TRAINING_DISTANCE`): the PDF is an extrapolation."""

QUALITY = OUT_OF_COLOR_SPACE | ENSEMBLE_DISAGREEMENT | FAR_FROM_TRAINING
"""The bits that say a PDF may be unreliable although it was made (not missing inputs)."""

_BAND_BIT0 = 8


def band_missing_bit(band_index: int) -> int:
    """The bit that says band ``BANDS[band_index]`` was masked."""
    return 1 << (_BAND_BIT0 + band_index)


FLAG_NAMES: dict[int, str] = {
    BAND_MISSING: "band_missing",
    NONFINITE_INPUT: "nonfinite_input",
    NO_PDF: "no_pdf",
    OUT_OF_COLOR_SPACE: "out_of_color_space",
    ENSEMBLE_DISAGREEMENT: "ensemble_disagreement",
    ABSURD_FLUX: "absurd_flux",
    NO_CUTOUT: "no_cutout",
    FAR_FROM_TRAINING: "far_from_training",
    **{band_missing_bit(i): f"missing_{b}" for i, b in enumerate(BANDS)},
}


def count_flags(flags: np.ndarray) -> dict[str, int]:
    """Number of rows with each named bit set (rows may count under several names)."""
    flags = np.asarray(flags)
    return {name: int(np.count_nonzero(flags & bit)) for bit, name in FLAG_NAMES.items()}
