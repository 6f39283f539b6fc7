"""Transitions between two frames of the same size, at a progress 0 < p < 1.

Directions name the motion: ``slide_left`` pushes both pictures to the left (the next one comes in
from the right edge); ``wipe_left`` moves a hard edge from the right to the left, revealing the
next picture where it has passed.  Fades through black/white go out during the first half and
in during the second.
"""

from __future__ import annotations

import numpy as np

from .spec import TRANSITIONS


def progress(m: int, k: int) -> float:
    """Progress of overlap frame m of k: (m + 1) / (k + 1), strictly between 0 and 1."""
    return (m + 1) / (k + 1)


def _mix(a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    out = a.astype(np.float32) * (1.0 - p) + b.astype(np.float32) * p
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blend(kind: str, a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    """The frame `p` of the way from frame `a` to frame `b` through transition `kind`."""
    if a.shape != b.shape:
        raise ValueError(f"transition frames differ in shape: {a.shape} vs {b.shape}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"transition progress p={p} must be in 0..1")
    h, w = a.shape[:2]
    if kind == "cut":
        return b if p >= 0.5 else a
    if kind == "crossfade":
        return _mix(a, b, p)
    if kind in ("fade_black", "fade_white"):
        flat = np.full_like(a, 0 if kind == "fade_black" else 255)
        return _mix(a, flat, p * 2) if p < 0.5 else _mix(flat, b, p * 2 - 1)
    if kind.startswith("slide_"):
        horiz = kind in ("slide_left", "slide_right")
        size = w if horiz else h
        s = int(round(p * size))
        both = np.concatenate([a, b], axis=1 if horiz else 0)       # b after a (right / below)
        if kind in ("slide_right", "slide_down"):
            both = np.concatenate([b, a], axis=1 if horiz else 0)   # b before a (left / above)
            s = size - s
        return np.ascontiguousarray(both[:, s:s + w] if horiz else both[s:s + h])
    if kind in ("wipe_left", "wipe_right"):
        edge = int(round(p * w))
        out = a.copy()
        if kind == "wipe_left":
            out[:, w - edge:] = b[:, w - edge:]
        else:
            out[:, :edge] = b[:, :edge]
        return out
    raise ValueError(f"transition={kind!r} must be one of {', '.join(TRANSITIONS)}")
