"""The image network, gradient reversal and the DANN schedule: shapes, gradients, PDFs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from raypz.models import ImageNet, ImageNetConfig
from raypz.models.domain import DomainClassifier, reversal_weight, reverse_gradient
from raypz.models.image_net import InceptionBlock

Z = torch.linspace(0.0, 3.5, 141)
SMALL = ImageNetConfig(stem_channels=8, blocks=(16, 16), hidden=(32,))


def test_reverse_gradient_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.7)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * torch.arange(3.0).expand(5, 3))


def test_reversal_weight_schedule():
    assert reversal_weight(0.0) == 0.0
    assert reversal_weight(1.0, max_weight=2.0) == pytest.approx(
        2.0 * (2 / (1 + math.exp(-10)) - 1)
    )
    values = [reversal_weight(p / 10) for p in range(11)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert reversal_weight(-1.0) == 0.0 and reversal_weight(5.0) == reversal_weight(1.0)


def test_inception_block_concatenates_four_branches():
    block = InceptionBlock(6, 20)
    assert block(torch.randn(2, 6, 9, 9)).shape == (2, 20, 9, 9)


@pytest.mark.parametrize("size", [16, 24, 32])
@pytest.mark.parametrize("fusion", [False, True])
def test_image_net_shapes_and_normalised_pdf(size, fusion):
    torch.manual_seed(0)
    net = ImageNet(6, 23, Z, ImageNetConfig(stem_channels=8, blocks=(16, 16, 16), fusion=fusion))
    x, images = torch.randn(4, 23), torch.randn(4, 6, size, size)
    head_out, domain = net(x, images)
    assert head_out.shape == (4, 3, 5) and domain is None
    assert net.loss((head_out, domain), x, torch.rand(4)).shape == (4,)
    net.eval()
    torch.testing.assert_close(net.head_output(x, images), net(x, images)[0])
    pdf = net.pdf(x, images, z_grid=Z)
    mass = (pdf.sum(1) - 0.5 * (pdf[:, 0] + pdf[:, -1])) * float(Z[1] - Z[0])
    torch.testing.assert_close(mass, torch.ones(4))


def test_fusion_reads_catalog_features_and_image_only_ignores_them():
    torch.manual_seed(1)
    images = torch.randn(3, 6, 16, 16)
    x1, x2 = torch.randn(3, 23), torch.randn(3, 23)
    fused = ImageNet(6, 23, Z, ImageNetConfig(stem_channels=8, blocks=(16,), fusion=True)).eval()
    alone = ImageNet(6, 23, Z, ImageNetConfig(stem_channels=8, blocks=(16,))).eval()
    assert not torch.allclose(fused(x1, images)[0], fused(x2, images)[0])
    assert torch.equal(alone(x1, images)[0], alone(x2, images)[0])


def test_domain_classifier_reverses_its_gradient_into_the_cnn():
    """With lambda > 0 the CNN's gradient from the domain loss is -lambda times the gradient
    it would get from minimising that loss (lambda = -1 here stands for "no reversal")."""
    torch.manual_seed(2)
    net = ImageNet(6, 23, Z, ImageNetConfig(stem_channels=8, blocks=(16,), domain_adapt=True))
    x, images, is_target = torch.randn(6, 23), torch.randn(6, 6, 16, 16), torch.ones(6)
    stem = net.cnn[0][0].weight
    grads = {}
    for weight in (0.5, -1.0):
        net.zero_grad()
        net.domain.weight = weight
        _, logits = net(x, images)
        DomainClassifier.loss(logits, is_target).mean().backward()
        grads[weight] = stem.grad.clone()
    torch.testing.assert_close(grads[0.5], -0.5 * grads[-1.0])
    assert net.domain.net[0].weight.grad is not None


def test_config_round_trip_and_rules():
    cfg = ImageNetConfig(blocks=(8, 12), hidden=(16,), fusion=True, domain_adapt=True)
    assert ImageNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="multiples of 4"):
        ImageNetConfig(blocks=(10,))
    with pytest.raises(ValueError, match="head"):
        ImageNetConfig(head="gauss")
