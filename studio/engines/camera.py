"""The built-in `camera` engine: Ken-Burns-style camera moves over one photo, no weights.

How a frame is made (see `render`):

1. The *base crop* is the largest rectangle of the output's aspect ratio centred in the source
   (cover fit: the output is cropped, never letter-boxed).
2. `motion.camera_path` gives each frame a zoom, a centre offset, a roll angle and a dolly-zoom warp.
3. The crop scale `s0` (≤ 1) is computed from the *whole clip's* viewport footprints — every corner of
   every frame, with the interpolator's support as a margin — so the viewport never leaves the source:
   no black or sentinel pixel can appear.  If even `min_crop` of the base crop is not enough for the
   requested moves, their amplitude is reduced (and logged).
4. Each frame samples the source with one float affine matrix (`cv2.warpAffine`, bicubic, inverse
   map, no rounding of positions, so motion is jitter-free).  To avoid aliasing it samples from an
   INTER_AREA-reduced copy of the source whose resolution is the smallest step of 2^(1/3) at or above
   what the frame needs (a small lazily built pyramid; level geometry is exact, so switching levels
   does not shift the picture).  Frames up to ~1 MP blend that level with the next coarser one
   (trilinear mip-mapping) so sharpness does not step during a zoom; bigger frames use one level.
5. Dolly zoom is approximated with a radial warp applied in the frame (`cv2.remap`): a local scale
   1 / (1 + a·ρ²) keeps the centre (the subject) at constant size while the surroundings, more and more
   towards the edges, are magnified (a > 0, the "Vertigo" look) or shrunk (a < 0).  A flat photo has
   no depth, so this is a perspective *feel* (a pincushion-like stretch), not true parallax.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..clip import Clip
from ..context import RunContext
from ..params import Param
from .base import Engine
from .motion import CameraPath, MotionPlan, camera_path, canonical_moves, parse_motion

if TYPE_CHECKING:
    from ..request import GenerationRequest

log = logging.getLogger(__name__)

LEVEL_STEP = 2.0 ** (1.0 / 3.0)   # pyramid spacing: a frame never downsamples more than this
BLEND_MAX_PIXELS = 1_000_000      # trilinear level blending (2 warps a frame) up to this frame size
MIN_CROP = 0.45                   # the viewport may shrink to 45% of the base crop before moves shrink
# Interpolator support margin, in pixels of the sampled level: bicubic reads 2 pixels beyond the
# sample's floor, plus the half-pixel between edge and centre coordinates, plus numeric slack.
_PAD = {"cubic": 1.75, "linear": 0.75}
# Wall seconds per output megapixel, measured by bench/bench_camera.py on 2 cores (medians, rounded
# up): ~0.040 for blended frames (≤ BLEND_MAX_PIXELS, 2 warps), ~0.018 for 1080p (1 warp).
SECONDS_PER_MP_BLEND = 0.045
SECONDS_PER_MP = 0.022
SETUP_SECONDS = 0.05              # pyramid levels


def _cv2() -> Any:
    import cv2
    return cv2


def _base_crop(w: int, h: int, out_w: int, out_h: int) -> tuple[float, float]:
    """Width and height (source px) of the largest centred rectangle with the output's aspect."""
    aspect = out_w / out_h
    if w / h > aspect:
        return h * aspect, float(h)
    return float(w), w / aspect


