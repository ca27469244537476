"""raypz: machine-learning photometric redshifts for LSST-scale galaxy surveys, on Ray.

The data flow is simulate -> train -> infer -> evaluate; each stage is a subpackage:
``raypz.sim``, ``raypz.train``, ``raypz.infer``, and ``raypz.evaluation`` (reports) over
``raypz.metrics`` (the metrics on arrays). Shared contracts live in
``raypz.columns`` (names, bands, units) and ``raypz.schema`` (input validation).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
