"""Photo-z networks, their PDF heads, model artifacts and ensemble prediction."""

from raypz.models.artifact import (
    ArtifactError,
    ModelArtifact,
    load_artifact,
    member_file,
    save_artifact,
)
from raypz.models.catalog_net import CatalogNet, CatalogNetConfig
from raypz.models.ensemble import EnsemblePredictor, pick_device
from raypz.models.heads import BinnedHead, MDNHead
from raypz.models.image_net import ImageNet, ImageNetConfig

__all__ = [
    "ArtifactError",
    "BinnedHead",
    "CatalogNet",
    "CatalogNetConfig",
    "EnsemblePredictor",
    "ImageNet",
    "ImageNetConfig",
    "MDNHead",
    "ModelArtifact",
    "load_artifact",
    "member_file",
    "pick_device",
    "save_artifact",
]
