"""The simulator's configuration: one frozen dataclass per survey run, plus the field presets.

A :class:`SurveyConfig` fully determines the rows written: the same config gives the same rows
on any machine and with any number of parallel tasks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from raypz.config_rules import require_finite
from raypz.sim.cosmology import Z_TABLE_MAX

MAX_SHARDS = 10**7
"""Upper bound on shards per survey, so that ``objectId`` stays unique (see :func:`object_ids`)."""

MAX_ROWS_PER_SHARD = 10**8


@dataclass(frozen=True)
class FieldSpec:
    """A sky patch observed with its own depth and seeing (a domain for domain adaptation).

    Attributes:
        name: field name written to the ``field`` column.
        code: small positive integer, encoded in ``objectId`` and in the random streams.
        ra_center: right ascension of the patch centre, degrees (ICRS).
        dec_center: declination of the patch centre, degrees (ICRS).
        visit_factor: number of visits relative to the LSST wide-fast-deep cadence (10 gives
            1.25 mag deeper coadds).
        seeing_factor: PSF FWHM relative to the LSST median per-band seeing of ``photerr``.
    """

    name: str
    code: int
    ra_center: float
    dec_center: float
    visit_factor: float
    seeing_factor: float


FIELDS: dict[str, FieldSpec] = {
    # A deep-drilling-like pointing (COSMOS position): 10x the visits, better seeing.
    "deep": FieldSpec("deep", 1, 150.1, 2.2, visit_factor=10.0, seeing_factor=0.8),
    # A wide-fast-deep patch in the southern sky at the nominal cadence and seeing.
    "wide": FieldSpec("wide", 2, 60.0, -35.0, visit_factor=1.0, seeing_factor=1.0),
}


@dataclass(frozen=True)
class SurveyConfig:
    """What to simulate and how to cut it into shards.

    Attributes:
        n_objects: number of rows written in total (after the magnitude limit and, if on, the
            spectroscopic selection).
        seed: master seed, in [0, 2**32); shard ``i`` of field ``f`` draws from
            ``np.random.SeedSequence([seed, f.code, i])``.
        depth: survey depth ``"y1"`` ... ``"y10"``: years of LSST visits in the coadd.
        field: ``"deep"`` or ``"wide"`` (see :data:`FIELDS`).
        mag_limit: limit on the observed (noisy) i-band cModel magnitude, AB.
        rows_per_shard: rows per Parquet shard; the last shard holds the remainder.
        epochs: write per-band single-exposure fluxes ``{b}_epochFlux`` / ``{b}_epochFluxErr``.
        max_epochs_per_band: most epochs stored per band; when a band has more visits they
            are merged into this many groups (each epoch is then a group coadd).
        cutouts: write a ``cutout`` column of (6, size, size) float32 images in nJy/pixel.
        cutout_size: cutout side in pixels of 0.2 arcsec (even, 8 to 128).
        cutout_layout: where cutouts go: ``"column"`` (a column of the object shards),
            ``"shards"`` (Parquet cutout shards, objectId + cutout, one per object shard) or
            ``"fits"`` (one FITS file per object shard, :mod:`raypz.fits`), the last two in a
            cutout store apart from the object shards (:mod:`raypz.cutout_store`). The same
            seed gives the same objects and cutouts in every layout.
        spec_selection: keep a spectroscopic-like subset biased to bright and emission-line
            galaxies instead of every object above the magnitude limit.
        area_deg2: sky area of the patch in square degrees; ``None`` picks the area at which
            the model's surface density of written objects gives ``n_objects``.
        sed_set: galaxy model: ``"default"`` (BPZ CWW+Kinney templates, Calzetti dust, the
            default luminosity functions and type mixtures) or ``"alt"``, an independent
            model (old + young stellar-population mixtures, a steeper Calzetti law with a
            2175 A bump, other line strengths, luminosity functions, type fractions vs
            redshift and dust priors) for test sets that differ from the training set as real
            data differ from any simulation.
        errors_from: flux the reported errors are computed from: ``"true"`` (the noiseless
            flux, the default) or ``"observed"`` (the noisy flux, as a real pipeline does; the
            noise itself is always drawn from the true flux). Coadd errors only: the epoch
            columns' errors are always those of the true flux (within 0.6% of the observed
            ones, where the sky dominates).
        missing_band_fraction: per row and band, probability that the band is missing (NaN
            flux and error), in [0, 0.9]; a row that would lose every band keeps one at random.
            Epoch columns and cutouts are not masked.
        z_max: highest true redshift drawn (0.5 to 6); the n(z) tail beyond 3.5 follows from
            the luminosity functions and the magnitude limit.
        depth_scatter_mag: per-object and per-band Gaussian scatter (mag) of the 5-sigma depth:
            each flux variance is multiplied by ``10**(-0.8 dm)``, dm ~ N(0, depth_scatter_mag),
            so errors vary at fixed flux (epochs follow; cutouts keep the field's noise).
    """

    n_objects: int = 10_000
    seed: int = 0
    depth: str = "y10"
    field: str = "wide"
    mag_limit: float = 25.3
    rows_per_shard: int = 50_000
    epochs: bool = False
    max_epochs_per_band: int = 20
    cutouts: bool = False
    cutout_size: int = 32
    cutout_layout: Literal["column", "shards", "fits"] = "column"
    spec_selection: bool = False
    area_deg2: float | None = None
    sed_set: Literal["default", "alt"] = "default"
    errors_from: Literal["true", "observed"] = "true"
    missing_band_fraction: float = 0.0
    z_max: float = 3.5
    depth_scatter_mag: float = 0.0

    def __post_init__(self) -> None:
        require_finite(self)
        if not isinstance(self.n_objects, int) or self.n_objects < 1:
            raise ValueError(f"n_objects must be a positive int, got {self.n_objects!r}")
        # one 32-bit word: SeedSequence reads a larger seed as two words and pads entropy with
        # zeros, so [2**32 * hi + lo, code, i] drew the streams of [lo, hi, code] (another
        # seed's shard code)
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an int in [0, 2**32), got {self.seed!r}")
        if not re.fullmatch(r"y([1-9]|10)", str(self.depth)):
            raise ValueError(f"depth must be one of 'y1' ... 'y10', got {self.depth!r}")
        if self.field not in FIELDS:
            raise ValueError(f"field must be one of {sorted(FIELDS)}, got {self.field!r}")
        if not 18.0 <= self.mag_limit <= 27.5:
            raise ValueError(f"mag_limit must be within [18, 27.5] AB, got {self.mag_limit!r}")
        if not 1 <= self.rows_per_shard <= MAX_ROWS_PER_SHARD:
            raise ValueError(
                f"rows_per_shard must be within [1, {MAX_ROWS_PER_SHARD}], "
                f"got {self.rows_per_shard!r}"
            )
        if self.n_shards > MAX_SHARDS:
            raise ValueError(f"{self.n_shards} shards exceed the maximum of {MAX_SHARDS}")
        if not 1 <= self.max_epochs_per_band <= 1000:
            raise ValueError(
                f"max_epochs_per_band must be within [1, 1000], got {self.max_epochs_per_band!r}"
            )
        if self.cutout_size % 2 or not 8 <= self.cutout_size <= 128:
            raise ValueError(f"cutout_size must be even and in [8, 128], got {self.cutout_size!r}")
        if self.area_deg2 is not None and not 0 < self.area_deg2 <= 1000:
            raise ValueError(f"area_deg2 must be in (0, 1000] or None, got {self.area_deg2!r}")
        if self.cutout_layout not in ("column", "shards", "fits"):
            raise ValueError(
                f"cutout_layout must be 'column', 'shards' or 'fits', got {self.cutout_layout!r}"
            )
        if self.cutout_layout != "column" and not self.cutouts:  # nothing to lay out
            raise ValueError(f"cutout_layout {self.cutout_layout!r} needs cutouts (--cutouts)")
        if self.sed_set not in ("default", "alt"):
            raise ValueError(f"sed_set must be 'default' or 'alt', got {self.sed_set!r}")
        if self.errors_from not in ("true", "observed"):
            raise ValueError(f"errors_from must be 'true' or 'observed', got {self.errors_from!r}")
        if not 0.0 <= self.missing_band_fraction <= 0.9:
            raise ValueError(
                f"missing_band_fraction must be within [0, 0.9], got {self.missing_band_fraction!r}"
            )
        if not 0.5 <= self.z_max <= Z_TABLE_MAX:
            raise ValueError(f"z_max must be within [0.5, {Z_TABLE_MAX:g}], got {self.z_max!r}")
        if not 0.0 <= self.depth_scatter_mag <= 1.0:
            raise ValueError(
                f"depth_scatter_mag must be within [0, 1] mag, got {self.depth_scatter_mag!r}"
            )

    @property
    def years(self) -> int:
        """Survey years of the coadd (the N of ``depth = "yN"``)."""
        return int(self.depth[1:])

    @property
    def field_spec(self) -> FieldSpec:
        """The :class:`FieldSpec` of ``field``."""
        return FIELDS[self.field]

    @property
    def n_shards(self) -> int:
        """Number of Parquet shards."""
        return math.ceil(self.n_objects / self.rows_per_shard)

    def shard_rows(self, shard_index: int) -> int:
        """Number of rows of shard ``shard_index``."""
        if not 0 <= shard_index < self.n_shards:
            raise IndexError(f"shard_index {shard_index} outside [0, {self.n_shards})")
        return min(self.rows_per_shard, self.n_objects - shard_index * self.rows_per_shard)

    def to_json(self) -> str:
        """The config as a sorted JSON object (written into every shard's metadata).

        The options added later (:data:`OPTION_DEFAULTS`) appear only when they differ from
        their defaults, so a default config writes the same bytes as before they existed.
        """
        values = dataclasses.asdict(self)
        for name, default in OPTION_DEFAULTS.items():
            if values[name] == default:
                del values[name]
        return json.dumps(values, sort_keys=True)


OPTION_DEFAULTS: dict[str, object] = {
    "sed_set": "default",
    "errors_from": "true",
    "missing_band_fraction": 0.0,
    "z_max": 3.5,
    "depth_scatter_mag": 0.0,
    "cutout_layout": "column",
}
"""Options added after the first simulator (the sim-to-real options of issue 16, the cutout
layout of issue 15) and their defaults, which change nothing."""


def object_ids(field: FieldSpec, shard_index: int, n_rows: int) -> np.ndarray:
    """``objectId`` of the rows of one shard: ``code * 10**15 + shard * 10**8 + row``.

    Unique across shards and fields of one survey; readable in decimal. Shape (n_rows,), int64.
    """
    base = field.code * 10**15 + shard_index * MAX_ROWS_PER_SHARD
    return base + np.arange(n_rows, dtype=np.int64)
