"""One shard of the survey as Arrow data, in-process (no Ray): the DESIGN 3.1 object table.

Columns (names from :class:`raypz.columns.ColumnTemplate`):

* ``objectId`` int64 (see :func:`raypz.sim.config.object_ids`), ``coord_ra`` / ``coord_dec``
  float64 degrees, ``{b}_cModelFlux`` / ``{b}_cModelFluxErr`` float32 nJy for b in ugrizy,
  ``redshift`` float32 (the true redshift, the label), ``field`` string;
* truth: ``sed_type`` (0 = El ... 5 = SB2), ``dust_ebv`` (mag), ``ew_halpha_rest`` (Angstrom),
  ``abs_mag_b`` (AB), ``mag_i_true`` (noiseless i, AB), ``half_light_radius_arcsec``,
  ``bulge_fraction``, ``axis_ratio`` (flux-weighted b/a), ``position_angle_deg``, all float32;
* with ``epochs``: ``{b}_epochFlux`` / ``{b}_epochFluxErr`` list<float32> nJy;
* with ``cutouts``: ``cutout`` fixed_shape_tensor<float32>[6, H, W] nJy/pixel.

Shard ``i`` draws from ``np.random.SeedSequence([seed, field.code, i])``, spawned into six
streams (population, noise, epochs, cutouts, depth scatter, missing bands), so switching epochs
or cutouts on leaves the catalogue columns unchanged, and the last two streams are read only
when ``depth_scatter_mag`` or ``missing_band_fraction`` is on (defaults write the same rows as
before those options existed).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from raypz import __version__
from raypz.columns import BANDS, DEFAULT_COLUMNS, flux_to_mag
from raypz.sim.catalog import Catalog, Survey, build_survey, draw_catalog
from raypz.sim.config import SurveyConfig, object_ids
from raypz.sim.cutouts import PIXEL_SCALE, cutout_renderer, tensor_array
from raypz.sim.epochs import draw_epochs, epoch_sky_variances

CUTOUT_BATCH_ROWS = 2048
"""Rows per record batch (Parquet row group) when cutouts are drawn; otherwise one batch."""

TRUTH_COLUMNS = (
    "sed_type",
    "dust_ebv",
    "ew_halpha_rest",
    "abs_mag_b",
    "mag_i_true",
    "half_light_radius_arcsec",
    "bulge_fraction",
    "axis_ratio",
    "position_angle_deg",
)
"""Truth columns, all float32 (see the module docstring)."""

EPOCH_LIST = pa.list_(pa.field("element", pa.float32()))
"""Type of the epoch columns (child named as Parquet names it, so tables round-trip exactly)."""

_NJY = {"unit": "nJy"}
_DEG = {"unit": "deg"}


def shard_schema(config: SurveyConfig) -> pa.Schema:
    """The Arrow schema of every shard of ``config``, with the config in its metadata."""
    cols = DEFAULT_COLUMNS
    fields = [
        pa.field(cols.object_id, pa.int64(), nullable=False),
        pa.field(cols.ra, pa.float64(), metadata=_DEG),
        pa.field(cols.dec, pa.float64(), metadata=_DEG),
    ]
    for flux, err in zip(cols.flux_columns(), cols.flux_err_columns(), strict=True):
        fields += [
            pa.field(flux, pa.float32(), metadata=_NJY),
            pa.field(err, pa.float32(), metadata=_NJY),
        ]
    fields += [pa.field(cols.redshift, pa.float32()), pa.field(cols.field, pa.string())]
    fields += [pa.field(name, pa.float32()) for name in TRUTH_COLUMNS]
    if config.epochs:
        for flux, err in zip(*cols.epoch_columns(), strict=True):
            fields += [
                pa.field(flux, EPOCH_LIST, metadata=_NJY),
                pa.field(err, EPOCH_LIST, metadata=_NJY),
            ]
    if config.cutouts:
        shape = (len(BANDS), config.cutout_size, config.cutout_size)
        fields.append(
            pa.field(
                cols.cutout,
                pa.fixed_shape_tensor(pa.float32(), shape),
                metadata={
                    "unit": "nJy/pixel",
                    "pixel_scale_arcsec": str(PIXEL_SCALE),
                    "bands": "".join(BANDS),
                },
            )
        )
    return pa.schema(
        fields,
        metadata={"raypz.sim.config": config.to_json(), "raypz.version": __version__},
    )


def iter_shard_batches(config: SurveyConfig, shard_index: int) -> Iterator[pa.RecordBatch]:
    """The rows of shard ``shard_index`` as record batches, in order (bounded memory)."""
    survey = build_survey(config)
    streams = np.random.SeedSequence([config.seed, config.field_spec.code, shard_index]).spawn(6)
    rng_population, rng_noise, rng_epochs, rng_cutouts, rng_depth, rng_missing = (
        np.random.default_rng(s) for s in streams
    )
    n = config.shard_rows(shard_index)
    catalog = draw_catalog(survey, rng_population, rng_noise, n, rng_depth)
    ids = object_ids(config.field_spec, shard_index, n)
    missing = missing_bands(config.missing_band_fraction, n, rng_missing)
    schema = shard_schema(config)
    # drawn for the whole shard at once: the epoch stream then gives the same epochs whether
    # or not the rows are cut into batches for cutouts
    epochs = _epoch_columns(config, survey, catalog, rng_epochs) if config.epochs else {}
    step = CUTOUT_BATCH_ROWS if config.cutouts else n
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        part = catalog.take(rows)
        part_missing = None if missing is None else missing[rows]
        columns = _catalog_columns(config, part, ids[rows], part_missing)
        columns.update({name: array.slice(start, rows.size) for name, array in epochs.items()})
        if config.cutouts:
            renderer = cutout_renderer(config.years, config.field, config.cutout_size)
            images = renderer.render(part.galaxies, part.true_flux, rng_cutouts)
            columns[DEFAULT_COLUMNS.cutout] = tensor_array(images)
        yield pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


def simulate_shard(config: SurveyConfig, shard_index: int) -> pa.Table:
    """Shard ``shard_index`` of the survey described by ``config``, simulated in this process.

    Deterministic: the same config and index give equal tables on any machine, whatever else
    runs. Rows: ``config.shard_rows(shard_index)``.

    >>> from raypz.sim import SurveyConfig, simulate_shard
    >>> table = simulate_shard(SurveyConfig(n_objects=100, seed=1), 0)
    >>> table.num_rows, table.schema.field("g_cModelFlux").type
    (100, DataType(float))
    """
    schema = shard_schema(config)
    return pa.Table.from_batches(list(iter_shard_batches(config, shard_index)), schema=schema)


def _truth_columns(catalog: Catalog) -> dict[str, np.ndarray]:
    """Truth column name -> float32 values, shape (n,)."""
    g = catalog.galaxies
    i_true = flux_to_mag(catalog.true_flux[:, BANDS.index("i")])
    axis_ratio = g.bulge_fraction * g.q_bulge + (1.0 - g.bulge_fraction) * g.q_disk
    values = (
        g.sed_type,
        g.ebv,
        g.ew_halpha,
        g.abs_mag_b,
        i_true,
        g.half_light_radius,
        g.bulge_fraction,
        axis_ratio,
        g.position_angle,
    )
    return {k: np.asarray(v, dtype=np.float32) for k, v in zip(TRUTH_COLUMNS, values, strict=True)}


def missing_bands(fraction: float, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """Which bands each row misses: (n, n_bands) bool, or None when ``fraction`` is 0.

    Each row and band is missing with probability ``fraction``; a row that would miss every
    band gets one band back, chosen uniformly (so the realised rate is a little lower at high
    fractions: ``fraction - fraction**6 / 6``).
    """
    if not fraction:
        return None
    mask = rng.uniform(size=(n, len(BANDS))) < fraction
    keep = rng.integers(0, len(BANDS), size=n)
    lost = mask.all(axis=1)
    mask[lost, keep[lost]] = False
    return mask


def _catalog_columns(
    config: SurveyConfig, part: Catalog, ids: np.ndarray, missing: np.ndarray | None = None
) -> dict[str, pa.Array]:
    cols = DEFAULT_COLUMNS
    out: dict[str, pa.Array] = {
        cols.object_id: pa.array(ids, pa.int64()),
        cols.ra: pa.array(part.ra, pa.float64()),
        cols.dec: pa.array(part.dec, pa.float64()),
    }
    for b, (flux, err) in enumerate(zip(cols.flux_columns(), cols.flux_err_columns(), strict=True)):
        f, e = part.flux[:, b].astype(np.float32), part.flux_err[:, b].astype(np.float32)
        if missing is not None:
            f[missing[:, b]] = np.nan
            e[missing[:, b]] = np.nan
        out[flux] = pa.array(f)
        out[err] = pa.array(e)
    out[cols.redshift] = pa.array(part.galaxies.z.astype(np.float32))
    out[cols.field] = pa.array([config.field] * len(part), pa.string())
    out.update({k: pa.array(v) for k, v in _truth_columns(part).items()})
    return out


def _epoch_columns(
    config: SurveyConfig, survey: Survey, part: Catalog, rng: np.random.Generator
) -> dict[str, pa.Array]:
    """``{b}_epochFlux`` / ``{b}_epochFluxErr`` list columns of the rows of ``part``."""
    sky = epoch_sky_variances(config.seed, config.years, config.field, config.max_epochs_per_band)
    factor = part.variance_factor if config.depth_scatter_mag else None
    pairs = draw_epochs(survey.noise, sky, part.true_flux, part.flux, part.extension, rng, factor)
    flux_names, err_names = DEFAULT_COLUMNS.epoch_columns()
    out = {}
    for (flux, err), flux_name, err_name in zip(pairs, flux_names, err_names, strict=True):
        out[flux_name] = _list_array(flux)
        out[err_name] = _list_array(err)
    return out


def _list_array(values: np.ndarray) -> pa.Array:
    """(n, k) float -> list<float32> array of n lists of length k."""
    n, k = values.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    return pa.ListArray.from_arrays(
        offsets, pa.array(values.astype(np.float32).ravel()), type=EPOCH_LIST
    )
