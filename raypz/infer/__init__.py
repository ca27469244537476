"""Inference: object tables -> redshift PDFs -> a HATS-partitioned PDF catalog (DESIGN 6).

``CatalogPredictor`` is the in-process, Ray-free callable (one batch in, one catalog batch out);
``run_inference`` streams a whole survey through it with Ray Data and writes the catalog.

The names below are imported on first use: Ray workers that run the light stages
(:mod:`raypz.infer.tasks`) import this package too, and must not pay for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_WHERE = {
    "InferConfig": "raypz.infer.config",
    "SUMMARY_FILE": "raypz.infer.pipeline",
    "InferenceSummary": "raypz.infer.pipeline",
    "run_inference": "raypz.infer.pipeline",
    "CatalogPredictor": "raypz.infer.predictor",
    "output_schema": "raypz.infer.predictor",
}

__all__ = [  # noqa: RUF022 - same order as _WHERE
    "InferConfig",
    "SUMMARY_FILE",
    "InferenceSummary",
    "run_inference",
    "CatalogPredictor",
    "output_schema",
]

if TYPE_CHECKING:
    from raypz.infer.config import InferConfig
    from raypz.infer.pipeline import SUMMARY_FILE, InferenceSummary, run_inference
    from raypz.infer.predictor import CatalogPredictor, output_schema


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'raypz.infer' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    """The module's names with those imported on first use (tab completion lists them)."""
    return sorted({*globals(), *__all__})
