"""simulate_shard: determinism and the object-table contract (DESIGN 3.1)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from raypz.columns import BANDS, DEFAULT_COLUMNS
from raypz.sim import SurveyConfig, simulate_shard
from raypz.sim.shard import TRUTH_COLUMNS

C = DEFAULT_COLUMNS
SMALL = SurveyConfig(n_objects=600, seed=3, rows_per_shard=300)


def test_same_seed_gives_equal_tables_and_other_seeds_differ():
    first = simulate_shard(SMALL, 1)
    assert first.equals(simulate_shard(SMALL, 1), check_metadata=True)
    other_seed = simulate_shard(SurveyConfig(n_objects=600, seed=4, rows_per_shard=300), 1)
    assert not np.array_equal(first[C.redshift].to_numpy(), other_seed[C.redshift].to_numpy())
    other_shard = simulate_shard(SMALL, 0)
    assert not np.array_equal(first[C.redshift].to_numpy(), other_shard[C.redshift].to_numpy())


def test_columns_and_types_follow_the_contract():
    table = simulate_shard(SMALL, 0)
    schema = table.schema
    assert table.num_rows == 300
    assert schema.field(C.object_id).type == pa.int64()
    assert schema.field(C.ra).type == pa.float64()
    assert schema.field(C.dec).type == pa.float64()
    for name in C.flux_columns() + C.flux_err_columns():
        assert schema.field(name).type == pa.float32(), name
    assert schema.field(C.redshift).type == pa.float32()
    assert schema.field(C.field).type == pa.string()
    for name in TRUTH_COLUMNS:
        assert schema.field(name).type == pa.float32(), name
    assert C.cutout not in schema.names
    assert C.epoch_flux.format(band="r") not in schema.names
    assert b"raypz.sim.config" in schema.metadata


def test_values_are_physical(wide_table, flux_matrix):
    flux, err = flux_matrix(wide_table), flux_matrix(wide_table, err=True)
    assert np.isfinite(flux).all()
    assert (err > 0).all() and np.isfinite(err).all()
    assert (flux[:, BANDS.index("u")] < 0).any(), "faint objects must be allowed negative fluxes"
    assert (flux[:, BANDS.index("i")] >= 10 ** (-0.4 * (25.3 - 31.4)) * (1 - 1e-6)).all()
    z = wide_table[C.redshift].to_numpy()
    assert z.min() > 0 and z.max() < 3.5
    assert set(wide_table[C.field].to_pylist()) == {"wide"}
    ids = wide_table[C.object_id].to_numpy()
    assert np.unique(ids).size == ids.size


def test_object_ids_are_unique_across_shards_and_fields():
    ids = []
    for field in ("deep", "wide"):
        config = SurveyConfig(n_objects=200, seed=5, rows_per_shard=100, field=field)
        ids += [simulate_shard(config, i)[C.object_id].to_numpy() for i in range(2)]
    ids = np.concatenate(ids)
    assert np.unique(ids).size == ids.size == 400


def test_positions_lie_in_the_field_patch_and_fields_differ():
    for field, area in (("deep", 1.0), ("wide", 4.0)):
        table = simulate_shard(SurveyConfig(n_objects=500, seed=1, field=field, area_deg2=area), 0)
        ra, dec = table[C.ra].to_numpy(), table[C.dec].to_numpy()
        spec = SurveyConfig(field=field).field_spec
        half = np.sqrt(area) / 2
        assert np.all(np.abs(dec - spec.dec_center) <= half + 1e-9)
        width = np.abs((ra - spec.ra_center + 180) % 360 - 180)
        assert width.max() < half / np.cos(np.radians(abs(spec.dec_center) + half)) + 1e-9


def test_the_deep_field_is_deeper_with_better_seeing():
    from raypz.sim.photometry import noise_model

    deep, wide = noise_model(10, "deep"), noise_model(10, "wide")
    assert np.all(deep.m5 > wide.m5 + 1.0)
    assert np.all(deep.psf_fwhm < wide.psf_fwhm)
    assert np.all(noise_model(1, "wide").m5 < wide.m5)


@pytest.mark.parametrize("option", ["epochs", "cutouts"])
def test_options_leave_the_catalogue_columns_unchanged(option):
    base = SurveyConfig(n_objects=100, seed=2)
    plain = simulate_shard(base, 0)
    extra = simulate_shard(SurveyConfig(n_objects=100, seed=2, **{option: True}), 0)
    assert extra.select(plain.column_names).equals(plain)
