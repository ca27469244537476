"""A rule every dataclass config shares: its float settings are finite.

The configs' own range rules are written as comparisons (``lr > 0``, ``dropout < 1``), which
NaN passes or fails by accident, and inf passes; ``--lr inf`` or ``--cpus-per-actor nan`` then
failed deep inside a run (a NaN loss, a traceback from Ray) instead of at the command line.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def require_finite(config: Any) -> None:
    """ValueError naming every float setting of the dataclass ``config`` (or float item of a
    tuple setting) that is NaN or infinite."""
    bad = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        items = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            bad.append(f"{field.name}={value}")
    if bad:
        name = type(config).__name__
        raise ValueError(f"{name}: settings must be finite numbers: {', '.join(bad)}")
