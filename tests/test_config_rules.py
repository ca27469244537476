"""Every float setting of the jobs' configs refuses NaN and inf (which pass or fail range
rules written as comparisons by accident), naming the setting."""

from __future__ import annotations

import dataclasses
import math

import pytest

from raypz.infer import InferConfig
from raypz.models import CatalogNetConfig, ImageNetConfig
from raypz.sim import SurveyConfig
from raypz.train import TrainConfig
from raypz.train.tune import TuneSettings

CONFIGS = (TrainConfig, CatalogNetConfig, ImageNetConfig, InferConfig, SurveyConfig, TuneSettings)


def _float_settings(cls: type) -> list[tuple[type, str]]:
    """(class, field) of every field whose default is a float, or a tuple holding floats."""
    default = cls()
    out = []
    for field in dataclasses.fields(cls):
        value = getattr(default, field.name)
        items = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) for v in items):
            out.append((cls, field.name))
    return out


FLOAT_SETTINGS = [pair for cls in CONFIGS for pair in _float_settings(cls)]


def test_the_configs_have_float_settings_to_check():
    assert {cls for cls, _ in FLOAT_SETTINGS} == set(CONFIGS) - {InferConfig, TuneSettings}
    assert (TrainConfig, "coadd_fraction") in FLOAT_SETTINGS


@pytest.mark.parametrize(("cls", "name"), FLOAT_SETTINGS)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_float_setting_that_is_not_finite_is_refused(cls, name, bad):
    value = getattr(cls(), name)
    broken = (bad, *value[1:]) if isinstance(value, tuple) else bad
    with pytest.raises(ValueError, match=f"{cls.__name__}: settings must be finite.*{name}="):
        cls(**{name: broken})


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (InferConfig, "cpus_per_actor"),
        (InferConfig, "gpus_per_actor"),
        (InferConfig, "image_batch_mb"),
        (TuneSettings, "time_budget_s"),
        (TuneSettings, "gpus_per_trial"),
        (TrainConfig, "cpus_per_worker"),
    ],
)
def test_optional_float_settings_refuse_nan(cls, name):
    """Float settings whose default is None (chosen at run time)."""
    with pytest.raises(ValueError, match=f"settings must be finite.*{name}=nan"):
        cls(**{name: math.nan})


def test_image_networks_refuse_settings_out_of_range():
    for settings in ({"dropout": 1.0}, {"label_sigma": -0.1}, {"n_components": 0}):
        with pytest.raises(ValueError, match="ImageNetConfig"):
            ImageNetConfig(**settings)
    with pytest.raises(ValueError, match="cpus_per_worker > 0"):
        TrainConfig(cpus_per_worker=-1.0)
