"""The progress line that Ray workers advance (:class:`raypz.ray_runtime.RemoteProgress`)."""

from __future__ import annotations

import io

from raypz.progress import ProgressLine
from raypz.ray_runtime import RemoteProgress


def test_each_task_counts_its_units_once_whatever_it_replays(ray_session):
    """A member retried from its start, or resumed from a checkpoint in a rerun, reports
    epochs again; the line counts how far each reached, so it ends at 100%, never past it."""
    out = io.StringIO()
    with RemoteProgress(ProgressLine("train", 6, "epochs", stream=out), poll_s=0.05) as line:
        reports = [(0, 1), (0, 2), (0, 1), (0, 2), (0, 3), (1, 3)]  # member 0 retried once
        ray_session.get([line.handle.reach.remote(key, done) for key, done in reports])
    assert "train: 6/6 epochs (100%)" in out.getvalue().splitlines()[-1]
