"""Point-estimate metrics on tiny hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raypz.metrics import point_metrics, scaled_residual


def test_hand_computed_five_rows():
    z_spec = np.zeros(5)  # 1 + z_spec = 1, so dz = z_phot
    z_phot = np.array([-0.2, -0.01, 0.0, 0.03, 0.1])
    m = point_metrics(z_phot, z_spec)
    assert m["bias_median"] == pytest.approx(0.0)
    assert m["bias_mean"] == pytest.approx(-0.016)
    # |dz - 0| = 0.2, 0.01, 0, 0.03, 0.1 -> median 0.03
    assert m["sigma_mad"] == pytest.approx(1.4826 * 0.03)
    # linear percentiles of 5 sorted values: P84.1 at position 3.364, P15.9 at position 0.636
    p841 = 0.03 + 0.364 * (0.1 - 0.03)
    p159 = -0.2 + 0.636 * (-0.01 + 0.2)
    assert m["sigma68"] == pytest.approx((p841 - p159) / 2)
    assert m["eta_0.15"] == pytest.approx(1 / 5)
    assert m["eta_0.05"] == pytest.approx(2 / 5)
    assert m["eta_0.02"] == pytest.approx(3 / 5)
    assert m["eta_5sigma"] == 0.0  # 5 sigma_MAD = 0.222 > 0.2


def test_residual_is_scaled_by_one_plus_z():
    dz = scaled_residual(np.array([1.2, 0.8]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(dz, [0.1, -0.1])
    m = point_metrics(np.array([1.2, 0.8]), np.array([1.0, 1.0]))
    assert m["sigma_mad"] == pytest.approx(0.14826)
    assert m["eta_0.05"] == 1.0
    assert m["eta_0.15"] == 0.0


def test_five_sigma_outliers():
    dz = np.concatenate([np.linspace(-0.01, 0.01, 99), [0.5]])
    m = point_metrics(dz, np.zeros_like(dz))
    assert m["eta_5sigma"] == pytest.approx(0.01)


def test_empty_input_gives_nan_without_warnings():
    m = point_metrics(np.empty(0), np.empty(0))
    assert all(math.isnan(v) for v in m.values())
