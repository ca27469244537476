"""SurveyConfig validation, shard sizes and objectId encoding."""

from __future__ import annotations

import numpy as np
import pytest

from raypz.sim import FIELDS, SurveyConfig
from raypz.sim.config import object_ids


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_objects": 0}, "n_objects"),
        ({"depth": "y11"}, "depth"),
        ({"depth": "10"}, "depth"),
        ({"field": "ultra"}, "field"),
        ({"cutout_size": 33}, "cutout_size"),
        ({"mag_limit": 30.0}, "mag_limit"),
        ({"rows_per_shard": 0}, "rows_per_shard"),
        ({"max_epochs_per_band": 0}, "max_epochs_per_band"),
        ({"area_deg2": -1.0}, "area_deg2"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**33 + 5}, r"seed must be an int in \[0, 2\*\*32\)"),
    ],
)
def test_invalid_values_are_refused_with_the_field_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SurveyConfig(**kwargs)


def test_shards_split_rows_with_the_remainder_last():
    config = SurveyConfig(n_objects=1050, rows_per_shard=500)
    assert config.n_shards == 3
    assert [config.shard_rows(i) for i in range(3)] == [500, 500, 50]
    assert config.years == 10
    with pytest.raises(IndexError):
        config.shard_rows(3)


def test_object_ids_encode_field_and_shard():
    ids = {
        int(i)
        for field in FIELDS.values()
        for shard in (0, 1, 9_999_999)
        for i in object_ids(field, shard, 3)
    }
    assert len(ids) == len(FIELDS) * 3 * 3
    assert object_ids(FIELDS["wide"], 2, 3).dtype == np.int64
    assert object_ids(FIELDS["wide"], 2, 3)[0] == 2 * 10**15 + 2 * 10**8
