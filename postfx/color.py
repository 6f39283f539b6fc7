"""Colour consistency: pull an upscaled clip's low frequencies back to its source, measure drift.

* `color_match(reference, frames, sigma)` — for each frame, blur the reference and the frame
  (brought to the reference's size) with a Gaussian of `sigma` reference pixels and add the
  difference, upsampled, back to the frame.  Both blurs run as one (the blur is linear) at the
  reference's size; `postfx.tensor_ops.color_match_t` is the same on torch tensors (CUDA).
  Casts, brightness and contrast shifts at scales above `sigma` go; the detail the upscaler
  made (higher frequencies) stays.
* `color_drift(a, b)` — how far two frames' overall colour is apart (ΔE of their mean Lab
  colour), for the sequencer to flag or fix jumps between clips.
* `match_lab_stats(frames, reference, strength)` — per-frame mean/std transfer in Lab, the fix
  for such a jump when the content differs (no pixel correspondence).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def _check_frames(name: str, x: np.ndarray) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape[-1:] != (3,) or x.ndim not in (3, 4):
        raise ValueError(f"{name} must be uint8 H×W×3 or T×H×W×3, got shape={getattr(x, 'shape', None)} "
                         f"dtype={getattr(x, 'dtype', None)}")
    return x[None] if x.ndim == 3 else x


def color_match(reference: np.ndarray, frames: np.ndarray, sigma: float = 3.0,
                on_frame: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Correct `frames`' low frequencies to `reference`'s (blurred at the reference's scale).

    reference: uint8 T×h×w×3 (or one h×w×3 frame used for all); frames: uint8 T×H×W×3, any size.
    Returns uint8 frames of the same shape as `frames`.  `on_frame(done, total)` runs after each
    frame (a stage reports progress and honours cancel there).
    """
    if not sigma > 0:
        raise ValueError(f"sigma={sigma!r} must be > 0")
    ref = _check_frames("reference", reference)
    out = _check_frames("frames", frames)
    if len(ref) not in (1, len(out)):
        raise ValueError(f"reference has {len(ref)} frames but frames has {len(out)}")
    h, w = ref.shape[1:3]
    oh, ow = out.shape[1:3]
    result = np.empty_like(out)
    for i, frame in enumerate(out):
        # blur(ref) - blur(small) == blur(ref - small): one blur a frame, at the reference's size
        small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA) if (oh, ow) != (h, w) else frame
        delta = cv2.GaussianBlur(cv2.subtract(ref[min(i, len(ref) - 1)], small, dtype=cv2.CV_32F),
                                 (0, 0), sigma)
        if (oh, ow) != (h, w):
            delta = cv2.resize(delta, (ow, oh), interpolation=cv2.INTER_LINEAR)
        result[i] = cv2.add(frame, delta, dtype=cv2.CV_8U)   # rounds and saturates, no float frame
        if on_frame is not None:
            on_frame(i + 1, len(out))
    return result if frames.ndim == 4 else result[0]


def _lab(frame: np.ndarray, max_side: int = 128) -> np.ndarray:
    h, w = frame.shape[:2]
    k = max(h, w) / max_side
    if k > 1:
        frame = cv2.resize(frame, (max(1, round(w / k)), max(1, round(h / k))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)


def color_drift(a: np.ndarray, b: np.ndarray) -> float:
    """ΔE (CIE76) between the mean Lab colours of frames `a` and `b` (uint8 H×W×3, sizes may differ).

    About 2 is barely visible; above ~5 a cut between the frames shows a colour jump.
    Motion between the frames barely moves it, since only the means are compared.
    """
    la, lb = _lab(_check_frames("a", a)[0]), _lab(_check_frames("b", b)[0])
    return float(np.linalg.norm(la.mean(0) - lb.mean(0)))


def match_lab_stats(frames: np.ndarray, reference: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Move each frame's Lab mean and std towards `reference`'s (strength 0 = unchanged, 1 = full)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength={strength!r} must be within 0..1")
    out = _check_frames("frames", frames)
    ref = _lab(_check_frames("reference", reference)[0])
    r_mu, r_sd = ref.mean(0), ref.std(0) + 1e-6
    result = np.empty_like(out)
    for i, f in enumerate(out):
        lab = cv2.cvtColor(f.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        stats = _lab(f)
        mu, sd = stats.mean(0), stats.std(0) + 1e-6
        gain = 1.0 + strength * (r_sd / sd - 1.0)
        target = (lab - mu) * gain + mu + strength * (r_mu - mu)
        rgb = cv2.cvtColor(target.astype(np.float32), cv2.COLOR_LAB2RGB)
        result[i] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return result if frames.ndim == 4 else result[0]
