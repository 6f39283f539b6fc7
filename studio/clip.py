"""The `Clip` that flows between engine and stages, and `ClipSpec`, its shape without pixels."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .audio import Audio


@dataclass(frozen=True)
class ClipSpec:
    """What the ledger knows about a clip before it exists: frames, fps and size."""

    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Playback length in seconds (frames / fps)."""
        return self.frames / self.fps if self.fps else 0.0

    def with_(self, **kw: Any) -> ClipSpec:
        """A copy with some fields replaced."""
        return replace(self, **kw)


@dataclass
class Clip:
    """Frames as uint8 T×H×W×3 (RGB), their fps, free-form metadata, and the sound it carries.

    When `audio` is set, its duration equals the frames' (frames / fps) to the sample: stages keep
    it so (`studio.audio.fit_to`), and the final encode muxes it.
    """

    frames: np.ndarray
    fps: float
    meta: dict[str, Any] = field(default_factory=dict)
    audio: Audio | None = None

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            shape = getattr(f, "shape", None)
            dtype = getattr(f, "dtype", None)
            raise ValueError(f"Clip frames must be uint8 T×H×W×3, got shape={shape} dtype={dtype}")
        if f.shape[0] < 1:
            raise ValueError("Clip needs at least one frame, got 0")
        if not (self.fps > 0):
            raise ValueError(f"Clip fps must be > 0, got {self.fps!r}")
        if self.audio is not None and not isinstance(self.audio, Audio):
            raise ValueError(f"Clip audio must be an Audio or None, got {type(self.audio).__name__}")

    @property
    def spec(self) -> ClipSpec:
        """This clip's shape as a `ClipSpec`."""
        t, h, w, _ = self.frames.shape
        return ClipSpec(frames=int(t), fps=float(self.fps), width=int(w), height=int(h))

    def replace(self, **kw: Any) -> Clip:
        """A new clip with some fields replaced (metadata is copied, not shared)."""
        kw.setdefault("meta", dict(self.meta))
        return replace(self, **kw)
