"""Progress reports for long work: one updating line on a terminal, else nothing.

Library code takes a :class:`Progress` and calls ``task``, ``advance`` and
``done``; :class:`NoProgress` is the default. Only the command line creates a
:class:`TerminalProgress`, and only when stderr is a terminal, so logs and
pipes never receive carriage returns.
"""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["NoProgress", "Progress", "TerminalProgress"]

_REDRAW_SECONDS = 0.1


class Progress:
    """Receives progress; the base class ignores it."""

    def task(self, label: str, total: int | None = None) -> None:
        """Start a task of ``total`` bytes (unknown when None)."""

    def advance(self, amount: int) -> None:
        """Record ``amount`` more bytes done."""

    def done(self) -> None:
        """End the current task."""


class NoProgress(Progress):
    """Progress that shows nothing."""


class TerminalProgress(Progress):
    """A single line on a terminal, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._label = ""
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._drawn = 0.0

    @classmethod
    def for_stream(cls, stream: TextIO) -> Progress:
        """Return a TerminalProgress if ``stream`` is a terminal, else NoProgress."""
        return cls(stream) if stream.isatty() else NoProgress()

    def task(self, label: str, total: int | None = None) -> None:
        self._label = label
        self._total = total
        self._done = 0
        self._started = time.monotonic()
        self._draw(force=True)

    def advance(self, amount: int) -> None:
        self._done += amount
        self._draw()

    def done(self) -> None:
        self._draw(force=True)
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < _REDRAW_SECONDS:
            return
        self._drawn = now
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed / 1e6
        amount = f"{self._done / 1e6:.1f}"
        if self._total:
            amount += (
                f"/{self._total / 1e6:.1f} MB ({100 * self._done // self._total}%)"
            )
        else:
            amount += " MB"
        self._stream.write(f"\r\x1b[K{self._label}: {amount}, {rate:.0f} MB/s")
        self._stream.flush()
