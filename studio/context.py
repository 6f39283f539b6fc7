"""The run context: device, progress callback, cancel flag, logger and model cache."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ProgressFn = Callable[[str, int, int], None]


class Cancelled(Exception):
    """Raised inside a run when its cancel flag was set."""


class ModelCache:
    """A small keyed cache of loaded models, shared by stages of one process, behind a lock."""

    def __init__(self) -> None:
        self._items: dict[Any, Any] = {}
        self.lock = threading.RLock()

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        """Return the cached object for `key`, loading it once with `load()`."""
        with self.lock:
            if key not in self._items:
                self._items[key] = load()
            return self._items[key]

    def evict(self, predicate: Callable[[Any], bool] | None = None) -> None:
        """Drop cached entries (all, or those whose key matches `predicate`)."""
        with self.lock:
            for k in list(self._items):
                if predicate is None or predicate(k):
                    del self._items[k]

    def __contains__(self, key: Any) -> bool:
        return key in self._items


_DEFAULT_CACHE = ModelCache()


@dataclass
class RunContext:
    """Everything a stage or engine may reach for; nothing else is global."""

    device: str = "cpu"
    progress: ProgressFn | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("studio"))
    cache: ModelCache = field(default_factory=lambda: _DEFAULT_CACHE)
    preview: Callable[[Any], None] | None = None

    def check_cancel(self) -> None:
        """Raise `Cancelled` if the run was asked to stop."""
        if self.cancel.is_set():
            raise Cancelled("cancelled by user")

    def step(self, stage: str, i: int, n: int) -> None:
        """Report progress (step i of n in `stage`) and honour the cancel flag."""
        self.check_cancel()
        if self.progress is not None:
            self.progress(stage, i, n)
