"""Shared pieces of the Streamlit pages: the one job queue this server runs, and small formatters.

Everything else the pages need from the core goes through `studio.ui.service`.
"""

from __future__ import annotations

import logging

import streamlit as st

from ..jobs import JobQueue, default_db_path
from .service import EngineInfo, engines_info, thumbnail

log = logging.getLogger(__name__)

__all__ = ["EngineInfo", "engines_info", "human_size", "shutdown_queues", "studio_queue", "thumbnail"]

_STARTED: list[JobQueue] = []


@st.cache_resource(show_spinner=False)
def _queue_for(db_path: str) -> JobQueue:
    q = JobQueue(db_path).start()
    _STARTED.append(q)
    return q


def shutdown_queues() -> None:
    """Stop every queue this process started for the pages and forget them (tests, restarts)."""
    _queue_for.clear()
    while _STARTED:
        _STARTED.pop().stop()


def studio_queue() -> JobQueue:
    """The queue every tab of this server shares (one per jobs DB path), started once.

    The local studio owns the outputs folder itself; the pages use the queue's public methods only
    (`submit`, `get`, `list`, `cancel`).
    """
    return _queue_for(str(default_db_path().resolve()))


def human_size(n: int | None) -> str:
    """Bytes as '12.3 MB'."""
    if not n:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
