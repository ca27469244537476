"""Unit tests of training augmentation, balance weights, hash splits and the heads' width scale."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from raypz.features import FeatureTransform, flux_arrays
from raypz.models import CatalogNetConfig
from raypz.models.heads import WIDTH_SCALE_KEY, BinnedHead, MDNHead
from raypz.sim import SurveyConfig, simulate_shard
from raypz.train import (
    BalanceWeights,
    TrainConfig,
    add_flux_noise,
    fold_of,
    hash_unit,
    is_validation,
    kfold_of,
    randomised_coadd,
)
from raypz.train.batches import BatchPreparer
from raypz.train.labelled import train_mask
from raypz.train.member import TableBatches


def test_flux_noise_off_returns_inputs(rng):
    flux, err = rng.normal(100, 10, (50, 6)), np.full((50, 6), 5.0)
    out_f, out_e = add_flux_noise(flux, err, 0.0, rng)
    assert out_f is flux and out_e is err


def test_flux_noise_scales_errors_consistently(rng):
    n = 20000
    flux, err = np.full((n, 6), 100.0), np.full((n, 6), 5.0)
    flux[0, 2] = np.nan
    noisy, new_err = add_flux_noise(flux, err, 1.0, rng)
    assert np.isnan(noisy[0, 2])
    s = np.sqrt((new_err[:, 0] / 5.0) ** 2 - 1.0)  # the per-row scale drawn in [0, 1]
    assert s.min() >= 0 and s.max() <= 1 and abs(s.mean() - 0.5) < 0.02
    # extra noise std is s * err: residual / (s err) is standard normal
    resid = (noisy[1:, 0] - 100.0) / np.maximum(s[1:] * 5.0, 1e-9)
    assert abs(np.std(resid[s[1:] > 0.05]) - 1.0) < 0.03


def test_randomised_coadd_full_fraction_is_inverse_variance_mean(rng):
    f = np.array([[10.0, 20.0, 30.0], [5.0, 5.0, 5.0]])
    e = np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    flux, err = randomised_coadd(f, e, (1.0, 1.0), rng)
    w = 1 / e[0] ** 2
    assert flux[0] == pytest.approx((w * f[0]).sum() / w.sum())
    assert err[0] == pytest.approx(1 / np.sqrt(w.sum()))
    assert flux[1] == pytest.approx(5.0) and err[1] == pytest.approx(1 / np.sqrt(3))


def test_randomised_coadd_ragged_rows_keep_an_epoch(rng):
    f = np.array([np.array([1.0, 2.0]), np.array([3.0]), None], dtype=object)
    e = np.array([np.array([1.0, 1.0]), np.array([1.0]), None], dtype=object)
    flux, err = randomised_coadd(f, e, (0.01, 0.01), rng)
    assert np.isfinite(flux[:2]).all() and flux[1] == 3.0
    assert np.isnan(flux[2]) and np.isnan(err[2])


@pytest.fixture(scope="module")
def epoch_batch():
    """300 rows with single-exposure columns and ~20% of bands masked in the catalog (the
    simulator writes epochs for those bands too), as a numpy batch, and its transform."""
    config = SurveyConfig(n_objects=300, seed=5, epochs=True, missing_band_fraction=0.2)
    table = simulate_shard(config, 0)
    batch = next(TableBatches(table).batches(table.num_rows, None))
    return batch, FeatureTransform.fit(*flux_arrays(table))


def test_randomised_coadd_keeps_the_catalogs_masked_bands_masked(epoch_batch):
    """Every epoch kept: the coadd is the catalog's measurement, so the augmented inputs equal
    the plain ones; a band the catalog masks (NaN) must not come back from its epochs."""
    batch, transform = epoch_batch
    assert np.isnan(flux_arrays(batch)[0]).any(axis=1).mean() > 0.2
    prep = BatchPreparer(transform, TrainConfig(coadd_fraction=(1.0, 1.0)), seed=0)
    (augmented,), _, _ = prep(batch, augment=True)
    (plain,), _, _ = prep(batch, augment=False)
    np.testing.assert_allclose(augmented, plain, rtol=1e-4, atol=1e-4)


def test_unusable_labels_get_no_weight_and_a_finite_target(epoch_batch):
    """A -99 placeholder, an inf and a NaN: weight 0 (the validation report counts them) and a
    finite label (inf x 0 would make the batch's loss NaN)."""
    batch, transform = epoch_batch
    z = np.asarray(batch["redshift"], dtype=np.float64).copy()
    z[:4] = [-99.0, np.inf, np.nan, 10.5]
    prep = BatchPreparer(transform, TrainConfig(), seed=0)
    _, labels, weights = prep({**batch, "redshift": z}, augment=False)
    assert weights[:4].tolist() == [0, 0, 0, 0] and labels[:4].tolist() == [0, 0, 0, 0]
    assert np.isfinite(labels).all() and weights[4:].max() == 1


def test_balance_weights_need_a_usable_row():
    with pytest.raises(ValueError, match="positive r-band flux"):
        BalanceWeights.fit(np.array([0.5, 1.0]), np.array([np.nan, np.nan]))
    with pytest.raises(ValueError, match="usable redshift"):
        BalanceWeights.fit(np.array([-99.0, np.inf]), np.array([22.0, 23.0]))


def test_balance_weights_flatten_the_histogram(rng):
    """Rare high-z rows count more; with quantile bins (before) every z bin held as many rows
    and the weights stayed ~1, and faint high-z rows were weighted down."""
    z = rng.gamma(2.0, 0.3, 20_000)
    mag = 22 + 5 * np.log10(1 + z) + rng.normal(0, 1, z.size)  # faint goes with high z
    bw = BalanceWeights.fit(z, mag, max_weight=10.0)
    w = bw(z, mag)
    assert w.mean() == pytest.approx(1.0, rel=1e-6)
    high = z > 1.5
    assert (w * high).sum() / w.sum() > 2 * high.mean()  # their share grows (0.040 -> 0.117)
    faint_high = high & (mag > np.quantile(mag, 0.9))
    assert w[faint_high].mean() > 2 * w[(z < 0.5) & (mag < np.median(mag))].mean()
    # a NaN magnitude (r flux <= 0) gets its z bin's mean row weight, not a mean over cells
    zi = np.clip(np.searchsorted(bw.z_edges, 2.0, side="right") - 1, 0, len(bw.weights) - 1)
    in_bin = np.clip(np.searchsorted(bw.z_edges, z, side="right") - 1, 0, len(bw.weights) - 1)
    expected = w[in_bin == zi].mean()
    assert bw(np.array([2.0]), np.array([np.nan]))[0] == pytest.approx(expected, rel=1e-6)


def test_balance_weights_cap(rng):
    z = np.concatenate([np.full(990, 0.5), np.full(10, 2.0)]) + rng.normal(0, 1e-3, 1000)
    bw = BalanceWeights.fit(z, rng.uniform(20, 25, 1000), max_weight=3.0, bins=(4, 1))
    w = np.asarray(bw.weights)
    assert w.max() / w[w > 0].min() <= 3.0 + 1e-9


def test_hash_split_is_stable_and_sized():
    ids = np.arange(200_000, dtype=np.int64) * 7919 + 10**15
    u = hash_unit(ids)
    assert ((u >= 0) & (u < 1)).all()
    assert np.array_equal(u, hash_unit(ids[::-1])[::-1])  # order-independent
    assert is_validation(ids, 0.15).mean() == pytest.approx(0.15, abs=0.005)
    folds = fold_of(ids, 5)
    assert set(np.unique(folds)) == set(range(5))
    assert np.bincount(folds).min() > 0.19 * ids.size


def test_kfold_folds_divide_the_rows_outside_the_validation_split_evenly():
    ids = np.arange(50_000, dtype=np.int64) * 104729 + 7
    config = TrainConfig(kfold=4, val_fraction=0.15)
    held_out = is_validation(ids, config.val_fraction)
    folds = kfold_of(ids, config.kfold, config.val_fraction)
    assert np.array_equal(folds == -1, held_out)
    counts = np.bincount(folds[~held_out], minlength=4)
    assert counts.min() > 0.24 * (~held_out).sum()  # even, not piled into one fold
    fit = [train_mask(ids, config, k) for k in range(config.kfold)]
    for k, rows in enumerate(fit):
        assert not (rows & held_out).any()  # no member trains on the validation split
        assert np.array_equal(rows, ~held_out & (folds != k))
    assert np.array_equal(np.logical_or.reduce(fit), ~held_out)  # together: every other row
    assert np.array_equal(train_mask(ids, config, None), ~held_out)


def test_validation_split_matches_fold_zero_share():
    ids = np.arange(10_000, dtype=np.int64)
    assert np.array_equal(is_validation(ids, 0.2), fold_of(ids, 5) == 0)


def test_train_config_round_trip_and_rules():
    config = TrainConfig(members=3, epochs=4)
    assert TrainConfig.from_dict(config.to_dict()) == config
    old = config.to_dict()
    del old["calibrate"], old["calibration_rows"]  # model.json written before these existed
    assert TrainConfig.from_dict(old).calibrate
    # a hand-written partial dict (in a notebook): the rest keeps its defaults, nested too
    partial = TrainConfig.from_dict({"epochs": 3, "net": {"dropout": 0.2}})
    assert partial == TrainConfig(epochs=3, net=CatalogNetConfig(dropout=0.2))
    assert TrainConfig.from_dict({"lr": 1}).lr == 1  # an int where a float is expected
    # another JSON kind than the field's is named (it failed in a comparison naming no field)
    for given, named in [
        ({"epochs": "three"}, "TrainConfig.epochs: expected int, got 'three'"),
        ({"epochs": 3.5}, "TrainConfig.epochs: expected int, got 3.5"),
        ({"net": {"dropout": "x"}}, "TrainConfig.net.dropout: expected float, got 'x'"),
        ({"balanced": 1}, "TrainConfig.balanced: expected bool, got 1"),
    ]:
        with pytest.raises(TypeError, match=re.escape(named)):
            TrainConfig.from_dict(given)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    # values that would train silently wrong: no early stopping at all, the transform fitted on
    # no row, pre-training for `epochs` when 0 was asked for, calibration on no row
    for field, value in [
        ("patience", 0),
        ("fit_sample_rows", 0),
        ("pretrain_epochs", 0),
        ("calibration_rows", 0),
        ("weight_decay", -1e-4),
        ("finetune_lr_factor", 0.0),
        ("balance_max_weight", 0.5),
        ("max_concurrent_members", 0),
    ]:
        with pytest.raises(ValueError, match=field):
            TrainConfig(**{field: value})
    # a network of no mixture component trained to an infinite loss, blamed on the labels
    for field, value in [("n_components", 0), ("latent_dim", 0), ("dae_noise", -0.1)]:
        with pytest.raises(ValueError, match=f"CatalogNetConfig.{field}"):
            CatalogNetConfig(**{field: value})


@pytest.mark.parametrize("head", ["mdn", "binned"])
def test_width_scale_buffer(head):
    grid = torch.linspace(0, 3.5, 351)
    torch.manual_seed(0)
    h = MDNHead(16, 3) if head == "mdn" else BinnedHead(16, grid, 0.02)
    out = h(torch.randn(4, 16))
    p1 = h.pdf(out, grid)
    state = {k: v for k, v in h.state_dict().items() if k != WIDTH_SCALE_KEY}
    h.load_state_dict(state)  # state dicts from before the buffer existed load as scale 1
    assert float(getattr(h, WIDTH_SCALE_KEY)) == 1.0
    getattr(h, WIDTH_SCALE_KEY).fill_(0.5)
    p2 = h.pdf(out, grid)
    dz = float(grid[1] - grid[0])
    for p in (p1, p2):
        assert torch.allclose(torch.trapezoid(p, dx=dz, dim=1), torch.ones(4), atol=1e-4)

    assert (p2.max(dim=1).values > p1.max(dim=1).values).all()  # sharper
    assert torch.equal(h.loss(out, torch.full((4,), 1.0)), h.loss(out, torch.full((4,), 1.0)))
