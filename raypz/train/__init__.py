"""Training of catalog photo-z ensembles on Ray Train (DESIGN 5).

>>> from raypz.train import TrainConfig, train_ensemble   # doctest: +SKIP
>>> train_ensemble("sim/deep", "models/ens", TrainConfig(members=5, epochs=30))  # doctest: +SKIP

``train_ensemble``, ``TrainResult`` and ``VALIDATION_DIR`` are imported on first use: they need
Ray, and the rest of the package (configs, batches, the optimisation steps in
:mod:`raypz.train.steps`) is usable without it, e.g. by ``benchmarks/gpu_train_step.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raypz.train.augment import BalanceWeights, add_flux_noise, randomised_coadd
from raypz.train.config import TrainConfig
from raypz.train.splits import fold_of, hash_unit, is_validation, kfold_of

if TYPE_CHECKING:
    from raypz.train.ensemble import VALIDATION_DIR, TrainResult, train_ensemble

_NEEDS_RAY = {"VALIDATION_DIR", "TrainResult", "train_ensemble"}

__all__ = [
    "VALIDATION_DIR",
    "BalanceWeights",
    "TrainConfig",
    "TrainResult",
    "add_flux_noise",
    "fold_of",
    "hash_unit",
    "is_validation",
    "kfold_of",
    "randomised_coadd",
    "train_ensemble",
]


def __getattr__(name: str) -> Any:
    if name in _NEEDS_RAY:
        from raypz.train import ensemble

        return getattr(ensemble, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
