"""Run every member of an ensemble in one pass and combine them into one PDF per object.

The ensemble PDF is the mean of the members' normalised PDFs (DESIGN 4). The spread of the
members' modes, in units of (1 + z), is returned with it (the catalog's ``member_spread``); rows
where it exceeds ``DISAGREEMENT_DZ`` get the ENSEMBLE_DISAGREEMENT flag.
Image models also take stretched cutouts; they run in chunks of ``IMAGE_CHUNK_ROWS`` rows so
the CNN's activations stay small whatever the batch size.
"""

from __future__ import annotations

import numpy as np
import torch

from raypz import flags as fl
from raypz.models.artifact import ModelArtifact
from raypz.models.catalog_net import CatalogNet
from raypz.models.folding import fold_batch_norms
from raypz.models.image_net import ImageNet
from raypz.rowops import argmax_rows, host_tensor

Inputs = np.ndarray | torch.Tensor
"""Network inputs (cutouts (N, C, H, W) or features (N, D)), float32: a host array or a
tensor (on the host or the device)."""

DISAGREEMENT_DZ = 0.1
"""Member-mode spread, in units of (1 + z), above which a row is flagged."""
IMAGE_CHUNK_ROWS = 512
"""Rows per CNN forward pass on a CPU (activations of ~50 MB on 32x32 cutouts)."""
IMAGE_CHUNK_ROWS_CUDA = 4096
"""Rows per CNN forward pass on a GPU (~0.4 GB of activations): fewer, larger kernels."""


def to_device(a: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A numpy array (read-only views of Arrow buffers included) or tensor as a float32 tensor
    on ``device``; 4-D arrays (cutouts) channels-last on CUDA, the layout its convolutions are
    fastest with."""
    t = a if isinstance(a, torch.Tensor) else host_tensor(np.asarray(a, dtype=np.float32))
    t = t.to(device=device, dtype=torch.float32)
    if t.dim() == 4 and device.type == "cuda":
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def pick_device(prefer: str = "auto") -> torch.device:
    """``cuda`` when asked for or when available under "auto"; else ``cpu``."""
    if prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(prefer)


class EnsemblePredictor:
    """Holds the members on a device; maps feature arrays to ensemble PDFs.

    Args:
        artifact: a loaded artifact.
        device: "auto", "cpu" or "cuda[:n]".
        amp: bf16 autocast for the networks' trunks (heads stay float32); off by default.
            Measured against float32: on an H100 the catalog ensemble ran 2.3x slower under
            autocast (413k against 960k objects/s) and z_mode moved by more than a grid step
            for 1.3% of objects; on an H200 a cutout CNN ran 1.5x slower (103k against 158k)
            and moved z_mode for 3.3% (float32 on GPU against CPU: 0.04%).
    """

    def __init__(self, artifact: ModelArtifact, device: str = "auto", amp: bool = False) -> None:
        self.artifact = artifact
        self.device = pick_device(device)
        self.uses_images = artifact.cutouts is not None
        self.amp = amp
        cuda = self.device.type == "cuda"
        self.image_chunk_rows = IMAGE_CHUNK_ROWS_CUDA if cuda else IMAGE_CHUNK_ROWS
        self.members: list[CatalogNet | ImageNet] = [
            fold_batch_norms(m) for m in artifact.build_members(self.device)
        ]
        self.z_grid = torch.tensor(artifact.grid.values, dtype=torch.float32, device=self.device)
        if self.uses_images and self.device.type == "cuda":
            self.members = [m.to(memory_format=torch.channels_last) for m in self.members]

    def _head_output(self, member, x: Inputs, images: Inputs | None) -> torch.Tensor:
        """One member's raw head output for the rows (the network's expensive part), on the
        device; image models in row chunks."""
        if self.uses_images and images is None:
            raise ValueError("this image model needs cutouts")
        step = self.image_chunk_rows if self.uses_images else max(len(x), 1)
        parts = []
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            for lo in range(0, max(len(x), 1), step):
                inputs = [to_device(x[lo : lo + step], self.device)]
                if self.uses_images:
                    inputs.append(to_device(images[lo : lo + step], self.device))
                parts.append(member.head_output(*inputs).float())
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _member_pdf(self, member, x: Inputs, images: Inputs | None) -> torch.Tensor:
        """One member's PDFs (N, G) float32 on the device."""
        return member.head.pdf(self._head_output(member, x, images), self.z_grid).float()

    @torch.inference_mode()
    def predict_tensor(
        self, x: Inputs, images: Inputs | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features (N, D) [and stretched cutouts (N, C, H, W) for image models], on the host
        or already on the device -> ensemble PDFs (N, G) float32, flags (N,) int32 and the
        members' spread (N,) float32, all on the device.

        The spread is (largest - smallest member mode) / (1 + mean member mode): 0 when the
        members agree; above ``DISAGREEMENT_DZ`` the row gets ENSEMBLE_DISAGREEMENT."""
        x = to_device(x, self.device)  # once for all members (a view on the CPU)
        total = torch.zeros(len(x), len(self.z_grid), device=self.device)  # (N, G)
        modes = torch.empty(len(self.members), len(x), device=self.device)  # (M, N)
        for i, member in enumerate(self.members):
            pdf = self._member_pdf(member, x, images)
            modes[i] = self.z_grid[argmax_rows(pdf)]
            total += pdf
        spread = (modes.amax(dim=0) - modes.amin(dim=0)) / (1 + modes.mean(dim=0))
        flags = torch.where(spread > DISAGREEMENT_DZ, fl.ENSEMBLE_DISAGREEMENT, 0).int()
        return total.div_(len(self.members)), flags, spread

    def predict(
        self, x: np.ndarray, images: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_tensor` with its results copied to host arrays.

        The networks see every row: rows the feature transform flagged NO_PDF (no usable
        band) get a PDF from zeroed features, which means nothing. Drop or blank them with
        the transform's flags, or use :class:`raypz.infer.CatalogPredictor`, which does."""
        pdf, flags, _ = self.predict_tensor(x, images)
        return pdf.cpu().numpy(), flags.cpu().numpy()

    @torch.inference_mode()
    def head_outputs(self, x: np.ndarray, images: np.ndarray | None = None) -> list[torch.Tensor]:
        """Raw head outputs of every member for the rows. PDFs follow from them cheaply
        (:meth:`pdf_from_head_outputs`), e.g. for each trial width scale."""
        x = to_device(x, self.device)  # once for all members
        return [self._head_output(net, x, images) for net in self.members]

    @torch.inference_mode()
    def pdf_from_head_outputs(self, outputs: list[torch.Tensor]) -> np.ndarray:
        """Mean PDF (N, G) of the members from their head outputs (:meth:`head_outputs`), at
        the current width scale."""
        pdfs = [
            net.head.pdf(out, self.z_grid).float()
            for net, out in zip(self.members, outputs, strict=True)
        ]
        return (sum(pdfs) / len(pdfs)).cpu().numpy()

    @torch.inference_mode()
    def predict_member(
        self, index: int, x: np.ndarray, images: np.ndarray | None = None
    ) -> np.ndarray:
        """PDFs (N, G) of one member alone, e.g. to compare members with the ensemble."""
        return self._member_pdf(self.members[index], x, images).cpu().numpy()
