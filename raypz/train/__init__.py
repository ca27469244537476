"""Training of catalog photo-z ensembles on Ray Train (DESIGN 5).

>>> from raypz.train import TrainConfig, train_ensemble   # doctest: +SKIP
>>> train_ensemble("sim/deep", "models/ens", TrainConfig(members=5, epochs=30))  # doctest: +SKIP
"""

from raypz.train.augment import BalanceWeights, add_flux_noise, randomised_coadd
from raypz.train.config import TrainConfig
from raypz.train.ensemble import VALIDATION_DIR, TrainResult, train_ensemble
from raypz.train.splits import fold_of, hash_unit, is_validation

__all__ = [
    "VALIDATION_DIR",
    "BalanceWeights",
    "TrainConfig",
    "TrainResult",
    "add_flux_noise",
    "fold_of",
    "hash_unit",
    "is_validation",
    "randomised_coadd",
    "train_ensemble",
]
