"""Accepted input images (shared by the pages and the REST API): validated, kept under <outputs>/uploads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_MAX_UPLOAD_MB = 50.0


def uploads_dir() -> Path:
    """Where accepted input images are kept: <outputs>/uploads."""
    from ..outputs import outputs_dir
    p = outputs_dir() / "uploads"
    p.mkdir(parents=True, exist_ok=True)
    return p


def max_upload_mb() -> float:
    """The studio's own upload limit in MB ($STUDIO_MAX_UPLOAD_MB, default 50)."""
    return float(os.environ.get("STUDIO_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))


def accept_image(name: str, data: bytes) -> Path:
    """Validate uploaded image bytes and keep them as <uploads>/<sha12>-<name>.

    Raises ValueError whose text names the file and says what is wrong (too big, corrupt, not an image).
    """
    from ..images import load_image
    limit = max_upload_mb()
    size_mb = len(data) / 1e6
    if size_mb > limit:
        raise ValueError(f"{name} is {size_mb:.1f} MB, over the {limit:g} MB upload limit")
    sha = hashlib.sha256(data).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(name).name)[-60:] or "image"
    dest = uploads_dir() / f"{sha}-{safe}"
    if not dest.is_file():
        from ..outputs import atomic_path
        try:
            with atomic_path(dest) as tmp:
                tmp.write_bytes(data)
                load_image(tmp)
        except ValueError as e:
            raise ValueError(f"{name}: {getattr(e, 'reason', e)}") from None
    return dest


AUDIO_TYPES = ("wav", "mp3", "ogg", "m4a", "flac")


def accept_audio(name: str, data: bytes) -> Path:
    """Validate uploaded audio bytes and keep them as <uploads>/audio/<sha12>-<name> (atomically).

    Raises ValueError whose text names the file and says what is wrong (too big, wrong type, no
    audio stream ffmpeg can read).
    """
    from ..outputs import atomic_path
    from ..sequence.audio import audio_duration
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in AUDIO_TYPES:
        raise ValueError(f"{name}: .{ext or '?'} is not an accepted audio type ({', '.join(AUDIO_TYPES)})")
    limit = max_upload_mb()
    size_mb = len(data) / 1e6
    if size_mb > limit:
        raise ValueError(f"{name} is {size_mb:.1f} MB, over the {limit:g} MB upload limit")
    sha = hashlib.sha256(data).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(name).name)[-60:]
    dest = uploads_dir() / "audio" / f"{sha}-{safe}"
    if not dest.is_file():
        with atomic_path(dest) as tmp:
            tmp.write_bytes(data)
            try:
                secs = audio_duration(tmp)
            except ValueError:
                raise ValueError(f"{name} is not readable audio (no audio stream in it)") from None
            if secs <= 0:
                raise ValueError(f"{name} holds no sound (duration 0 s)")
    return dest
