"""Batch norms folded into the layer before them give the same outputs, without the norms."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from raypz.models import CatalogNet, CatalogNetConfig, ImageNet, ImageNetConfig
from raypz.models.folding import fold_batch_norms

Z = torch.linspace(0.0, 3.5, 141)


def _with_running_statistics(net: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters in every batch norm, as after
    training (fresh ones are the identity map and would hide a wrong fold)."""
    torch.manual_seed(3)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0.0, 2.0)
            m.running_var.uniform_(0.1, 4.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.5)
    return net.eval()


def _norms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def test_folded_catalog_net_matches_and_has_no_batch_norms():
    torch.manual_seed(0)
    net = _with_running_statistics(CatalogNet(23, Z, CatalogNetConfig(hidden=(32, 32))))
    folded = fold_batch_norms(copy.deepcopy(net))
    x = torch.randn(64, 23)
    assert _norms(net) == 2 and _norms(folded) == 0
    torch.testing.assert_close(folded.head_output(x), net.head_output(x), rtol=1e-5, atol=1e-5)


def test_folded_image_net_matches_and_has_no_batch_norms():
    torch.manual_seed(0)
    config = ImageNetConfig(stem_channels=8, blocks=(16,), fusion=True)
    net = _with_running_statistics(ImageNet(6, 23, Z, config))
    folded = fold_batch_norms(copy.deepcopy(net))
    x, images = torch.randn(4, 23), torch.randn(4, 6, 16, 16)
    assert _norms(net) > 0 and _norms(folded) == 0
    torch.testing.assert_close(
        folded.head_output(x, images), net.head_output(x, images), rtol=1e-4, atol=1e-4
    )


def test_folding_refuses_a_network_in_training_mode():
    net = CatalogNet(23, Z, CatalogNetConfig(hidden=(8,)))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(net.train())
