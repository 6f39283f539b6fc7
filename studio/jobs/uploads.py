"""Accepted inputs (shared by the pages and the REST API): validated, kept under an uploads folder.

The desk studio keeps its uploads in <outputs>/uploads; an API owner's live in <outputs>/<owner>/uploads
and are recorded in the `uploads` table (`UploadStore`), so that clients name them by id, never by path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_UPLOAD_MB = 50.0
UPLOAD_KINDS = ("image", "video", "audio")
VIDEO_MAX_SIDE = 4096
VIDEO_MAX_FRAMES = 20_000          # $STUDIO_MAX_VIDEO_FRAMES
MAX_MEDIA_SECONDS = 600.0          # $STUDIO_MAX_MEDIA_SECONDS: the longest audio or video accepted
VIDEO_MIN_FPS, VIDEO_MAX_FPS = 1.0, 240.0


def uploads_dir(owner: str | None = None) -> Path:
    """Where accepted inputs are kept: <outputs>/uploads (the desk studio), or <outputs>/<owner>/uploads."""
    from ..outputs import outputs_dir, owner_dir
    p = (outputs_dir() if owner is None else owner_dir(owner)) / "uploads"
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
    from postfx.media import MediaRefused

    from ..outputs import atomic_path
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
                kind, _ = media_facts(tmp, name)
            except MediaRefused as e:
                if e.refers:
                    raise
                raise ValueError(f"{name} is not readable audio (no audio stream in it)") from None
            if kind != "audio":
                raise ValueError(f"{name} is a video, not audio")
    return dest


# -- the REST API's uploads: any of image, video or audio, recorded by id ---------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    info TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_owner ON uploads(owner, created);
"""
UPLOAD_ID = re.compile(r"^up_[0-9a-f]{16}$")


@dataclass
class Upload:
    """One accepted upload: what it is (kind and info) and where the server keeps it (`path`)."""

    id: str
    owner: str
    kind: str
    name: str
    bytes: int
    sha256: str
    path: str
    info: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    def public(self) -> dict[str, Any]:
        """What a client sees: everything but the server path."""
        return {"id": self.id, "kind": self.kind, "name": self.name, "bytes": self.bytes,
                "sha256": self.sha256, "created": self.created, **self.info}


def clean_name(name: Any, default: str = "upload") -> str:
    """A client's file name reduced to a harmless base name (letters, digits, '-', '_', '.'; ≤ 80)."""
    base = Path(str(name or "")).name
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in base).lstrip(".")[-80:]
    return safe or default


def media_limits() -> tuple[float, int]:
    """(longest audio/video in seconds, most video frames) accepted at upload, from the environment."""
    return (float(os.environ.get("STUDIO_MAX_MEDIA_SECONDS", MAX_MEDIA_SECONDS)),
            int(os.environ.get("STUDIO_MAX_VIDEO_FRAMES", VIDEO_MAX_FRAMES)))


def media_facts(path: Path, name: str) -> tuple[str, dict[str, Any]]:
    """('video'|'audio', facts) of a media file: probed once (`postfx.media.probe`: sniffed format from
    an allow-list, forced demuxer, header only) and held to the upload limits; ValueError naming it.

    The facts are what every later decode of the file yields (format, duration, and for a video its
    size, fps and frame count), so the ledger plans from them without running ffmpeg again."""
    from postfx.media import probe
    f = probe(path, name)      # MediaRefused (a ValueError) names the file and says why
    max_s, max_frames = media_limits()
    if f.duration > max_s:
        raise ValueError(f"{name} lasts {f.duration:,.1f} s; audio and video may be at most {max_s:g} s")
    if not f.has_video:
        if f.duration <= 0:
            raise ValueError(f"{name} holds no sound (duration 0 s)")
        return "audio", {"duration": round(f.duration, 4), "format": f.format, "has_audio": True,
                         "audio_rate": f.audio_rate, "audio_channels": f.audio_channels}
    if max(f.width, f.height) > VIDEO_MAX_SIDE:
        raise ValueError(f"{name} is {f.width}x{f.height}; videos may be at most {VIDEO_MAX_SIDE} pixels "
                         "on a side")
    if not VIDEO_MIN_FPS <= f.fps <= VIDEO_MAX_FPS:
        raise ValueError(f"{name} plays at {f.fps:g} fps; videos must be {VIDEO_MIN_FPS:g}.."
                         f"{VIDEO_MAX_FPS:g} fps")
    if f.frames > max_frames:
        raise ValueError(f"{name} has {f.frames:,} frames ({f.duration:g} s at {f.fps:g} fps); at most "
                         f"{max_frames:,} are accepted")
    return "video", {"width": f.width, "height": f.height, "frames": f.frames, "fps": f.fps,
                     "duration": f.duration, "format": f.format, "has_audio": f.has_audio,
                     "audio_rate": f.audio_rate, "audio_channels": f.audio_channels}


