"""Shared pieces of the Streamlit pages: the one job queue, uploads, thumbnails, engine status."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from ..jobs import JobQueue, default_db_path
from ..jobs.uploads import accept_image, max_upload_mb, uploads_dir

log = logging.getLogger(__name__)

__all__ = ["EngineInfo", "accept_image", "engines_info", "human_size", "max_upload_mb", "save_frame",
           "shutdown_queues", "studio_queue", "thumbnail", "uploads_dir"]

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
    """The queue every tab of this server shares (one per jobs DB path), started once."""
    return _queue_for(str(default_db_path().resolve()))


def save_frame(frame: Any, stem: str) -> Path:
    """Save an RGB uint8 frame as a PNG in the uploads folder (used for 'continue from last frame')."""
    from PIL import Image

    from ..outputs import atomic_path
    dest = uploads_dir() / f"{stem}-last.png"
    with atomic_path(dest) as tmp:
        Image.fromarray(frame).save(tmp)
    return dest


def thumbnail(video: Path, side: int = 320) -> Path | None:
    """A JPEG of a video's first frame, cached under <outputs>/.thumbs (None if unreadable)."""
    from PIL import Image

    from ..outputs import outputs_dir
    video = Path(video)
    dest = outputs_dir() / ".thumbs" / f"{video.name}.jpg"
    if dest.is_file() and dest.stat().st_mtime >= video.stat().st_mtime:
        return dest
    try:
        if video.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif"):
            img = Image.open(video).convert("RGB")
        else:
            from postfx.assemble import read_video
            img = Image.fromarray(read_video(video, max_frames=1).frames[0])
        img.thumbnail((side, side))
        dest.parent.mkdir(parents=True, exist_ok=True)
        img.save(dest, format="JPEG", quality=85)
        return dest
    except Exception as e:  # noqa: BLE001 - a thumbnail is optional
        log.debug("no thumbnail for %s: %s", video, e)
        return None


@dataclass
class EngineInfo:
    """An engine's id, label, readiness and what to run when it is not ready."""

    id: str
    label: str
    ready: bool
    detail: str
    command: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    family: str = ""
    supports_loras: bool = False


def engines_info() -> list[EngineInfo]:
    """Every registered engine with its `status()`; an engine that fails to load is 'not ready'."""
    from ..engines import engine_ids, get_engine
    out = []
    for eid in engine_ids():
        try:
            eng = get_engine(eid)
            s = eng.status()
            out.append(EngineInfo(eid, getattr(eng, "label", eid), bool(s.present), s.detail, s.command,
                                  s.size_bytes, s.sha256, getattr(eng, "family", ""),
                                  bool(getattr(eng, "supports_loras", False))))
        except Exception as e:  # noqa: BLE001 - show why it is unusable instead of failing the page
            out.append(EngineInfo(eid, eid, False, f"cannot load: {type(e).__name__}: {e}"))
    return out


def human_size(n: int | None) -> str:
    """Bytes as '12.3 MB'."""
    if not n:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
