"""How a job (``jobs/*.py``) ends on an input or output it refuses: one line, not a traceback.

A contract breach, an altered model, an output that holds something else or a path that does
not exist is the user's to fix, and the message names the file, column and rule; the 30-line
traceback around it (longer when the error was raised in a Ray task) hid it. Such errors end
the job with ``<job>: error: <message>`` on stderr and exit status 2; ``RAYPZ_TRACEBACK=1``
raises them as they are. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from raypz.schema.errors import ContractError

REFUSED_EXIT_CODE = 2
"""Exit status of a refused input (argparse's, for a bad command line)."""


def run_job(main: Callable[[], int]) -> int:
    """``main()``'s exit status, or :data:`REFUSED_EXIT_CODE` after printing a refusal."""
    try:
        return main()
    except _refusals() as err:
        if os.environ.get("RAYPZ_TRACEBACK"):
            raise
        cause = getattr(err, "cause", None) or err  # raised in a Ray task: the original error
        print(f"{Path(sys.argv[0]).name}: error: {cause}", file=sys.stderr)
        return REFUSED_EXIT_CODE


def _refusals() -> tuple[type[BaseException], ...]:
    """The exception types that are refusals. A model's ``ArtifactError`` counts when its
    module is loaded (it imports torch, which jobs without a model never need)."""
    kinds: list[type[BaseException]] = [
        ContractError,
        FileExistsError,
        FileNotFoundError,
        PermissionError,
    ]
    artifact = sys.modules.get("raypz.models.artifact")
    if artifact is not None:
        kinds.append(artifact.ArtifactError)
    return tuple(kinds)