def _extents(path: CameraPath, vw: float, vh: float, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame max |x| and |y| (source px, around the source centre) of the viewport at s0 = 1."""
    kpx = vw / out_w
    # A dolly-zoom-out warp (a < 0) reaches out to 1 / (1 + a) at the corners; a > 0 stays inside.
    grow = np.maximum(1.0, 1.0 / (1.0 + np.minimum(path.warp, 0.0)))
    hx = out_w / 2 * kpx * grow / path.zoom
    hy = out_h / 2 * kpx * grow / path.zoom
    c, s = np.abs(np.cos(path.roll)), np.abs(np.sin(path.roll))
    ex = np.abs(path.ox * vw) + c * hx + s * hy
    ey = np.abs(path.oy * vh) + s * hx + c * hy
    return ex, ey


def _fit(ex: np.ndarray, ey: np.ndarray, w: int, h: int, pad: np.ndarray | float) -> float:
    """The largest crop scale s0 ≤ 1 keeping every frame's viewport `pad` px inside the source."""
    sx = (w / 2 - pad) / np.maximum(ex, 1e-9)
    sy = (h / 2 - pad) / np.maximum(ey, 1e-9)
    return float(min(1.0, sx.min(), sy.min()))


def _magnification(path: CameraPath) -> np.ndarray:
    """The largest local magnification of the dolly-zoom warp per frame (1 without warp)."""
    a = np.clip(path.warp, 0.0, 0.95)
    return (1.0 + a) ** 2 / (1.0 - a)


def _level_scales(path: CameraPath, s0: float, vw: float, out_w: int,
                  blend: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: (fine, coarse, weight of fine) pyramid scales (≤ 1) to sample from.

    `fine` is the smallest step at or above the needed scale.  With `blend` the frame mixes it with the
    next coarser step by the needed scale's log position between them (trilinear mip-mapping), so the
    sharpness changes continuously during a zoom; without, it uses `fine` alone.
    """
    need = path.zoom * _magnification(path) * out_w / (s0 * vw)
    lam = np.log(need) / math.log(LEVEL_STEP)
    k = np.ceil(lam - 1e-9)
    fine = np.minimum(1.0, LEVEL_STEP ** k)
    if not blend:
        return fine, fine, np.ones_like(fine)
    coarse = np.minimum(1.0, LEVEL_STEP ** (k - 1))
    weight = np.where(fine >= 1.0, 1.0, np.clip(lam - (k - 1), 0.0, 1.0))
    return fine, np.where(fine >= 1.0, fine, coarse), weight


class _Pyramid:
    """Lazily built INTER_AREA reductions of the source, keyed by scale; each holds exact axis scales."""

    def __init__(self, image: np.ndarray) -> None:
        self.levels: dict[float, tuple[np.ndarray, float, float]] = {1.0: (image, 1.0, 1.0)}
        self.h, self.w = image.shape[:2]

    def size(self, scale: float) -> tuple[int, int]:
        """Pixel size (w, h) of the level at `scale`."""
        if scale >= 1.0:
            return self.w, self.h
        return max(1, round(self.w * scale)), max(1, round(self.h * scale))

    def get(self, scale: float) -> tuple[np.ndarray, float, float]:
        """(image, sx, sy) for `scale`, reduced from the nearest finer level already built."""
        scale = min(1.0, scale)
        if scale not in self.levels:
            finer = min(s for s in self.levels if s > scale)
            lw, lh = self.size(scale)
            img = _cv2().resize(self.levels[finer][0], (lw, lh), interpolation=_cv2().INTER_AREA)
            self.levels[scale] = (img, lw / self.w, lh / self.h)
        return self.levels[scale]


def render(image: np.ndarray, plan: MotionPlan, width: int, height: int, frames: int, fps: float,
           seed: int = 0, *, border: tuple[int, int, int] | None = None, interpolation: str = "cubic",
           min_crop: float = MIN_CROP, blend: bool | None = None,
           progress: Callable[[int, int], None] | None = None, anchor_start: bool = False,
           on_frame: Callable[[np.ndarray], None] | None = None,
           ) -> tuple[np.ndarray, dict[str, Any]]:
    """Render `frames` frames of `height`×`width` from an RGB uint8 `image` following `plan`.

    Returns (frames T×H×W×3 uint8, info for the manifest: crop scale, amplitude, levels used).
    `border=None` samples with reflected borders as a belt-and-braces measure; a colour (e.g. magenta)
    uses a constant border instead, which tests use to prove no outside pixel is ever shown.
    `blend` mixes two pyramid levels per frame (smooth sharpness through zooms; None: on for
    frames up to `BLEND_MAX_PIXELS`, where it is cheap).  `progress(i, n)` is called after each frame.
    `anchor_start` makes frame 0 the plain cover-fit view of the whole source (the input itself when
    it already has the output's size, as when continuing a clip from its last frame) and eases each
    frame's sampling map from that view to the planned one.  Every viewport corner is then a convex
    combination of two points inside the source, so it stays inside: still no outside pixels.
    """
    cv2 = _cv2()
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 H×W×3, got shape={getattr(image, 'shape', None)} "
                         f"dtype={getattr(image, 'dtype', None)}")
    if interpolation not in _PAD:
        raise ValueError(f"interpolation={interpolation!r} is not one of {', '.join(_PAD)}")
    for name, v in (("width", width), ("height", height), ("frames", frames)):
        if int(v) < 1:
            raise ValueError(f"{name}={v!r} must be ≥ 1")
    h, w = image.shape[:2]
    if min(h, w) < 8:
        raise ValueError(f"image of {w}×{h} is too small for camera moves")
    out_w, out_h, n = int(width), int(height), int(frames)
    vw, vh = _base_crop(w, h, out_w, out_h)
    pad0 = _PAD[interpolation]

    amp = 1.0
    path = camera_path(plan, n, fps, seed, amp)
    s0 = _fit(*_extents(path, vw, vh, out_w, out_h), w, h, pad0 * w / out_w)
    if s0 < min_crop:
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = (lo + hi) / 2
            p = camera_path(plan, n, fps, seed, mid)
            if _fit(*_extents(p, vw, vh, out_w, out_h), w, h, pad0 * w / out_w) >= min_crop:
                lo = mid
            else:
                hi = mid
        amp = lo
        log.warning("camera moves %s at speed %.2g do not fit inside the %d×%d source; amplitude reduced "
                    "to %.0f%%", "+".join(plan.moves), plan.speed, w, h, 100 * amp)
        path = camera_path(plan, n, fps, seed, amp)
        s0 = _fit(*_extents(path, vw, vh, out_w, out_h), w, h, pad0 * w / out_w)
    pyr = _Pyramid(image)
    if blend is None:
        blend = out_w * out_h <= BLEND_MAX_PIXELS
    # Second pass: the margin in source px depends on the (coarsest) level each frame samples from.
    _, coarse, _ = _level_scales(path, s0, vw, out_w, blend)
    pads = np.array([pad0 * max(w / pyr.size(float(c))[0], h / pyr.size(float(c))[1]) for c in coarse])
    s0 = _fit(*_extents(path, vw, vh, out_w, out_h), w, h, pads)
    if s0 <= 0:
        raise ValueError(f"a {w}×{h} image is too small for a {out_w}×{out_h} camera move")
    # s0 only shrank, so the levels are finer or equal and the pads still hold
    fine, coarse, weight = _level_scales(path, s0, vw, out_w, blend)
    if anchor_start:  # near the start the view is the whole source: sample it at full resolution
        fine = np.ones_like(fine)
        weight = np.ones_like(weight)

    flags = (cv2.INTER_CUBIC if interpolation == "cubic" else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    if border is None:
        bmode, bval = cv2.BORDER_REFLECT_101, (0, 0, 0)
    else:
        bmode, bval = cv2.BORDER_CONSTANT, tuple(int(c) for c in border)
    out = np.empty((n, out_h, out_w, 3), np.uint8)
    tmp = np.empty((out_h, out_w, 3), np.uint8)
    grid: list[np.ndarray] = []
    kpx = vw / out_w

    ease = np.zeros(n)
    if anchor_start and n > 1:
        t = np.arange(n) / (n - 1)
        ease = t * t * (3 - 2 * t)  # smoothstep: leaves the start view gently

    def sample(i: int, scale: float, dst: np.ndarray) -> None:
        img, sx, sy = pyr.get(scale)
        f = s0 * kpx / path.zoom[i]
        c, s = math.cos(path.roll[i]), math.sin(path.roll[i])
        lin = np.array([[sx * c * f, -sx * s * f], [sy * s * f, sy * c * f]])
        cx = sx * (w / 2 + s0 * path.ox[i] * vw) - 0.5
        cy = sy * (h / 2 + s0 * path.oy[i] * vh) - 0.5
        a = float(path.warp[i])
        if anchor_start:
            # blend towards the un-moved cover-fit view (s0 = 1, no zoom/offset/roll/warp)
            e = float(ease[i])
            lin = e * lin + (1 - e) * np.array([[sx * kpx, 0.0], [0.0, sy * kpx]])
            cx = e * cx + (1 - e) * (sx * w / 2 - 0.5)
            cy = e * cy + (1 - e) * (sy * h / 2 - 0.5)
            a *= e
        if abs(a) < 1e-6:
            d = np.array([0.5 - out_w / 2, 0.5 - out_h / 2])
            m = np.hstack([lin, (np.array([cx, cy]) + lin @ d)[:, None]])
            cv2.warpAffine(img, m, (out_w, out_h), dst=dst, flags=flags, borderMode=bmode, borderValue=bval)
            return
        if not grid:
            gx = np.arange(out_w, dtype=np.float32) + np.float32(0.5 - out_w / 2)
            gy = np.arange(out_h, dtype=np.float32) + np.float32(0.5 - out_h / 2)
            qx, qy = np.meshgrid(gx, gy)
            grid.extend([qx, qy, (qx * qx + qy * qy) / np.float32((out_w / 2) ** 2 + (out_h / 2) ** 2)])
        qx, qy, rho2 = grid
        g = 1.0 / (1.0 + np.float32(a) * rho2)
        wx, wy = qx * g, qy * g
        mx = np.float32(lin[0, 0]) * wx + np.float32(lin[0, 1]) * wy + np.float32(cx)
        my = np.float32(lin[1, 0]) * wx + np.float32(lin[1, 1]) * wy + np.float32(cy)
        cv2.remap(img, mx, my, flags & ~cv2.WARP_INVERSE_MAP, dst=dst, borderMode=bmode, borderValue=bval)

    for i in range(n):
        sample(i, float(fine[i]), out[i])
        if weight[i] < 0.999 and coarse[i] != fine[i]:
            sample(i, float(coarse[i]), tmp)
            cv2.addWeighted(out[i], float(weight[i]), tmp, 1.0 - float(weight[i]), 0.0, dst=out[i])
        if on_frame is not None:
            on_frame(out[i])
        if progress is not None:
            progress(i + 1, n)
    used = set(fine.tolist()) | {float(c) for c, wt in zip(coarse, weight, strict=True) if wt < 0.999}
    info = {"crop": round(s0, 5), "amplitude": round(amp, 5), "source_size": [w, h],
            "levels": sorted(round(v, 4) for v in used), "interpolation": interpolation,
            "blend_levels": bool(blend), "anchor_start": bool(anchor_start)}
    return out, info


class CameraEngine(Engine):
    """Camera moves (zoom, pan/tilt, roll, orbit, dolly zoom, handheld sway) over the input photo."""

    id = "camera"
    family = "camera"
    label = "Camera motion (no weights)"
    description = ("Pans, zooms, rolls, dolly zoom and handheld sway over the photo, from the motion "
                   "prompt or --motion; fast on CPU, no weights.")
    needs_weights = False
    uses_prompt = True
    supports_loras = False
    ignores = ("steps", "guidance", "negative_prompt")
    extra_params = {
        "anchor_start": Param("anchor_start", bool, False,
                              "Start exactly on the input image and ease into the move (used when "
                              "continuing a clip from its last frame).", group="camera", advanced=True),
    }

    def check_request(self, req: GenerationRequest) -> None:
        """Reject unknown move names in `req.motion` before anything runs."""
        if req.motion:
            canonical_moves(req.motion)

    def estimate(self, req: GenerationRequest, device: str) -> dict[str, float]:
        """Seconds from a measured per-output-megapixel constant; memory for the frames and pyramid."""
        mp = req.frames * req.width * req.height / 1e6
        per_mp = SECONDS_PER_MP_BLEND if req.width * req.height <= BLEND_MAX_PIXELS else SECONDS_PER_MP
        return {"seconds": SETUP_SECONDS + per_mp * mp,
                "memory_mb": mp * 3.0 + 3.0 * 16.0}

    def generate(self, image: np.ndarray, req: GenerationRequest, ctx: RunContext) -> Clip:
        """Render the clip; the parsed plan and the fit go to `clip.meta["motion"]`."""
        plan = parse_motion(req.prompt, req.motion, req.speed)
        ctx.log.info("camera: moves=%s speed=%.2g easing=%s%s", "+".join(plan.moves), plan.speed,
                     plan.easing, " (fallback)" if plan.fallback else "")
        frames, info = render(image, plan, req.width, req.height, req.frames, req.fps, req.seed,
                              progress=lambda i, n: ctx.step("camera", i, n),
                              anchor_start=bool(req.extra.get("anchor_start", False)),
                              on_frame=ctx.preview)
        return Clip(frames=frames, fps=float(req.fps),
                    meta={"engine": self.id, "motion": {**plan.to_dict(), **info}})
