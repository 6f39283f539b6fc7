"""A terminal progress bar (stderr) for `RunContext.progress`: one bar per stage."""

from __future__ import annotations

import sys
from typing import TextIO


class StderrProgress:
    """Callable progress reporter: `progress(stage, i, n)` draws `stage [####----] i/n`."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self._stage: str | None = None
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, stage: str, i: int, n: int) -> None:
        if stage != self._stage and self._stage is not None:
            self.stream.write("\n")
        self._stage = stage
        n = max(n, 1)
        filled = int(self.width * min(i, n) / n)
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\r" if self._tty else "\n"
        if self._tty or i == n or i == 1:
            self.stream.write(f"{stage:<12} [{bar}] {i}/{n}{end}")
            self.stream.flush()

    def close(self) -> None:
        """Finish the last bar's line."""
        if self._stage is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._stage = None
