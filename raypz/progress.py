"""What a job shows while it runs: one progress line per stage and a short summary table.

A :class:`ProgressLine` counts units of one stage (rows, epochs, partitions) against a total and
shows the count, the rate and the time left. On a terminal it redraws one line in place; where
stdout is not a terminal (CI, ``ray job logs``, a file) it prints a line at most every
``interval_s`` seconds and one when the stage ends, so a log stays short. Ray's own logs and
progress bars are kept out of the way by :func:`raypz.ray_runtime.init_ray` unless a job runs
with ``--verbose``. Nothing here imports Ray.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

NON_INTERACTIVE_INTERVAL_S = 30.0
"""Seconds between progress lines where stdout is not a terminal."""
TERMINAL_INTERVAL_S = 0.2
"""Seconds between redraws of the live line on a terminal."""


def format_duration(seconds: float) -> str:
    """``73.4`` -> ``"1m13s"``; ``4000`` -> ``"1h06m"``; under a minute: ``"8.2s"``."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_count(n: float) -> str:
    """``1234567`` -> ``"1.23M"``, ``20000`` -> ``"20k"``; counts below 10,000 as they are."""
    for size, suffix, shown_from in ((1e9, "G", 1e9), (1e6, "M", 1e6), (1e3, "k", 1e4)):
        if abs(n) >= shown_from:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"


class ProgressLine:
    """The live progress of one stage: ``stage: done/total unit (pct), rate, ETA``.

    Thread-safe: training members running in threads advance one line.

    Args:
        stage: short stage name, e.g. ``"train"``.
        total: units to do (None when unknown: no percentage or ETA).
        unit: what is counted, e.g. ``"rows"`` or ``"epochs"``.
        stream: where to write (default stdout).
        interval_s: seconds between lines where ``stream`` is not a terminal.
    """

    def __init__(
        self,
        stage: str,
        total: float | None,
        unit: str,
        stream: TextIO | None = None,
        interval_s: float = NON_INTERACTIVE_INTERVAL_S,
    ) -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self.stream = stream or sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = TERMINAL_INTERVAL_S if self.live else interval_s
        self.done = 0.0
        self.note = ""
        self.start = time.monotonic()
        self._last_shown = self.start
        self._shown_done = 0.0
        self._lock = threading.Lock()
        self._closed = False

    def advance(self, n: float = 1.0, note: str | None = None) -> None:
        """Count ``n`` more units done (and replace the trailing note, e.g. a loss)."""
        self.update(self.done + n, note)

    def update(self, done: float, note: str | None = None) -> None:
        """Set the units done so far."""
        with self._lock:
            self.done = done
            if note is not None:
                self.note = note
            now = time.monotonic()
            moved = self.live or done != self._shown_done  # a log gets no repeated lines
            if not self._closed and moved and now - self._last_shown >= self.interval_s:
                self._last_shown, self._shown_done = now, done
                self._show(final=False)

    def text(self) -> str:
        """The line as it would be shown now."""
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.stage}: {format_count(self.done)}"]
        if self.total:
            pct = 100 * self.done / self.total
            parts[0] += f"/{format_count(self.total)} {self.unit} ({pct:.0f}%)"
        else:
            parts[0] += f" {self.unit}"
        shown_rate = format_count(rate) if rate >= 1 else f"{rate:.2f}"
        parts.append(f"{shown_rate} {self.unit}/s")
        if self.total and not self._closed:
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            parts.append(f"ETA {format_duration(left)}")
        else:
            parts.append(f"in {format_duration(elapsed)}")
        return ", ".join(parts) + (f"; {self.note}" if self.note else "")

    def close(self, note: str | None = None) -> None:
        """End the stage: show its final line once."""
        with self._lock:
            if self._closed:
                return
            if note is not None:
                self.note = note
            self._closed = True
            self._show(final=True)

    def _show(self, final: bool) -> None:
        line = self.text()
        if self.live:
            self.stream.write("\r\033[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def summary_table(rows: Sequence[tuple[str, object]], title: str = "") -> str:
    """A two-column plain-text table (name, value) that ends a job's output."""
    width = max((len(name) for name, _ in rows), default=0)
    lines = [title] if title else []
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
