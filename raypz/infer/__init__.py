"""Inference: object tables -> redshift PDFs -> a HATS-partitioned PDF catalog (DESIGN 6).

``CatalogPredictor`` is the in-process, Ray-free callable (one batch in, one catalog batch out);
``run_inference`` streams a whole survey through it with Ray Data and writes the catalog.
"""

from raypz.infer.config import InferConfig
from raypz.infer.pipeline import SUMMARY_FILE, InferenceSummary, run_inference
from raypz.infer.predictor import CatalogPredictor, output_schema

__all__ = [
    "SUMMARY_FILE",
    "CatalogPredictor",
    "InferConfig",
    "InferenceSummary",
    "output_schema",
    "run_inference",
]
