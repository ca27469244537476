"""Fold batch norms into the layer before them, for inference.

In eval mode a BatchNorm is a fixed per-channel affine map, so ``Linear -> BatchNorm1d`` (and
``Conv2d -> BatchNorm2d``) equals one Linear (Conv2d) with rescaled weights and shifted bias.
Folding removes a pass over every activation (7% of the catalog networks' CPU time). Only
for prediction copies of a network: a folded network must not be trained or saved.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

_FOLDABLE = (
    (nn.Linear, nn.BatchNorm1d, fuse_linear_bn_eval),
    (nn.Conv2d, nn.BatchNorm2d, fuse_conv_bn_eval),
)


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """Fold, in place, every batch norm that directly follows a Linear or Conv2d inside an
    ``nn.Sequential`` of ``net`` (in eval mode); the batch norm becomes an Identity.

    Returns:
        ``net``, for chaining.

    Raises:
        ValueError: if ``net`` is in training mode (batch statistics, not running ones).
    """
    if net.training:
        raise ValueError("fold_batch_norms needs a network in eval mode")
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            for layer, norm, fuse in _FOLDABLE:
                if isinstance(seq[i], layer) and isinstance(seq[i + 1], norm):
                    seq[i] = fuse(seq[i], seq[i + 1])
                    seq[i + 1] = nn.Identity()
    return net
