"""The catalog network (Deepz recipe): MLP + denoising autoencoder + PDF head.

    x (B, D) --noise--> encoder --> latent (B, L) --> decoder --> x_hat (B, D)   [DAE branch]
    [x, latent] (B, D + L) --> (Linear, BatchNorm, ReLU, Dropout) x n --> head --> PDF

The autoencoder learns a denoised summary of the photometry; its latent code joins the inputs
of the MLP. The loss is the head's loss plus ``dae_weight`` x the reconstruction error.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
from torch import nn

from raypz.config_rules import require_finite
from raypz.models.heads import build_head


@dataclass(frozen=True)
class CatalogNetConfig:
    """Architecture of :class:`CatalogNet`.

    Attributes:
        hidden: widths of the MLP blocks.
        dropout: dropout probability in each MLP block. 0.1 by default: on Buzzard's 10k
            training rows (outer 4-fold validation, docs/buzzard_results.md) it lowered
            sigma_MAD, eta_0.05 and CRPS and kept PIT KS; the widths it teaches the MDN are
            corrected by the post-training width calibration.
        latent_dim: width of the autoencoder's latent code.
        dae_hidden: width of the autoencoder's hidden layers.
        dae_noise: std of the Gaussian noise added to the (normalised) inputs of the encoder.
        dae_weight: weight of the reconstruction loss.
        head: "mdn" (Gaussian mixture) or "binned" (softmax over the z grid).
        n_components: Gaussians in the MDN head.
        label_sigma: soft-label width (units of 1+z) for the binned head.
    """

    hidden: tuple[int, ...] = (256, 256, 256)
    dropout: float = 0.1
    latent_dim: int = 8
    dae_hidden: int = 64
    dae_noise: float = 0.1
    dae_weight: float = 0.1
    head: str = "mdn"
    n_components: int = 5
    label_sigma: float = 0.01

    def __post_init__(self) -> None:
        require_finite(self)
        if self.head not in ("mdn", "binned"):
            raise ValueError(f"CatalogNetConfig.head must be 'mdn' or 'binned', got {self.head!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"CatalogNetConfig.hidden needs positive widths, got {self.hidden}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"CatalogNetConfig.dropout must be in [0, 1), got {self.dropout}")
        for name in ("latent_dim", "dae_hidden", "n_components"):
            if getattr(self, name) < 1:
                raise ValueError(f"CatalogNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dae_noise", "dae_weight", "label_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"CatalogNetConfig.{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        """JSON-ready form for model.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CatalogNetConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "hidden": tuple(d["hidden"])})


def dense_block(n_in: int, n_out: int, dropout: float) -> nn.Sequential:
    """Linear + batch norm + ReLU + dropout: the MLP block of the catalog and fusion nets."""
    return nn.Sequential(
        nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(), nn.Dropout(dropout)
    )


class CatalogNet(nn.Module):
    """MLP + DAE photo-z network on catalog features.

    Args:
        n_features: input width D (from the feature transform).
        z_grid: the artifact's z grid (G,), needed by the binned head and for PDFs.
        config: the architecture.
    """

    def __init__(self, n_features: int, z_grid: torch.Tensor, config: CatalogNetConfig) -> None:
        super().__init__()
        self.config = config
        d, lat = n_features, config.latent_dim
        self.encoder = nn.Sequential(
            nn.Linear(d, config.dae_hidden), nn.ReLU(), nn.Linear(config.dae_hidden, lat)
        )
        self.decoder = nn.Sequential(
            nn.Linear(lat, config.dae_hidden), nn.ReLU(), nn.Linear(config.dae_hidden, d)
        )
        widths = (d + lat, *config.hidden)
        self.mlp = nn.Sequential(
            *[dense_block(a, b, config.dropout) for a, b in itertools.pairwise(widths)]
        )
        self.head = build_head(
            config.head, config.hidden[-1], z_grid, config.n_components, config.label_sigma
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D) -> (head output, reconstruction (B, D)); noise only in training mode."""
        noisy = x + self.config.dae_noise * torch.randn_like(x) if self.training else x
        latent = self.encoder(noisy)  # (B, L)
        recon = self.decoder(latent)  # (B, D)
        h = self.mlp(torch.cat([x, latent], dim=1))  # (B, hidden[-1])
        return self.head(h), recon

    def loss(
        self, outputs: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor, z: torch.Tensor
    ) -> torch.Tensor:
        """Per-row loss (B,): head loss + dae_weight x mean squared reconstruction error."""
        head_out, recon = outputs
        recon_err = ((recon.float() - x) ** 2).mean(dim=1)
        return self.head.loss(head_out, z) + self.config.dae_weight * recon_err

    def head_output(self, x: torch.Tensor) -> torch.Tensor:
        """The head output alone for prediction (eval mode): the decoder, needed only for the
        training loss, is skipped (15% of the network's arithmetic)."""
        return self.head(self.mlp(torch.cat([x, self.encoder(x)], dim=1)))

    def pdf(self, x: torch.Tensor, z_grid: torch.Tensor) -> torch.Tensor:
        """Normalised PDFs (B, G) on ``z_grid``; call in eval mode."""
        return self.head.pdf(self.head_output(x), z_grid)
