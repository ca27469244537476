"""How a job (``jobs/*.py``) ends on an input or output it refuses: one line, not a traceback.

A contract breach, an altered model, an output that holds something else or a path that does
not exist is the user's to fix, and the message names the file, column and rule; the 30-line
traceback around it (longer when the error was raised in a Ray task) hid it. Such errors end
the job with ``<job>: error: <message>`` on stderr and exit status 2; ``RAYPZ_TRACEBACK=1``
raises them as they are. Any other exception is a bug and keeps its traceback.

A job stopped from outside (``ray job stop`` and batch schedulers send SIGTERM, which a job's
driver turns into ``sys.exit`` through :func:`exit_on_signal`; Ctrl-C) ends with one line that
says how to go on: every job resumes when rerun with the same command.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from raypz.schema.errors import ContractError, RefusedError

REFUSED_EXIT_CODE = 2
"""Exit status of a refused input (argparse's, for a bad command line)."""


class UsageError(SystemExit):
    """A command line a job refuses (flags that contradict each other, a value a config's
    rules refuse): :func:`run_job` prints ``JOB: error: MESSAGE`` and exits 2, as argparse
    does for a malformed one. A SystemExit, so outside a job it still ends the program."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@contextmanager
def usage_errors() -> Iterator[None]:
    """Turn a ValueError raised while the flags become configs (a config's rules) into a
    :class:`UsageError`: one ``JOB: error:`` line and exit status 2."""
    try:
        yield
    except ValueError as err:
        raise UsageError(str(err)) from err


STOPPED_HINT = "stopped ({how}); rerun the same command to resume where it stopped"

_SIGNALS_RECEIVED: list[int] = []
"""Signals :func:`exit_on_signal` handled in this process."""

_IN_JOB: list[bool] = []
"""Non-empty while :func:`run_job` runs a job in this process."""


def stop_on_sigterm() -> None:
    """In a job (:func:`run_job`), end on SIGTERM through :func:`exit_on_signal`. Called after
    ``ray.init``, whose core worker replaced ray.init's own handler with one that only dumps
    the stack; a library caller's (a notebook's) handler is left alone."""
    if _IN_JOB and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, exit_on_signal)


def exit_on_signal(signum: int, _frame: object) -> NoReturn:
    """A signal handler that ends the process with ``sys.exit``, so ``finally`` blocks run and
    :func:`run_job` says how to resume. It records the signal: a ``sys.exit`` raised inside
    Ray's core worker (a ``ray.wait``) comes back as Ray's own ``SystemExit(1)``."""
    _SIGNALS_RECEIVED.append(signum)
    sys.exit(128 + signum)


def run_job(main: Callable[[], int]) -> int:
    """``main()``'s exit status, or :data:`REFUSED_EXIT_CODE` after printing a refusal, or
    128 + the signal's number after printing that the job was stopped."""
    job = Path(sys.argv[0]).name
    _IN_JOB.append(True)
    try:
        return main()
    except UsageError as err:
        print(f"{job}: error: {err.message}", file=sys.stderr)
        return REFUSED_EXIT_CODE
    except KeyboardInterrupt:
        print(f"{job}: {STOPPED_HINT.format(how='interrupted')}", file=sys.stderr)
        return 128 + signal.SIGINT
    except SystemExit:
        if not _SIGNALS_RECEIVED:
            raise
        signum = _SIGNALS_RECEIVED[-1]
        how = signal.Signals(signum).name
        print(f"{job}: {STOPPED_HINT.format(how=how)}", file=sys.stderr)
        return 128 + signum
    except _refusals() as err:
        if os.environ.get("RAYPZ_TRACEBACK"):
            raise
        cause = getattr(err, "cause", None) or err  # raised in a Ray task: the original error
        print(f"{job}: error: {cause}", file=sys.stderr)
        return REFUSED_EXIT_CODE
    except OSError as err:
        if os.environ.get("RAYPZ_TRACEBACK") or not from_object_store(err):
            raise
        print(f"{job}: error: {err}", file=sys.stderr)  # credentials, a bucket, the endpoint
        return REFUSED_EXIT_CODE
    finally:
        _IN_JOB.pop()


def from_object_store(err: OSError) -> bool:
    """Whether ``err`` is an object store's answer (pyarrow's S3 errors read ``AWS Error
    ...``: access denied, no such bucket, an endpoint that does not answer; writing into a
    bucket that does not exist reads ``Bucket 'NAME' not found``): the user's credentials or
    paths to fix, not a bug."""
    text = str(err)
    return "AWS Error" in text or ("Bucket '" in text and "' not found" in text)


def _refusals() -> tuple[type[BaseException], ...]:
    """The exception types that are refusals. A model's ``ArtifactError`` counts when its
    module is loaded (it imports torch, which jobs without a model never need)."""
    kinds: list[type[BaseException]] = [
        ContractError,
        RefusedError,
        FileExistsError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
    ]
    artifact = sys.modules.get("raypz.models.artifact")
    if artifact is not None:
        kinds.append(artifact.ArtifactError)
    return tuple(kinds)
