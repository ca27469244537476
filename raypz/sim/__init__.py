"""An LSST-like survey simulator: the data source for training, inference and domain adaptation.

Galaxies are drawn from evolving red and blue luminosity functions in comoving volume, given
continuous SED types (BPZ templates with modelled emission lines, dust and IGM absorption),
observed through the LSST filters with flux-space noise at a chosen depth (y1 ... y10) in a
``deep`` or ``wide`` field, cut at an observed i-band limit and optionally thinned to a
spectroscopic-like sample. Optional single-exposure fluxes and PSF-convolved cutouts.

>>> from raypz.sim import SurveyConfig, simulate_shard
>>> config = SurveyConfig(n_objects=1000, seed=7, depth="y10", field="wide")
>>> table = simulate_shard(config, 0)   # in-process, no Ray
>>> table.num_rows
1000

``simulate_survey(config, "out/")`` writes every shard as a parallel Ray task. See
docs/simulation.md for the model, its parameters and figures.
"""

from raypz.sim.config import FIELDS, FieldSpec, SurveyConfig
from raypz.sim.shard import simulate_shard
from raypz.sim.survey import simulate_survey

__all__ = ["FIELDS", "FieldSpec", "SurveyConfig", "simulate_shard", "simulate_survey"]
