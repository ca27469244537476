"""The image network: an inception-style CNN on multi-band cutouts (Pasquet et al. 2019).

    images (B, C, H, W) --stem conv 3x3--> (B, s, H, W) --avg pool--> (B, s, H/2, W/2)
      --inception--> (B, b1, H/2, W/2) --avg pool--> --inception--> (B, b2, H/4, W/4) ...
      --adaptive avg pool to 2x2, flatten--> image features f (B, 4 b_last)
    [fusion]  catalog features x (B, D) --dense blocks--> (B, catalog_hidden), joined to f
    [f, (catalog)] --dense blocks--> head --> PDF on the z grid
    [domain adaptation]  f --gradient reversal--> field classifier --> domain logit (B,)

An inception block runs four branches in parallel and concatenates them: 1x1; 1x1 then 3x3;
1x1 then two 3x3 (a 5x5 receptive field); 3x3 average pool then 1x1. Every convolution is
followed by batch norm and ReLU. Pooling early keeps the cost of a 32x32 cutout near 10 MFLOP.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
from torch import nn

from raypz.config_rules import require_finite
from raypz.models.catalog_net import dense_block
from raypz.models.domain import DomainClassifier
from raypz.models.heads import build_head


@dataclass(frozen=True)
class ImageNetConfig:
    """Architecture of :class:`ImageNet`.

    Attributes:
        stem_channels: channels of the first 3x3 convolution.
        blocks: output channels of the inception blocks (each after a 2x average pool; each
            a multiple of 4, one quarter per branch).
        fusion: also read the catalog features (CNN + catalog fusion).
        catalog_hidden: width of the catalog branch of a fusion net.
        hidden: widths of the dense blocks between the features and the head.
        dropout: dropout probability in the dense blocks.
        head: "mdn" (Gaussian mixture) or "binned" (softmax over the z grid).
        n_components: Gaussians in the MDN head.
        label_sigma: soft-label width (units of 1+z) for the binned head.
        domain_adapt: add the gradient-reversal field classifier (DANN).
        domain_hidden: width of the field classifier's hidden layer.
    """

    stem_channels: int = 32
    blocks: tuple[int, ...] = (64, 96, 128)
    fusion: bool = False
    catalog_hidden: int = 128
    hidden: tuple[int, ...] = (256, 256)
    dropout: float = 0.0
    head: str = "mdn"
    n_components: int = 5
    label_sigma: float = 0.01
    domain_adapt: bool = False
    domain_hidden: int = 64

    def __post_init__(self) -> None:
        require_finite(self)
        if self.head not in ("mdn", "binned"):
            raise ValueError(f"ImageNetConfig.head must be 'mdn' or 'binned', got {self.head!r}")
        if not self.blocks or any(b < 4 or b % 4 for b in self.blocks):
            raise ValueError(
                f"ImageNetConfig.blocks must be positive multiples of 4: {self.blocks}"
            )
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"ImageNetConfig.hidden needs positive widths, got {self.hidden}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"ImageNetConfig.dropout must be in [0, 1), got {self.dropout}")
        for name in ("stem_channels", "catalog_hidden", "n_components", "domain_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"ImageNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.label_sigma < 0:
            raise ValueError(f"ImageNetConfig.label_sigma must be >= 0, got {self.label_sigma}")

    @property
    def feature_dim(self) -> int:
        """Width F of the image feature vector (last block x a 2x2 pooled map)."""
        return 4 * self.blocks[-1]

    def to_dict(self) -> dict:
        """JSON-ready form for model.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ImageNetConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "blocks": tuple(d["blocks"]), "hidden": tuple(d["hidden"])})


def _conv(n_in: int, n_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(n_out), nn.ReLU()
    )


class InceptionBlock(nn.Module):
    """Four parallel branches, concatenated: (B, n_in, H, W) -> (B, n_out, H, W)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        q = n_out // 4
        self.b1 = _conv(n_in, q, 1)
        self.b3 = nn.Sequential(_conv(n_in, q, 1), _conv(q, q, 3))
        self.b5 = nn.Sequential(_conv(n_in, q, 1), _conv(q, q, 3), _conv(q, q, 3))
        self.pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), _conv(n_in, q, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], dim=1)


class ImageNet(nn.Module):
    """CNN photo-z network on cutouts, optionally fused with catalog features and DANN.

    Args:
        n_bands: cutout channels C.
        n_features: catalog feature width D (read only by a fusion net).
        z_grid: the artifact's z grid (G,), needed by the binned head.
        config: the architecture.
    """

    def __init__(
        self, n_bands: int, n_features: int, z_grid: torch.Tensor, config: ImageNetConfig
    ) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = [_conv(n_bands, config.stem_channels, 3)]
        for a, b in itertools.pairwise((config.stem_channels, *config.blocks)):
            layers += [nn.AvgPool2d(2), InceptionBlock(a, b)]
        layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten()]
        self.cnn = nn.Sequential(*layers)
        joined = config.feature_dim
        self.catalog: nn.Sequential | None = None
        if config.fusion:
            self.catalog = nn.Sequential(
                dense_block(n_features, config.catalog_hidden, config.dropout),
                dense_block(config.catalog_hidden, config.catalog_hidden, config.dropout),
            )
            joined += config.catalog_hidden
        widths = (joined, *config.hidden)
        self.mlp = nn.Sequential(
            *[dense_block(a, b, config.dropout) for a, b in itertools.pairwise(widths)]
        )
        self.head = build_head(
            config.head, config.hidden[-1], z_grid, config.n_components, config.label_sigma
        )
        self.domain: DomainClassifier | None = (
            DomainClassifier(config.feature_dim, config.domain_hidden)
            if config.domain_adapt
            else None
        )

    def forward(
        self, x: torch.Tensor, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Catalog features (B, D) and stretched cutouts (B, C, H, W) -> (head output, domain
        logits (B,) or None)."""
        f = self.cnn(images)  # (B, F)
        head_out = self._head_from(f, x)
        return head_out, (self.domain(f) if self.domain is not None else None)

    def _head_from(self, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """CNN features (B, F) [joined with the catalog branch] -> head output."""
        joined = torch.cat([f, self.catalog(x)], dim=1) if self.catalog is not None else f
        return self.head(self.mlp(joined))

    def head_output(self, x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The head output alone for prediction (eval mode); the field classifier is skipped."""
        return self._head_from(self.cnn(images), x)

    def loss(
        self, outputs: tuple[torch.Tensor, torch.Tensor | None], x: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """Per-row redshift loss (B,) of the head (the domain loss is added by the loop)."""
        return self.head.loss(outputs[0], z)

    def pdf(self, x: torch.Tensor, images: torch.Tensor, z_grid: torch.Tensor) -> torch.Tensor:
        """Normalised PDFs (B, G) on ``z_grid``; call in eval mode."""
        return self.head.pdf(self.head_output(x, images), z_grid)
