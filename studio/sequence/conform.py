"""Conform clips to the output: trim, speed, fps (duplicate/drop or RIFE), size (letterbox or crop).

Frames are sampled by timestamp: output frame j (at time j / fps_out) shows the source frame that
is on screen at source time ``trim_in + j * speed / fps_out``, i.e. index
``floor(t * fps_src)`` — sample and hold, so 8 → 24 fps repeats every frame three times and
24 → 8 fps keeps frames 0, 3, 6, ...  Both keep the first frame.
"""

from __future__ import annotations

import math

import numpy as np

from ..clip import Clip

_EPS = 1e-6


def frame_count(seconds: float, fps: float) -> int:
    """Frames that show `seconds` at `fps` (rounded to the nearest frame, at least 1)."""
    return max(1, int(round(seconds * fps)))


def source_indices(n_out: int, fps_out: float, fps_src: float, n_src: int, trim_in: float = 0.0,
                   speed: float = 1.0) -> np.ndarray:
    """Source frame index for each of `n_out` output frames (sample and hold, clamped to the clip)."""
    t = trim_in + np.arange(n_out, dtype=np.float64) * (speed / fps_out)
    idx = np.floor(t * fps_src + _EPS).astype(np.int64)
    return np.clip(idx, 0, n_src - 1)


def fit_geometry(w: int, h: int, out_w: int, out_h: int, fit: str) -> tuple[int, int, int, int]:
    """(scaled width, scaled height, x offset, y offset) of a w×h frame in out_w×out_h.

    "letterbox" scales to fit inside and centres (offsets ≥ 0: the pad bars); "crop" scales to
    cover and centres (offsets ≤ 0: what is cut off).
    """
    if fit not in ("letterbox", "crop"):
        raise ValueError(f"fit={fit!r} must be 'letterbox' or 'crop'")
    scale = (min if fit == "letterbox" else max)(out_w / w, out_h / h)
    sw, sh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    if fit == "letterbox":
        sw, sh = min(sw, out_w), min(sh, out_h)
    else:
        sw, sh = max(sw, out_w), max(sh, out_h)
    return sw, sh, (out_w - sw) // 2, (out_h - sh) // 2


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """Any uint8 frame (gray H×W, H×W×1, RGB or RGBA) as RGB H×W×3."""
    if frame.dtype != np.uint8:
        raise ValueError(f"frame dtype={frame.dtype} must be uint8")
    if frame.ndim == 2:
        frame = frame[..., None]
    c = frame.shape[-1]
    if c == 1:
        return np.repeat(frame, 3, axis=-1)
    if c == 4:
        return np.ascontiguousarray(frame[..., :3])
    if c == 3:
        return frame
    raise ValueError(f"frame shape={frame.shape} has {c} channels; expected 1, 3 or 4")


def fit_frame(frame: np.ndarray, out_w: int, out_h: int, fit: str,
              pad: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """One frame resized to out_w×out_h by letterbox (pad with `pad`) or crop-to-fill."""
    import cv2

    frame = to_rgb(frame)
    h, w = frame.shape[:2]
    if (w, h) == (out_w, out_h):
        return frame
    sw, sh, x, y = fit_geometry(w, h, out_w, out_h, fit)
    interp = cv2.INTER_AREA if sw < w else cv2.INTER_CUBIC
    scaled = cv2.resize(frame, (sw, sh), interpolation=interp) if (sw, sh) != (w, h) else frame
    if fit == "crop":
        return np.ascontiguousarray(scaled[-y:-y + out_h, -x:-x + out_w])
    out = np.empty((out_h, out_w, 3), np.uint8)
    out[:] = np.asarray(pad, np.uint8)
    out[y:y + sh, x:x + sw] = scaled
    return out


def used_span(n_src: int, fps_src: float, fps_out: float, trim_in: float, trim_out: float | None,
              speed: float, resample: str = "nearest") -> tuple[int, int]:
    """The source frames [lo, hi) that `retime` reads for this trim: all a decoder has to produce."""
    end = n_src / fps_src if trim_out is None else trim_out
    n_out = frame_count((end - trim_in) / speed, fps_out)
    idx = source_indices(n_out, fps_out, fps_src, n_src, trim_in, speed)
    lo, hi = int(idx.min()), int(idx.max()) + 1
    if resample == "rife" and fps_out * speed > fps_src + _EPS:
        lo = min(lo, int(math.floor(trim_in * fps_src + _EPS)))
        hi = max(hi, min(n_src, int(math.ceil(end * fps_src - _EPS)) + 1))
    return lo, hi


def retime(clip: Clip, fps_out: float, trim_in: float, trim_out: float | None, speed: float,
           resample: str, ctx=None, *, first: int = 0, n_total: int | None = None) -> np.ndarray:
    """Trim, speed-change and resample a clip's frames to `fps_out` (source size kept).

    With resample="rife" and more output frames per second of source than the clip has, the
    trimmed frames are first interpolated by RIFE (postfx.interpolate.Interpolate, target_fps)
    to the rate the output needs, then sampled; otherwise frames are duplicated or dropped.

    `clip` may hold only part of the source: its frames are source frames `first` .. of a source of
    `n_total` frames (the span `used_span` names; times and trims stay those of the whole source).
    """
    n_src = clip.frames.shape[0] + first if n_total is None else n_total
    end = n_src / clip.fps if trim_out is None else trim_out
    n_out = frame_count((end - trim_in) / speed, fps_out)
    need_fps = fps_out * speed
    if resample == "rife" and need_fps > clip.fps + _EPS:
        f0 = int(math.floor(trim_in * clip.fps + _EPS))
        last = min(n_src, int(math.ceil(end * clip.fps - _EPS)) + 1)
        part = Clip(np.ascontiguousarray(clip.frames[f0 - first:last - first]), clip.fps)
        if part.frames.shape[0] >= 2:
            from postfx.interpolate import Interpolate  # lazy: heavy, and optional

            part = Interpolate(target_fps=need_fps).apply(part, ctx)
            idx = source_indices(n_out, fps_out, part.fps, part.frames.shape[0], trim_in - f0 / clip.fps,
                                 speed)
            return part.frames[idx]
    idx = source_indices(n_out, fps_out, clip.fps, n_src, trim_in, speed) - first
    return clip.frames[idx]


def conform_clip(clip: Clip, out_w: int, out_h: int, fps_out: float, *, trim_in: float = 0.0,
                 trim_out: float | None = None, speed: float = 1.0, fit: str = "letterbox",
                 pad: tuple[int, int, int] = (0, 0, 0), resample: str = "nearest", ctx=None) -> Clip:
    """A clip trimmed, retimed and fitted to out_w×out_h at `fps_out` (all frames in memory)."""
    frames = retime(clip, fps_out, trim_in, trim_out, speed, resample, ctx)
    out = np.stack([fit_frame(f, out_w, out_h, fit, pad) for f in frames])
    return Clip(out, float(fps_out), dict(clip.meta))
