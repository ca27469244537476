"""How far an object lies from the training set, in the networks' feature space.

A network's PDF for an object unlike any training object is an extrapolation, and its width
does not say so. :class:`TrainingReference` keeps a random sample of the training rows' features
(the normalised luptitudes, colours and errors that the networks read) and measures, for each
object, the mean Euclidean distance to its ``k`` nearest reference rows, divided by the median
of that same distance among the reference rows themselves (each left out of its own search). A
typical training-like object scores ~1; the catalog's ``train_distance`` column holds the value
and the FAR_FROM_TRAINING flag marks rows beyond :data:`FAR_FROM_TRAINING_DISTANCE`.

Cost: a (rows x R) distance matrix per chunk, on the predictor's device; with R = 4096 reference
rows and ~30 features that is ~0.25 MFLOP per object. Measured on one CPU core with a 5-member
ensemble (``benchmarks/bench_gpu_predictor.py --device cpu``, 16k-row batches): 8 us per object,
whole predictor 22.0k objects/s against 24.9k/s without a reference (-12%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

REFERENCE_ROWS = 4096
"""Training rows kept in an artifact's reference sample."""
NEIGHBOURS = 5
"""k of the k-nearest-neighbour distance."""
FAR_FROM_TRAINING_DISTANCE = 2.5
"""``train_distance`` above which a row is flagged FAR_FROM_TRAINING: 2.5 typical neighbour
distances. On data drawn like the training set it rarely fires (0.8% of Buzzard's validation
split, none of them outliers: there the outliers come from colour degeneracies, which
``member_spread`` finds); it marks the objects a survey holds that the training set does not."""
CHUNK_ROWS = 4096
"""Rows whose distances are computed at once (a 4096 x 4096 float32 matrix: 64 MB)."""


@dataclass(frozen=True)
class TrainingReference:
    """A sample of training features and the scale of their neighbour distances.

    Attributes:
        features: (R, D) float32 features of the reference rows.
        k: neighbours averaged.
        scale: median over reference rows of their mean distance to their k nearest others.
    """

    features: np.ndarray
    k: int
    scale: float

    @classmethod
    def fit(
        cls, x: np.ndarray, rows: int = REFERENCE_ROWS, k: int = NEIGHBOURS, seed: int = 0
    ) -> TrainingReference:
        """The reference of training features ``x`` (N, D): up to ``rows`` random rows."""
        if len(x) <= k:
            raise ValueError(f"TrainingReference needs more than k={k} training rows, got {len(x)}")
        pick = np.random.default_rng(seed).permutation(len(x))[:rows]
        features = np.ascontiguousarray(x[np.sort(pick)], dtype=np.float32)
        ref = torch.from_numpy(features)
        own = _knn_distance(ref, ref, k, leave_self_out=True)
        return cls(features, k, float(own.median()))

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """``train_distance`` of feature rows ``x`` (N, D) on x's device: (N,) float32."""
        ref = torch.as_tensor(self.features, device=x.device)
        return _knn_distance(x.float(), ref, self.k, leave_self_out=False) / self.scale


def _knn_distance(
    x: torch.Tensor, ref: torch.Tensor, k: int, leave_self_out: bool
) -> torch.Tensor:
    """Mean distance of each row of ``x`` to its ``k`` nearest rows of ``ref`` (when ``x`` is
    ``ref``, ``leave_self_out`` skips each row's zero distance to itself)."""
    out = torch.empty(len(x), device=x.device)
    for lo in range(0, len(x), CHUNK_ROWS):
        d = torch.cdist(x[lo : lo + CHUNK_ROWS], ref)
        nearest = torch.topk(d, k + leave_self_out, dim=1, largest=False).values
        out[lo : lo + CHUNK_ROWS] = nearest[:, int(leave_self_out) :].mean(dim=1)
    return out
