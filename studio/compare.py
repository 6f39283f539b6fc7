"""Before/after: the base clip (what the engine made, before interpolation and upscaling) against
the post-processed result, at the same moment, as one image: side by side or a wipe.

The base frame is enlarged to the result's size with nearest-neighbour sampling, so its pixels show
as they are (no smoothing that would flatter or hide the upscaler's work).  The result frame is
the encoded output as a viewer sees it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .clip import Clip

MODES = ("wipe", "side by side")
GAP = 4          # px of white between the two halves of a side-by-side view


@dataclass
class Pair:
    """The two clips being compared."""

    before: Clip
    after: Clip

    @property
    def duration(self) -> float:
        """The shorter of the two durations (both start at t=0)."""
        return min(self.before.spec.duration, self.after.spec.duration)


def has_before(manifest: dict[str, Any]) -> bool:
    """True when the output kept what it started from (a saved base clip or a checked input)."""
    return bool(manifest.get("base_clip") or manifest.get("base_source"))


def load_pair(out: str | Path, manifest_path: str | Path) -> Pair:
    """The base clip and the result of an output (ValueError naming what is missing)."""
    from postfx.assemble import read_video

    from .outputs import read_manifest
    from .pipeline import _base_of
    mpath = Path(manifest_path)
    m = read_manifest(mpath)
    if not has_before(m):
        raise ValueError(f"{Path(out).name} kept no base clip to compare with")
    return Pair(_base_of(m, mpath), read_video(out))


def frame_at(clip: Clip, t: float) -> np.ndarray:
    """The frame shown at time `t` seconds (the last one past the end)."""
    if not t >= 0:
        raise ValueError(f"t={t} must be >= 0")
    return clip.frames[min(clip.frames.shape[0] - 1, int(t * clip.fps + 1e-6))]


def enlarge(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`frame` at width×height by nearest-neighbour sampling (its pixels as they are)."""
    h, w = frame.shape[:2]
    ys = (np.arange(height) * h // height).clip(0, h - 1)
    xs = (np.arange(width) * w // width).clip(0, w - 1)
    return frame[ys][:, xs]


def compare(before: np.ndarray, after: np.ndarray, mode: str = "wipe", at: float = 0.5) -> np.ndarray:
    """One RGB image: `before` (enlarged to `after`'s size) and `after`, side by side, or a wipe
    with `before` left of `at` (0..1 of the width) and `after` right of it, split by a white line."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
    if not 0.0 <= at <= 1.0:
        raise ValueError(f"at={at} must be within 0..1")
    h, w = after.shape[:2]
    b = enlarge(before, w, h)
    if mode == "side by side":
        gap = np.full((h, GAP, 3), 255, np.uint8)
        return np.concatenate([b, gap, after], axis=1)
    x = int(round(at * w))
    img = after.copy()
    img[:, :x] = b[:, :x]
    if 0 < x < w:
        img[:, max(0, x - 1):x + 1] = 255
    return img
