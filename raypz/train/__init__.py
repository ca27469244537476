"""Training of catalog photo-z ensembles on Ray Train (DESIGN 5).

>>> from raypz.train import TrainConfig, train_ensemble   # doctest: +SKIP
>>> train_ensemble("sim/deep", "models/ens", TrainConfig(members=5, epochs=30))  # doctest: +SKIP

``train_ensemble``, ``cross_validate`` (:mod:`raypz.train.crossval`), ``run_search`` (the Ray
Tune search, :mod:`raypz.train.tune`) and their results are imported on first use: they need
Ray, and the rest of the package (configs, batches, the optimisation steps in
:mod:`raypz.train.steps`) is usable without it, e.g. by ``benchmarks/gpu_train_step.py``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from raypz.train.augment import BalanceWeights, add_flux_noise, randomised_coadd
from raypz.train.config import TrainConfig
from raypz.train.splits import fold_of, hash_unit, is_validation, kfold_of

if TYPE_CHECKING:
    from raypz.train.crossval import CrossValidation, cross_validate
    from raypz.train.ensemble import VALIDATION_DIR, TrainResult, train_ensemble
    from raypz.train.tune import SearchResult, run_search

_NEEDS_RAY = {
    "VALIDATION_DIR": "raypz.train.ensemble",
    "TrainResult": "raypz.train.ensemble",
    "train_ensemble": "raypz.train.ensemble",
    "CrossValidation": "raypz.train.crossval",
    "cross_validate": "raypz.train.crossval",
    "SearchResult": "raypz.train.tune",
    "run_search": "raypz.train.tune",
}

__all__ = [
    "VALIDATION_DIR",
    "BalanceWeights",
    "CrossValidation",
    "SearchResult",
    "TrainConfig",
    "TrainResult",
    "add_flux_noise",
    "cross_validate",
    "fold_of",
    "hash_unit",
    "is_validation",
    "kfold_of",
    "randomised_coadd",
    "run_search",
    "train_ensemble",
]


def __getattr__(name: str) -> Any:
    if name in _NEEDS_RAY:
        return getattr(import_module(_NEEDS_RAY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names with those imported on first use (tab completion lists them)."""
    return sorted({*globals(), *__all__})
