"""Keeping a stack's workers alive: a worker that exits (killed, out of memory, crashed) is started
again after a back-off, and the front end stays up.

The back-off doubles from `first_s` up to `max_s` while restarts come quickly, and falls back to
`first_s` once a worker has run `healthy_s`; each exit and restart is logged with its exit code.  The
job a dead worker held follows the lease rules (`JobStore.requeue_expired`, `recover`): it is queued
again while it has attempts left, with the attempt counted, else failed as "worker lost".
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Supervised:
    """One child process that is restarted when it exits: `start()` makes a new Popen."""

    name: str
    start: Callable[[], subprocess.Popen]
    first_s: float = 1.0
    max_s: float = 30.0
    healthy_s: float = 60.0
    proc: subprocess.Popen | None = None
    started: float = 0.0
    delay: float = 0.0
    due: float | None = None           # when a restart is due (the process is down until then)
    restarts: int = 0
    history: list[tuple[float, int]] = field(default_factory=list)   # (time, exit code) of each exit

    def launch(self) -> None:
        """Start the process now."""
        self.proc, self.started, self.due = self.start(), time.monotonic(), None

    def poll(self, now: float | None = None) -> None:
        """Notice an exit (schedule a restart after the back-off) or start a restart that is due."""
        now = time.monotonic() if now is None else now
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            ran = now - self.started
            self.delay = self.first_s if ran >= self.healthy_s or self.delay == 0 else min(self.max_s,
                                                                                            self.delay * 2)
            self.history.append((time.time(), code))
            log.warning("%s (pid %d) exited with code %s after %.1f s; restarting it in %.0f s",
                        self.name, self.proc.pid, code, ran, self.delay)
            self.proc, self.due = None, now + self.delay
        if self.proc is None and self.due is not None and now >= self.due:
            self.restarts += 1
            self.launch()
            log.warning("%s restarted (pid %d, restart %d)", self.name, self.proc.pid, self.restarts)

    def stop(self) -> None:
        """SIGTERM the process (if it runs) and stop restarting it."""
        self.due = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
