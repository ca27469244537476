"""Finished members under the checkpoint storage, so that rerunning a training skips them.

Whichever trainer ran a member (a Ray task, :mod:`raypz.train.tasks`, or a Ray Train run,
:func:`raypz.train.ensemble.fit_on_ray`), its best weights and progress are stored in
``storage/run_id/member_result.pt`` once it has finished. Rerunning the same command loads them
instead of training the member again. For Ray Train that saves a controller, a worker group and
the dataset split of every finished member, each of which would only find its run already done
(about 15 s a member on a 2-core machine, more on a cluster). An unfinished member has no such
file: a task starts it again, and Ray Train resumes it from its last checkpoint.

The file is written by ``torch.save`` and read with ``weights_only=True`` (no pickle).
"""

from __future__ import annotations

import io as _bytes_io

import torch

from raypz import io
from raypz.train.member import MemberProgress

RESULT_FILE = "member_result.pt"
"""File of a finished member under ``storage/run_id/``: best weights and progress."""


def load_finished(run_dir: str) -> tuple[dict[str, torch.Tensor], MemberProgress] | None:
    """The best weights and progress of the member finished in ``run_dir``, or None when no
    run there has finished."""
    path = io.join(run_dir, RESULT_FILE)
    if not io.is_file(path):
        return None
    state = torch.load(
        _bytes_io.BytesIO(io.read_bytes(path)), map_location="cpu", weights_only=True
    )
    return state["best"], MemberProgress.from_dict(state["progress"])


def save_finished(run_dir: str, best: dict[str, torch.Tensor], progress: MemberProgress) -> None:
    """Store a finished member's best weights and progress in ``run_dir`` (atomically: a rerun
    never reads half a file)."""
    buf = _bytes_io.BytesIO()
    torch.save({"best": best, "progress": progress.to_dict()}, buf)
    io.makedirs(run_dir)
    io.write_bytes_atomic(io.join(run_dir, RESULT_FILE), buf.getvalue())
