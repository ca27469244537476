"""Classical photo-z baselines that the learned models are compared against: k nearest
neighbours, and Bayes posteriors under a population sample (how far the photometry allows).

>>> import numpy as np
>>> from raypz.baselines import KNNBaseline, KNNConfig
>>> from raypz.pdf import ZGrid
>>> rng = np.random.default_rng(0)
>>> z = rng.uniform(0.1, 2.0, 2000)
>>> flux = 1000.0 * np.exp(-np.outer(z, np.arange(6)) / 3) * rng.lognormal(0, 0.01, (2000, 6))
>>> err = np.full_like(flux, 5.0)
>>> knn = KNNBaseline.fit(flux[:1500], err[:1500], z[:1500], KNNConfig(n_jobs=1))
>>> pdf, flags = knn.predict_pdf(flux[1500:], err[1500:], ZGrid())
>>> pdf.shape, int(flags.sum())
((500, 351), 0)
"""

from raypz.baselines.knn import KNNBaseline, KNNConfig
from raypz.baselines.prior_sample import FluxErrorModel, PriorSamplePosterior

__all__ = ["FluxErrorModel", "KNNBaseline", "KNNConfig", "PriorSamplePosterior"]
