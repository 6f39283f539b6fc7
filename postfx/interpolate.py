"""The `interpolate` stage: more frames per second with RIFE 4.25 (or OpenCV DIS flow without weights).

Frame ledger (exact, what `plan` promises and `apply` delivers):
- factor k (target_fps None): N frames -> (N-1)·k+1 frames at fps·k; output frame j sits at source
  position j/k.  k = 1 is the identity.
- target_fps F from fps f: M = round(N·F/f) frames at fps F, so the duration N/f is kept within
  one frame; output frame j sits at source position j·f/F, clamped to N-1 (the last frame is held).
  When target_fps is set it is used instead of factor.
A position i + t with t in (0, 1) is made by the model from frames i and i+1, except:
- scene cut between i and i+1 (score > scene_threshold): never morphed; times t <= 0.5 hold frame
  i, later times hold frame i+1.  The score is the total-variation distance (0..1) between the
  joint RGB histograms (8 levels per channel) of 128×128 thumbnails: about 0.02–0.25 for camera
  motion, 0.5–0.95 for different photos; scene_threshold 1 disables cut detection.
- static pair (mean absolute difference below 0.5 grey levels): frame i is copied, no model run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import ClassVar

import cv2
import numpy as np

from postfx import register_stage
from studio.clip import Clip, ClipSpec
from studio.context import RunContext

log = logging.getLogger(__name__)

MODELS = ("auto", "rife", "dis")
SCALES = (0.25, 0.5, 1.0, 2.0)
STATIC_MAD = 0.5
"""Pairs whose mean absolute difference (grey levels, 0..255) is below this are copied."""

# Seconds per megapixel of each new frame: CPU from bench/results/e2e_cpu.json (2 quiet cores, 512²,
# channels_last: 15 new frames in 4.29 s);
# CUDA from bench/results/rife_h100.json (H100, 1080p, eager fp16 batch 8: 160 new frames/s).
SECONDS_PER_MP = {("rife", "cpu"): 1.1, ("rife", "cuda"): 0.0031, ("dis", "cpu"): 0.25}
# Peak memory per megapixel per pair in a batch (H100 bench: 5.8 GB at 1080p, batch 8), CPU one pair.
MEMORY_MB_PER_MP = {"cpu": 700.0, "cuda": 360.0}


def scene_score(a: np.ndarray, b: np.ndarray) -> float:
    """Scene-change score in 0..1: TV distance of joint RGB histograms of 128×128 thumbnails."""
    def hist(x: np.ndarray) -> np.ndarray:
        q = cv2.resize(x, (128, 128), interpolation=cv2.INTER_AREA) >> 5
        idx = (q[..., 0].astype(np.int32) << 6) | (q[..., 1].astype(np.int32) << 3) | q[..., 2]
        return np.bincount(idx.ravel(), minlength=512) / idx.size
    return float(0.5 * np.abs(hist(a) - hist(b)).sum())


def is_static(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two frames are (nearly) identical: mean absolute difference < STATIC_MAD levels."""
    return bool(np.array_equal(a, b) or float(cv2.absdiff(a, b).mean()) < STATIC_MAD)


def auto_scale(width: int, height: int) -> float:
    """RIFE flow scale for a frame size: 1.0 up to 2560×1440, 0.5 above (4K)."""
    return 1.0 if width * height <= 2560 * 1440 else 0.5


