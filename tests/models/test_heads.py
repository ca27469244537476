"""PDF heads and the catalog network: shapes, normalisation, likelihood, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raypz.models import CatalogNet, CatalogNetConfig
from raypz.models.heads import BinnedHead, MDNHead, build_head
from raypz.pdf import ZGrid

GRID = ZGrid()
Z = torch.tensor(GRID.values, dtype=torch.float32)


def _trapezoid(p: torch.Tensor) -> torch.Tensor:
    return (p.sum(dim=1) - 0.5 * (p[:, 0] + p[:, -1])) * GRID.dz


def test_mdn_single_gaussian_nll_matches_the_formula():
    head = MDNHead(in_dim=4, n_components=1)
    out = torch.tensor([[[0.0], [1.0], [0.1]]])  # log w = 0, mu = 1, sigma = 0.1; (1, 3, 1)
    z = torch.tensor([1.2])
    expected = 0.5 * 2.0**2 + math.log(0.1) + 0.5 * math.log(2 * math.pi)
    assert head.loss(out, z).item() == pytest.approx(expected, rel=1e-5)


def test_mdn_pdf_matches_the_mixture_in_float64():
    """Narrow, broad and off-grid components and a width scale: the chunked, clamped
    evaluation equals the mixture density computed directly, renormalised on the grid."""
    head = MDNHead(in_dim=4, n_components=3)
    head.width_scale.fill_(0.8)
    rows = 600  # more than one chunk
    rng = np.random.default_rng(0)
    log_w = np.log(rng.dirichlet(np.ones(3), rows))
    mu = rng.uniform(-0.5, 4.0, (rows, 3))
    sigma = np.exp(rng.uniform(np.log(0.003), np.log(0.5), (rows, 3)))
    mu[0] = [0.5, 1.0, 1.5]  # a row with all mass on the grid, one very narrow component
    sigma[0] = [0.003, 0.02, 0.3]
    out = torch.tensor(np.stack([log_w, mu, sigma], axis=1), dtype=torch.float32)
    log_w, mu, sigma = out.double().numpy().transpose(1, 0, 2)  # the float32 values, exactly
    s = sigma * 0.8
    z = Z.double().numpy()  # the float32 grid the head is given
    dens = (
        np.exp(log_w)[:, :, None]
        / s[:, :, None]
        * np.exp(-0.5 * ((z - mu[:, :, None]) / s[:, :, None]) ** 2)
    )
    expected = dens.sum(axis=1)
    mass = (expected.sum(axis=1) - 0.5 * (expected[:, 0] + expected[:, -1])) * GRID.dz
    on_grid = mass > 1e-3  # rows whose mixture lies off the grid renormalise noise
    expected = expected[on_grid] / mass[on_grid, None]
    got = head.pdf(out, Z).numpy()[on_grid]
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * expected.max())
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def test_mdn_rows_whose_mixture_lies_off_the_grid_pile_up_at_its_nearest_end():
    """Every component more than ~11 sigma beyond an end: the grid held only the clamp floor,
    so the row was flat (mode z = 0, median mid-grid) and weighed ~0 in an ensemble mean."""
    head = MDNHead(in_dim=4, n_components=2)
    mu = [[3.8, -3.0], [3.6, -3.0], [-0.05, 5.0], [1.0, -3.0]]  # the last: on the grid
    sigma = [[0.02, 0.01], [0.005, 0.01], [0.003, 0.01], [0.05, 0.01]]
    log_w = torch.log(torch.tensor([[0.999, 0.001]] * 4))
    out = torch.stack([log_w, torch.tensor(mu), torch.tensor(sigma)], dim=1)
    p = head.pdf(out, Z)
    torch.testing.assert_close(_trapezoid(p), torch.ones(4), atol=1e-5, rtol=0)
    assert p.argmax(dim=1).tolist() == [GRID.n - 1, GRID.n - 1, 0, 100]
    # the first row's tail in float64: exp(-(z - 3.8)^2 / (2 0.02^2)) near 3.5, normalised
    z = Z.double().numpy()
    expected = np.exp(-0.5 * ((z - 3.8) / 0.02) ** 2 - (-0.5 * ((3.5 - 3.8) / 0.02) ** 2))
    expected /= (expected.sum() - 0.5 * (expected[0] + expected[-1])) * GRID.dz
    np.testing.assert_allclose(p[0].numpy(), expected, rtol=2e-3, atol=1e-6 * expected.max())


def test_mdn_learns_labels_beyond_the_grid_as_its_ends():
    """As the binned head: a mixture fitted to z beyond z_max put its mass where the grid
    cannot show it, and the PDF became what was left, a stray component (z_mode 0.56 for an
    object at z = 3.52)."""
    head = build_head("mdn", 4, Z, 3, 0.01)
    out = head(torch.randn(3, 4))
    beyond = head.loss(out, torch.tensor([3.9, -0.2, 1.0]))
    torch.testing.assert_close(beyond, head.loss(out, torch.tensor([3.5, 0.0, 1.0])))
    unclamped = MDNHead(in_dim=4, n_components=3).loss
    assert unclamped(out, torch.tensor([3.9] * 3))[0] != unclamped(out, torch.tensor([3.5] * 3))[0]


@pytest.mark.parametrize("head_name", ["mdn", "binned"])
def test_network_pdfs_are_normalised_and_trainable(head_name):
    torch.manual_seed(0)
    net = CatalogNet(23, Z, CatalogNetConfig(hidden=(32, 32), head=head_name))
    x = torch.randn(64, 23)
    z = torch.rand(64) * 3
    net.eval()
    torch.testing.assert_close(net.head_output(x), net(x)[0])  # the decoder is not needed
    p = net.pdf(x, Z)
    assert p.shape == (64, GRID.n) and torch.all(p >= 0)
    torch.testing.assert_close(_trapezoid(p), torch.ones(64), atol=1e-4, rtol=0)
    net.train()
    loss = net.loss(net(x), x, z)
    assert loss.shape == (64,)
    loss.mean().backward()
    grads = [q.grad for q in net.parameters() if q.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_mdn_training_step_lowers_the_nll_on_a_fixed_batch():
    torch.manual_seed(1)
    net = CatalogNet(23, Z, CatalogNetConfig(hidden=(32,), dropout=0.0))
    x = torch.randn(256, 23)
    z = (x[:, 0].sigmoid() * 2.5).detach()  # redshift is a function of the inputs
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = net.loss(net(x), x, z).mean()
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < first - 1.0


def test_binned_soft_labels_sum_to_one_and_peak_at_the_true_bin():
    head = BinnedHead(8, Z)
    z = torch.tensor([0.5, 2.0])
    labels = head.soft_labels(z)
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(2))
    assert np.allclose(GRID.values[labels.argmax(dim=1).numpy()], [0.5, 2.0])


def test_binned_soft_labels_of_redshifts_beyond_the_grid_sit_at_its_end():
    """A spec-z of 5 or 9 on a grid ending at 3.5 (the schema accepts labels to 10): its
    Gaussian would underflow to 0 / 0 on every grid point and poison the network with NaN."""
    head = BinnedHead(8, Z, label_sigma=0.0)
    labels = head.soft_labels(torch.tensor([5.0, 9.0]))
    assert torch.isfinite(labels).all()
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(2))
    assert (labels.argmax(dim=1) == len(GRID.values) - 1).all()


@pytest.mark.parametrize("head_name", ["mdn", "binned"])
def test_head_projection_stays_float32_under_bf16_autocast(head_name):
    """bf16 would round an MDN mean near z = 2 to ~0.008: the heads compute in float32 even
    inside autocast (the networks' trunks may use it)."""
    torch.manual_seed(0)
    head = build_head(head_name, 16, Z, n_components=5, label_sigma=0.01).eval()
    h = torch.randn(32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = head(h)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, head(h))
