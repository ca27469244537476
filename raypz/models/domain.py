"""Domain-adversarial training (Ganin & Lempitsky 2015): gradient reversal + field classifier.

    features (B, F) --GRL(lambda)--> Linear -> ReLU -> Linear --> domain logit (B,)

The gradient-reversal layer is the identity going forward and multiplies the gradient by
``-lambda`` going back. The classifier learns to tell source (deep, labelled) rows from target
(wide, unlabelled) rows; the reversed gradient teaches the feature extractor to make them
indistinguishable, so the redshift head sees features that transfer to the target field.
``lambda`` follows the usual schedule ``2 / (1 + exp(-gamma p)) - 1`` over training progress
``p`` in [0, 1], so the noisy early classifier does not disturb the features.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Identity on ``x``; multiplies the gradient flowing back through it by ``-weight``."""
    return _ReverseGradient.apply(x, weight)


def reversal_weight(progress: float, max_weight: float = 1.0, gamma: float = 10.0) -> float:
    """The DANN schedule: 0 at the start, rising smoothly to ``max_weight`` (progress in [0, 1])."""
    p = min(max(progress, 0.0), 1.0)
    return max_weight * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


class DomainClassifier(nn.Module):
    """Field classifier behind a gradient-reversal layer.

    Args:
        in_dim: width F of the feature vector it reads.
        hidden: width of its hidden layer.
    """

    def __init__(self, in_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.weight = 0.0
        """Current reversal weight lambda; the training loop sets it every step."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F) -> domain logits (B,): > 0 means "target field"."""
        return self.net(reverse_gradient(features, self.weight)).squeeze(1).float()

    @staticmethod
    def loss(logits: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
        """Per-row binary cross-entropy (B,) against 1 for target rows, 0 for source rows."""
        return nn.functional.binary_cross_entropy_with_logits(
            logits, is_target.float(), reduction="none"
        )