@register_stage
@dataclass(frozen=True)
class Interpolate:
    """Frame interpolation by an integer factor or to a target fps (see the module docstring)."""

    name: ClassVar[str] = "interpolate"
    factor: int = 2
    target_fps: float | None = None
    scene_threshold: float = 0.35
    model: str = "auto"  # auto | rife | dis
    scale: float | None = None  # RIFE flow scale; None: 1.0 up to 1440p, 0.5 above
    fallback: bool = False  # set by resolved() when 'auto' fell back to DIS for want of RIFE weights

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise ValueError(f"factor={self.factor!r} must be an integer >= 1")
        if self.target_fps is not None and not (math.isfinite(self.target_fps) and self.target_fps > 0):
            raise ValueError(f"target_fps={self.target_fps!r} must be a positive number")
        if not 0.0 <= self.scene_threshold <= 1.0:
            raise ValueError(f"scene_threshold={self.scene_threshold!r} must be within 0..1")
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r} is not one of {MODELS}")
        if self.scale is not None and self.scale not in SCALES:
            raise ValueError(f"scale={self.scale!r} is not one of {SCALES}")

    # -- what it is ------------------------------------------------------------------------------
    def resolved(self) -> Interpolate:
        """A copy with model 'auto' made concrete: 'rife' if its weights are present, else 'dis'."""
        if self.model != "auto":
            return self
        from studio.weights import find

        from .rife.weights import WEIGHT_ID
        if find(WEIGHT_ID) is not None:
            return replace(self, model="rife")
        return replace(self, model="dis", fallback=True)

    def describe(self) -> str:
        """Human label for the ledger, e.g. 'RIFE 4.25 ×2'; the DIS fallback says so plainly."""
        r = self.resolved()
        how = f"→ {self.target_fps:g} fps" if self.target_fps is not None else f"×{self.factor}"
        if r.model == "rife":
            return f"RIFE 4.25 {how}"
        label = f"OpenCV DIS optical flow {how}"
        return label + " (fallback: no RIFE weights)" if r.fallback else label

    # -- the ledger ------------------------------------------------------------------------------
    def positions(self, frames: int, fps: float) -> list[tuple[int, float]]:
        """Source position (i, t) of every output frame: frame i, or t of the way to frame i+1."""
        if frames < 1 or not fps > 0:
            raise ValueError(f"need frames >= 1 and fps > 0, got frames={frames} fps={fps}")
        if self.target_fps is None:
            k = self.factor
            return [(j // k, (j % k) / k) for j in range((frames - 1) * k + 1)]
        m = max(1, round(frames * self.target_fps / fps))
        out = []
        for j in range(m):
            p = j * fps / self.target_fps
            i = math.floor(p + 1e-9)
            t = p - i
            if i >= frames - 1:
                i, t = frames - 1, 0.0
            elif t < 1e-6:
                t = 0.0
            out.append((i, t))
        return out

    def plan(self, spec: ClipSpec) -> ClipSpec:
        """Exact output shape: (N-1)·k+1 frames at fps·k, or round(N·F/f) frames at F."""
        n = len(self.positions(spec.frames, spec.fps))
        fps = self.target_fps if self.target_fps is not None else spec.fps * self.factor
        return spec.with_(frames=n, fps=float(fps))

    def estimate(self, spec: ClipSpec, device: str) -> dict[str, float]:
        """Rough seconds and memory from measured per-megapixel constants."""
        r = self.resolved()
        new = sum(1 for _, t in self.positions(spec.frames, spec.fps) if t > 0)
        mp = spec.width * spec.height / 1e6
        dev = "cuda" if device.startswith("cuda") and r.model == "rife" else "cpu"
        secs = new * mp * SECONDS_PER_MP[(r.model, dev)]
        if r.model == "rife":
            from .rife import default_batch
            mem = MEMORY_MB_PER_MP[dev] * mp * default_batch(dev, spec.height, spec.width) + 100
        else:
            mem = 60 * mp
        return {"seconds": round(secs, 3), "memory_mb": round(mem, 1)}

    # -- the work --------------------------------------------------------------------------------
    def _rife(self, ctx: RunContext, width: int, height: int):
        from studio.weights import require

        from .rife.interpolator import RifeInterpolator
        from .rife.weights import WEIGHT_ID
        path = require(WEIGHT_ID)
        st = path.stat()
        scale = self.scale if self.scale is not None else auto_scale(width, height)
        key = ("rife-4.25", str(path), st.st_mtime_ns, st.st_size, ctx.device, scale)
        return ctx.cache.get(key, lambda: RifeInterpolator.from_weights(path, device=ctx.device,
                                                                          scale=scale))

    def apply(self, clip: Clip, ctx: RunContext) -> Clip:
        """Make plan()'s frames; records method, scene cuts and static pairs in clip.meta."""
        r = self.resolved()
        src = clip.frames
        n_src, h, w = src.shape[0], src.shape[1], src.shape[2]
        pos = self.positions(n_src, clip.fps)
        pairs = sorted({i for i, t in pos if t > 0})
        cuts, static = [], []
        work = []
        for i in pairs:
            if self.scene_threshold < 1.0 and scene_score(src[i], src[i + 1]) > self.scene_threshold:
                cuts.append(i)
            elif is_static(src[i], src[i + 1]):
                static.append(i)
            else:
                work.append(i)
        work_set = set(work)
        jobs = [(i, t) for i, t in pos if t > 0 and i in work_set]
        n, done = len(pairs), len(pairs) - len(work)
        ctx.step("interpolate", done, n)
        made: dict[tuple[int, float], np.ndarray] = {}
        if jobs:
            per_pair = {i: sum(1 for j, _ in jobs if j == i) for i in work}
            if r.model == "rife":
                engine = self._rife(ctx, w, h)

                def on_batch(chunk: list[tuple[int, float]]) -> None:
                    nonlocal done
                    for i, _ in chunk:
                        per_pair[i] -= 1
                        if per_pair[i] == 0:
                            done += 1
                            ctx.step("interpolate", done, n)

                ctx.check_cancel()
                made = dict(zip(jobs, engine.run(src, jobs, on_batch=on_batch), strict=True))
            else:
                from .rife.flow_fallback import DisInterpolator
                dis = DisInterpolator()
                for i in work:
                    ts = [t for j, t in jobs if j == i]
                    made.update({(i, t): f for t, f in zip(ts, dis.interpolate(src[i], src[i + 1], ts),
                                                           strict=True)})
                    done += 1
                    ctx.step("interpolate", done, n)
        cut_set, static_set = set(cuts), set(static)
        out = np.empty((len(pos), h, w, 3), dtype=np.uint8)
        for j, (i, t) in enumerate(pos):
            if t == 0:
                out[j] = src[i]
            elif i in cut_set:
                out[j] = src[i] if t <= 0.5 else src[i + 1]
            elif i in static_set:
                out[j] = src[i]
            else:
                out[j] = made[(i, t)]
        plan = self.plan(clip.spec)
        method = "rife-4.25" if r.model == "rife" else "opencv-dis"
        meta = dict(clip.meta)
        meta["interpolate"] = {"method": method, "label": self.describe(), "scene_cuts": cuts,
                               "static_pairs": static, "interpolated_frames": len(jobs),
                               "source_frames": n_src, "frames": len(pos), "fps": plan.fps}
        log.info("interpolate: %s, %d -> %d frames, %d new, cuts at %s", method, n_src, len(pos),
                 len(jobs), cuts)
        return Clip(frames=out, fps=plan.fps, meta=meta)
