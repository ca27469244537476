"""Sky positions spread uniformly (per unit solid angle) over a field's rectangular patch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raypz.sim.config import FieldSpec


@dataclass(frozen=True)
class Patch:
    """A box in RA and Dec around a field centre with a given solid angle.

    Attributes:
        ra_min, ra_max: right-ascension limits, degrees (may run past 360; wrapped on output).
        dec_min, dec_max: declination limits, degrees.
    """

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    @classmethod
    def around(cls, field: FieldSpec, area_deg2: float) -> Patch:
        """A patch of ``area_deg2`` square degrees centred on ``field``, about as tall as wide."""
        half = 0.5 * np.sqrt(area_deg2)
        dec_min = max(field.dec_center - half, -89.0)
        dec_max = min(field.dec_center + half, 89.0)
        band_sr = np.sin(np.radians(dec_max)) - np.sin(np.radians(dec_min))
        width = np.degrees(np.radians(1.0) ** 2 * area_deg2 / band_sr)
        if width > 360.0:
            raise ValueError(f"area {area_deg2} deg^2 does not fit around dec {field.dec_center}")
        return cls(field.ra_center - width / 2, field.ra_center + width / 2, dec_min, dec_max)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` positions uniform on the sphere inside the patch: (ra, dec) in degrees, (n,)."""
        ra = rng.uniform(self.ra_min, self.ra_max, n) % 360.0
        sin_dec = rng.uniform(np.sin(np.radians(self.dec_min)), np.sin(np.radians(self.dec_max)), n)
        return ra, np.degrees(np.arcsin(sin_dec))