def decode_check(path: Path) -> tuple[int, int]:
    """Decode an image once (its header already checked by `probe_image`) to refuse corrupt or
    truncated files at upload; returns its (width, height) as shown (EXIF orientation applied).

    Only the decoder runs here, in Pillow's own buffer, not the studio's full conversion to RGB, so a
    large upload costs one decoded copy of memory."""
    import warnings

    from PIL import Image

    from ..images import ImageError, probe_image
    info = probe_image(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for broken data
        raise ImageError(path, f"corrupt or truncated image data ({type(e).__name__})") from None
    w, h = info["display_size"]
    return int(w), int(h)


def inspect_upload(path: Path, name: str) -> tuple[str, dict[str, Any]]:
    """What an uploaded file is, by its content: ('image'|'video'|'audio', info).  ValueError otherwise.

    An image is fully decoded (so a corrupt or truncated one is refused here, not in a job); audio and
    video are probed once (`media_facts`): a container that is not a plain single file (playlists,
    concat lists, text naming files or URLs) is refused, and so is media over the duration limits.
    """
    from PIL import UnidentifiedImageError

    from ..images import ImageError, probe_image
    try:
        probe_image(path)
        is_image = True
    except ImageError as e:
        is_image = not isinstance(e.__cause__, UnidentifiedImageError)
    if is_image:
        try:
            w, h = decode_check(path)
        except ImageError as e:
            raise ValueError(f"{name}: {e.reason}") from None
        return "image", {"width": w, "height": h}
    return media_facts(path, name)


class UploadStore:
    """The `uploads` table beside the jobs in a `JobStore`'s database."""

    def __init__(self, store: Any) -> None:
        self.store = store
        with store.conn() as c:
            c.executescript(_SCHEMA)

    def add(self, owner: str, name: str, src: Path, *, max_total_bytes: int | None = None) -> Upload:
        """Validate the file at `src` and keep it as one of `owner`'s uploads (moved, not copied).

        Raises ValueError naming the file when it is not an accepted input, `QuotaExceeded` when the
        owner's uploads would pass `max_total_bytes`.  `src` is removed either way.
        """
        from ..outputs import atomic_path
        try:
            size = src.stat().st_size
            if max_total_bytes is not None:
                from .incoming import incoming_bytes
                used = self.total_bytes(owner) + incoming_bytes(uploads_dir(owner), exclude=src.parent)
                if used + size > max_total_bytes:
                    raise QuotaExceeded(owner, used, size, max_total_bytes)
            kind, info = inspect_upload(src, name)
            h = hashlib.sha256()
            with open(src, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            up_id = "up_" + secrets.token_hex(8)
            suffix = Path(name).suffix.lower()
            ext = suffix if re.match(r"^\.[a-z0-9]{1,5}$", suffix) else ""
            dest = uploads_dir(owner) / f"{up_id}{ext}"
            with atomic_path(dest) as tmp:
                os.replace(src, tmp)
            rec = Upload(up_id, owner, kind, name, size, h.hexdigest(), str(dest), info, time.time())
            with self.store.conn() as c:
                c.execute("INSERT INTO uploads (id, owner, kind, name, bytes, sha256, path, info, created) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (rec.id, owner, kind, name, size, rec.sha256, rec.path, json.dumps(info),
                           rec.created))
            return rec
        finally:
            src.unlink(missing_ok=True)

    @staticmethod
    def _rec(row: Any) -> Upload:
        d = dict(row)
        d["info"] = json.loads(d["info"])
        return Upload(**d)

    def get(self, up_id: Any, owner: str | None) -> Upload:
        """The upload `up_id` of `owner` (None: any owner); KeyError when there is none of theirs."""
        if not isinstance(up_id, str) or not UPLOAD_ID.match(up_id):
            raise KeyError(up_id)
        with self.store.conn() as c:
            row = c.execute("SELECT * FROM uploads WHERE id=?", (up_id,)).fetchone()
        if row is None or (owner is not None and row["owner"] != owner):
            raise KeyError(up_id)
        return self._rec(row)

    def list(self, owner: str | None, limit: int = 100) -> list[Upload]:
        """Uploads, newest first (of one owner, or all when None)."""
        q, args = "SELECT * FROM uploads", []
        if owner is not None:
            q, args = q + " WHERE owner=?", [owner]
        with self.store.conn() as c:
            rows = c.execute(q + " ORDER BY created DESC LIMIT ?", [*args, int(limit)]).fetchall()
        return [self._rec(r) for r in rows]

    def delete(self, up_id: str, owner: str | None) -> None:
        """Forget an upload and remove its file (KeyError when it is not the owner's)."""
        rec = self.get(up_id, owner)
        Path(rec.path).unlink(missing_ok=True)
        with self.store.conn() as c:
            c.execute("DELETE FROM uploads WHERE id=?", (rec.id,))

    def total_bytes(self, owner: str) -> int:
        """Bytes of all of `owner`'s uploads."""
        with self.store.conn() as c:
            return int(c.execute("SELECT COALESCE(SUM(bytes), 0) FROM uploads WHERE owner=?",
                                 (owner,)).fetchone()[0])


class QuotaExceeded(Exception):
    """An owner's uploads would pass their total-bytes limit."""

    def __init__(self, owner: str, used: int, size: int, limit: int) -> None:
        super().__init__(f"this upload ({size:,} bytes) would bring {owner}'s uploads to {used + size:,} "
                         f"bytes, over the limit of {limit:,}")
