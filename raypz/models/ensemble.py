"""Run every member of an ensemble in one pass and combine them into one PDF per object.

The ensemble PDF is the mean of the members' normalised PDFs (DESIGN 4). Rows whose members'
modes spread by more than ``DISAGREEMENT_DZ`` (1 + z) get the ENSEMBLE_DISAGREEMENT flag.
"""

from __future__ import annotations

import numpy as np
import torch

from raypz import flags as fl
from raypz.models.artifact import ModelArtifact
from raypz.models.catalog_net import CatalogNet

DISAGREEMENT_DZ = 0.1


def pick_device(prefer: str = "auto") -> torch.device:
    """``cuda`` when asked for or when available under "auto"; else ``cpu``."""
    if prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(prefer)


class EnsemblePredictor:
    """Holds the members on a device; maps feature arrays to ensemble PDFs.

    Args:
        artifact: a loaded artifact.
        device: "auto", "cpu" or "cuda[:n]". Mixed precision (bf16 autocast) only on CUDA.
    """

    def __init__(self, artifact: ModelArtifact, device: str = "auto") -> None:
        self.artifact = artifact
        self.device = pick_device(device)
        self.members: list[CatalogNet] = artifact.build_members(self.device)
        self.z_grid = torch.tensor(artifact.grid.values, dtype=torch.float32, device=self.device)

    @torch.inference_mode()
    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, D) -> ensemble PDFs (N, G) float32 and flags (N,) int32."""
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        use_amp = self.device.type == "cuda"
        total = torch.zeros(len(xt), len(self.z_grid), device=self.device)  # (N, G)
        modes = torch.empty(len(self.members), len(xt), device=self.device)  # (M, N)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            for i, member in enumerate(self.members):
                pdf = member.pdf(xt, self.z_grid).float()
                modes[i] = self.z_grid[pdf.argmax(dim=1)]
                total += pdf
        spread = (modes.max(dim=0).values - modes.min(dim=0).values) / (1 + modes.mean(dim=0))
        flags = np.where(spread.cpu().numpy() > DISAGREEMENT_DZ, fl.ENSEMBLE_DISAGREEMENT, 0)
        return (total / len(self.members)).cpu().numpy(), flags.astype(np.int32)

    def predict_member(self, index: int, x: np.ndarray) -> np.ndarray:
        """PDFs (N, G) of one member alone, e.g. to compare members with the ensemble."""
        with torch.inference_mode():
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            return self.members[index].pdf(xt, self.z_grid).float().cpu().numpy()
